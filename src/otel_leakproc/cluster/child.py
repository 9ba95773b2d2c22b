"""`python -m otel_leakproc.cluster.child ARGS`: one `serve` process of a group started by the supervisor.

A module of its own so that the dataclass cache is installed before the supervisor's imports define the
package's dataclasses, as the CLI does for the process the user starts (see `_dataclass_code`).
"""

from otel_leakproc import _dataclass_code

_dataclass_code.install()

from otel_leakproc.cluster.supervisor import child_main  # noqa: E402

# (multiprocessing runs this module again in the decoder workers, as `__mp_main__`: they must not serve.)
if __name__ == "__main__":
    raise SystemExit(child_main())
