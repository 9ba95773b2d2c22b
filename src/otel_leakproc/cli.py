"""Command line: argument parsing only. Loads config, runs the command, maps errors to exit codes.

Exit codes: 0 ok; 1 analysis found a flagged series with --fail-on-leak, or any input could not be read
(a path missing, no profile found, a file skipped); 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from otel_leakproc import _dataclass_code

# Before the package's dataclasses below (and in the modules the commands import) are defined.
_dataclass_code.install()

from otel_leakproc import __version__  # noqa: E402
from otel_leakproc.errors import ConfigError  # noqa: E402
from otel_leakproc.model import ProfileKind  # noqa: E402

if TYPE_CHECKING:
    from typing import Any

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_CONFIG = 2


def _terminal_columns() -> int:
    """The width `shutil.get_terminal_size` gives (COLUMNS, else the terminal on stdout, else 80)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter at the width argparse gives it, found without importing shutil (and with it bz2
    and lzma): argparse builds a formatter for every `add_argument`, and `analyze` is mostly start-up."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose formatter (and its subcommands' parsers' formatter) is `_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _add_analyze(analyze: argparse.ArgumentParser) -> None:
    analyze.add_argument(
        "paths", nargs="+", metavar="PATH", help="profile files or folders (a folder holds one series)"
    )
    analyze.add_argument("--json", action="store_true", help="print the machine-readable report")
    analyze.add_argument("--config", help="YAML config file (default: embedded defaults)")
    analyze.add_argument("--service", help="service name for every series (default: from folder names)")
    analyze.add_argument("--instance", help="instance id for every series (default: from folder names)")
    analyze.add_argument("--kind", choices=[k.value for k in ProfileKind], help="profile kind when it cannot be told")
    analyze.add_argument("--memory-limit", type=int, metavar="BYTES", help="memory limit for time-to-limit")
    analyze.add_argument("--fail-on-leak", action="store_true", help="exit 1 when any series is suspected or confirmed")


