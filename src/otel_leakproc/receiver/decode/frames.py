"""Which frames a human would change.

Attribution names the first frame (from the leaf) that is not part of the language runtime, the
standard library or a profiler/allocation helper: `main.(*OrderProcessor).processBatch`, never
`runtime.mallocgc` or `sync.(*RWMutex).Lock`. Pure functions, cached per distinct name.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Top-level import path elements of the Go standard library (Go 1.27). A package whose first path
# element is one of these (and has no dot) is standard library; `main` and module paths are user code.
GO_STDLIB_ROOTS = frozenset(
    [
        "archive",
        "arena",
        "bufio",
        "builtin",
        "bytes",
        "cmp",
        "compress",
        "container",
        "context",
        "crypto",
        "database",
        "debug",
        "embed",
        "encoding",
        "errors",
        "expvar",
        "flag",
        "fmt",
        "go",
        "hash",
        "html",
        "image",
        "index",
        "internal",
        "io",
        "iter",
        "log",
        "maps",
        "math",
        "mime",
        "net",
        "os",
        "path",
        "plugin",
        "reflect",
        "regexp",
        "runtime",
        "slices",
        "sort",
        "strconv",
        "strings",
        "structs",
        "sync",
        "syscall",
        "testing",
        "text",
        "time",
        "unicode",
        "unique",
        "unsafe",
        "vendor",
        "weak",
    ]
)

# Profilers and instrumentation that sit on stacks but are never what leaks.
_HELPER_PREFIXES = (
    "github.com/grafana/pyroscope-go",
    "github.com/pyroscope-io/",
    "go.opentelemetry.io/ebpf-profiler",
)

_PY_SYSTEM_FILE = re.compile(
    r"(^<frozen |^<string>$|/site-packages/pyroscope|/site-packages/pyroscope_io|/otel_leakproc/client/"
    r"|/lib/python3(\.\d+)?/(?!site-packages/|dist-packages/))"
)


def go_package(function: str) -> str:
    """Import path of a Go function name (`compress/flate.NewWriter` -> `compress/flate`)."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function if dot < 0 else function[:dot]


def _is_go_runtime_package(pkg: str) -> bool:
    return pkg == "runtime" or pkg.startswith(("runtime/internal/", "internal/runtime/"))


@lru_cache(maxsize=65536)
def is_runtime_frame(function: str) -> bool:
    """True for frames of the Go runtime itself (where goroutines park), not `runtime/pprof` callers."""
    return _is_go_runtime_package(go_package(function))


# Packages of the lock and wait primitives. A stack of library code only is named after the caller of the
# primitive (the lock's user: `net/http.(*connReader).lock`), not after `sync.(*Mutex).Lock` itself.
_PRIMITIVE_PACKAGES = frozenset(("sync", "internal/sync"))


@lru_cache(maxsize=65536)
def is_primitive_frame(function: str) -> bool:
    """True for frames a stack of runtime and library frames only is not named after: the runtime, and the
    lock and wait primitives of `sync` (`sync.(*Mutex).Lock`, `sync.(*RWMutex).RLock`, `sync.(*WaitGroup).Wait`)."""
    pkg = go_package(function)
    return _is_go_runtime_package(pkg) or pkg in _PRIMITIVE_PACKAGES


@lru_cache(maxsize=65536)
def is_system_frame(function: str, file: str = "") -> bool:
    """True when a human would not change this frame: runtime, standard library, profiler helpers."""
    if not function:
        return True
    if file.endswith(".py") or file.startswith("<"):
        return bool(_PY_SYSTEM_FILE.search(file))
    if function.startswith(_HELPER_PREFIXES):
        return True
    pkg = go_package(function)
    root = pkg.split("/", 1)[0]
    if "." in root:  # module path such as github.com/...: user or third-party code
        return False
    return root in GO_STDLIB_ROOTS
