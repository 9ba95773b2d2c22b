"""Build of the C extensions (`otel_leakproc.receiver.decode._wire`, the pprof reader's wire loops;
`otel_leakproc.processor._grid_pack`, the loops of the checkpoint's grid packing; `otel_leakproc.state._columns`,
`otel_leakproc.state._huffman` and `otel_leakproc.state._json`, those of its column block, of its Huffman-coded
planes and of its JSON text); everything else is in pyproject.toml.

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
        ),
        Extension(
            "otel_leakproc.processor._grid_pack",
            ["src/otel_leakproc/processor/_grid_pack.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        ),
        Extension(
            "otel_leakproc.state._columns",
            ["src/otel_leakproc/state/_columns.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        ),
        Extension(
            "otel_leakproc.state._huffman",
            ["src/otel_leakproc/state/_huffman.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        ),
        Extension(
            "otel_leakproc.state._json",
            ["src/otel_leakproc/state/_json.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        ),
    ]
)