def _add_serve(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--config", help="YAML config file (default: embedded defaults)")
    serve.add_argument("--http-address", metavar="HOST:PORT", help="override server.http.address")
    serve.add_argument("--grpc-address", metavar="HOST:PORT", help="override server.grpc.address")
    serve.add_argument("--state-dir", metavar="DIR", help='override state.dir ("" keeps state in memory only)')
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _add_push(push: argparse.ArgumentParser) -> None:
    push.add_argument("files", nargs="+", metavar="FILE", help="profiles (pprof or Go text, gzipped or not)")
    push.add_argument("--url", default="http://127.0.0.1:4040", help="the service (default: %(default)s)")
    push.add_argument("--service", required=True, help="service name")
    push.add_argument("--instance", help="instance id")
    push.add_argument("--kind", choices=[k.value for k in ProfileKind], help="profile kind when it cannot be told")
    push.add_argument("--tenant", help="X-Scope-OrgID")
    push.add_argument("--token", help="bearer token (default: $OTEL_LEAKPROC_TOKEN)")
    push.add_argument("--interval", type=float, default=0.0, help="seconds to wait between files")


def _add_validate_config(validate: argparse.ArgumentParser) -> None:
    validate.add_argument("file")


COMMANDS = {
    "analyze": ("analyse profile files or folders offline and print a verdict per series", _add_analyze),
    "serve": ("run the service: receive profiles over HTTP and gRPC, detect, export", _add_serve),
    "push": ("upload profile files to a running service (POST /ingest)", _add_push),
    "validate-config": ("load and validate a config file, print every error", _add_validate_config),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with `command` (the subcommand the arguments name) only that subcommand is added.

    Every subcommand is a parser of its own, and each costs argparse three gettext lookups and a formatter
    per argument: building all four was 2% of an `analyze` run on a pair. Without `command` (no or an
    unknown subcommand, `--help`, `--version`) all are added, so usage and errors list every one.
    """
    formatter = functools.partial(_HelpFormatter, width=_terminal_columns() - 2)
    parser = _ArgumentParser(prog="otel-leakproc", description=__doc__.splitlines()[0], formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_line, add_arguments) in COMMANDS.items():
        if command is None or command == name:
            add_arguments(sub.add_parser(name, help=help_line, formatter_class=formatter))
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option, when that is one of `COMMANDS`."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `otel-leakproc` console script (`argv` None: the process's own arguments)."""
    args = _parser(_command(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        if args.command == "analyze":
            if argv is None:  # the process's own command line: analyze is all it runs
                return _exit_without_teardown(_analyze(args, own_process=True))
            return _analyze(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "push":
            return _push(args)
        return _validate(args)
    except ConfigError as exc:
        print(f"otel-leakproc: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _exit_without_teardown(code: int) -> int:
    """End the process with `code` now that its output is written, skipping the interpreter's teardown (freeing
    numpy's, protobuf's and every other module's objects one by one: about a tenth of an `analyze` run on a
    pair, for a process that is about to end anyway).

    Only when nothing is registered to run at exit (coverage's data writer, for one) and stdout and stderr
    could be flushed; otherwise `code` is returned and the process ends the usual way (a closed pipe is
    reported as Python always reports it).
    """
    if atexit._ncallbacks():  # CPython's count of atexit callbacks (private, in every CPython 3)
        return code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return code
    os._exit(code)


# OpenBLAS (linked into numpy) starts a thread per core when numpy is imported: tens of milliseconds of a
# short-lived `analyze` process, whose matrix products are small (its outputs are the same on one thread).
# Set before numpy's first import; a value the user set is kept.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS",)


def _single_threaded_blas() -> None:
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def _analyze(args: argparse.Namespace, *, own_process: bool = False) -> int:
    _single_threaded_blas()
    # The imports below (numpy, protobuf, the decoder and detectors) allocate tens of thousands of objects
    # and leave no garbage: with the collector on they triggered about 40 collections, 6-8 ms of a run.
    # In a process of its own, what they made lives until the end: frozen, no later collection scans it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from otel_leakproc.analyze import AnalyzeOptions, analyze_inputs  # noqa: PLC0415 (keeps --help fast)
        from otel_leakproc.processor.config import ProcessorConfig  # noqa: PLC0415
        from otel_leakproc.receiver.decode.limits import DecodeLimits  # noqa: PLC0415
        from otel_leakproc.report import inputs_to_json, render_table, series_to_json  # noqa: PLC0415
    finally:
        if own_process:
            gc.freeze()
        if collecting:
            gc.enable()

    # Without --config, the defaults of the two sections analyze reads, without importing the server,
    # scrape and export sections' modules (a short-lived process: start-up is most of its time).
    processor, limits = ProcessorConfig(), DecodeLimits()
    if args.config is not None:
        from otel_leakproc.config import load_settings  # noqa: PLC0415

        settings = load_settings(args.config)
        processor, limits = settings.processor, settings.decode.to_limits()
    options = AnalyzeOptions(
        service=args.service,
        instance=args.instance,
        kind=ProfileKind(args.kind) if args.kind else None,
        memory_limit_bytes=args.memory_limit,
    )
    try:
        run = analyze_inputs(args.paths, processor, limits, options)
    except FileNotFoundError as exc:
        print(f"otel-leakproc: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    for item in run.skipped:
        print(f"otel-leakproc: skipped {item}", file=sys.stderr)
    results = run.results
    reasons = ", ".join(f"{n} {reason}" for reason, n in run.skipped_by_reason().items())
    if args.json:
        import json  # noqa: PLC0415

        doc = {"series": [series_to_json(r.report, r.source) for r in results], "inputs": inputs_to_json(run)}
        print(json.dumps(doc, indent=2))
    elif results:
        print(render_table([(r.report, r.source) for r in results]))
        if run.skipped:
            print(f"skipped {len(run.skipped)} of {run.files} files ({reasons}); the reasons are on stderr")
    if not run.files:
        print("otel-leakproc: no profiles found", file=sys.stderr)
        return EXIT_FINDINGS
    if not results:
        files = "1 file" if run.files == 1 else f"{run.files} files"
        print(f"otel-leakproc: no profile could be read from {files} ({reasons})", file=sys.stderr)
        return EXIT_FINDINGS
    if run.skipped:  # fail closed: a verdict on part of the input must not pass a CI gate
        return EXIT_FINDINGS
    if args.fail_on_leak and any(r.report.status.flagged for r in results):
        return EXIT_FINDINGS
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import dataclasses  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from otel_leakproc.app import run  # noqa: PLC0415
    from otel_leakproc.config import load_settings  # noqa: PLC0415
    from otel_leakproc.log_format import EscapingFormatter  # noqa: PLC0415

    handler = logging.StreamHandler(sys.stderr)
    # Messages name services, tenants and functions that clients chose: control characters are escaped.
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    settings = load_settings(args.config)
    server = settings.server
    if args.http_address:
        server = dataclasses.replace(server, http=dataclasses.replace(server.http, address=args.http_address))
    if args.grpc_address:
        server = dataclasses.replace(server, grpc=dataclasses.replace(server.grpc, address=args.grpc_address))
    state = settings.state if args.state_dir is None else dataclasses.replace(settings.state, dir=args.state_dir)
    # Re-validate: the overrides go through the same checks as the file.
    from otel_leakproc.config import settings_from_mapping, settings_to_mapping  # noqa: PLC0415

    settings = settings_from_mapping(settings_to_mapping(dataclasses.replace(settings, server=server, state=state)))
    from otel_leakproc.cluster.supervisor import check_state_layout, run_processes  # noqa: PLC0415

    if settings.server.process_count() > 1:
        return run_processes(settings, args.log_level)
    check_state_layout(settings, 1)
    return asyncio.run(run(settings))


def _push(args: argparse.Namespace) -> int:
    from otel_leakproc.push import PushError, push_files  # noqa: PLC0415

    try:
        count = push_files(
            args.files,
            url=args.url,
            service=args.service,
            instance=args.instance,
            kind=args.kind,
            tenant=args.tenant,
            token=args.token,
            interval=args.interval,
        )
    except PushError as exc:
        print(f"otel-leakproc: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    print(f"pushed {count} profiles to {args.url}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from otel_leakproc.config import load_settings  # noqa: PLC0415

    load_settings(args.file)
    print(f"{args.file}: ok")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
