"""Build of the one C extension (`otel_leakproc.receiver.decode._wire`); everything else is in pyproject.toml.

It uses the CPython C API only: a C compiler and the Python headers (Debian: gcc, python3-dev) are all
`pip install .`, `pip install -e .` and `pip wheel .` need.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_leakproc.receiver.decode._wire",
            ["src/otel_leakproc/receiver/decode/_wire.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
    ]
)
