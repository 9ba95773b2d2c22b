"""`python -m otel_leakproc` runs the CLI."""

from otel_leakproc.cli import main

raise SystemExit(main())
