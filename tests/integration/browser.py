"""Headless Chromium for page tests: the DOM after scripts ran, screenshots, and a small DOM tree to query.

Uses the Debian `chromium` package (`apt-get install -y chromium`), run once per call:

    dom = dump_dom("http://127.0.0.1:4040/")            # serialized DOM after JS ran
    page = parse_html(dom)                                # tiny tree: find_all / find / text
    screenshot("http://127.0.0.1:4040/", tmp_path / "status.png")

Chromium runs with virtual time (`--virtual-time-budget`): timers up to the budget fire instantly, and
virtual time waits while network fetches are pending, so a page that fetches and renders is done when
the call returns. A 15 s auto-refresh can be exercised with a budget above 15000 ms without waiting 15 s.
The HTTP server the page talks to must answer while this call blocks (run it in another thread or process).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import toolchain

DEFAULT_WINDOW = (1280, 1600)
DEFAULT_BUDGET_MS = 5000
DEFAULT_TIMEOUT_S = 90.0

# Flags for a quiet, offline, reproducible run (no sandbox: containers and CI run as root).
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or timed out."""


def require_chromium() -> str:
    """Debian's Chromium, where `make test-deps` installs it (tests/toolchain.py)."""
    try:
        return toolchain.tool("chromium")
    except toolchain.ToolMissingError as exc:
        raise BrowserError(str(exc)) from exc


def run_chromium(
    url: str,
    action: Sequence[str],
    *,
    window_size: tuple[int, int] = DEFAULT_WINDOW,
    virtual_time_budget_ms: int = DEFAULT_BUDGET_MS,
    timeout: float = DEFAULT_TIMEOUT_S,
    extra_flags: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on `url` with `action` flags (e.g. `--dump-dom`) and a fresh profile."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="leakproc-chromium-") as profile:
        cmd = [
            binary,
            *BASE_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window_size[0]},{window_size[1]}",
            f"--virtual-time-budget={virtual_time_budget_ms}",
            *extra_flags,
            *action,
            url,
        ]
        env = {**os.environ, "HOME": profile}  # crash reports and caches stay in the throwaway profile
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"chromium timed out after {timeout:.0f}s on {url}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BrowserError(f"chromium exited {proc.returncode} on {url}:\n{tail}")
    return proc


def dump_dom(
    url: str,
    *,
    virtual_time_budget_ms: int = DEFAULT_BUDGET_MS,
    window_size: tuple[int, int] = DEFAULT_WINDOW,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> str:
    """The page's serialized DOM after its scripts ran for `virtual_time_budget_ms` of virtual time."""
    proc = run_chromium(
        url,
        ["--dump-dom"],
        window_size=window_size,
        virtual_time_budget_ms=virtual_time_budget_ms,
        timeout=timeout,
    )
    if "<html" not in proc.stdout:
        raise BrowserError(f"chromium printed no DOM for {url}: {proc.stderr[-2000:]}")
    return proc.stdout


def screenshot(
    url: str,
    path: str | os.PathLike[str],
    *,
    window_size: tuple[int, int] = DEFAULT_WINDOW,
    virtual_time_budget_ms: int = DEFAULT_BUDGET_MS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """A PNG of the viewport (`window_size`) after the page's scripts ran; returns the path."""
    out = Path(path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run_chromium(
        url,
        [f"--screenshot={out}"],
        window_size=window_size,
        virtual_time_budget_ms=virtual_time_budget_ms,
        timeout=timeout,
    )
    if not out.exists() or out.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot for {url}")
    return out


# ---------- a minimal DOM tree over the serialized HTML (stdlib only) ----------

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


@dataclass(eq=False)
class Element:
    """One element of the dumped DOM: tag (lower case), attributes, children (elements and text)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)
    parent: Element | None = field(default=None, repr=False)

    def iter(self) -> Iterator[Element]:
        """This element and every descendant element, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def text(self) -> str:
        """All text inside, entities decoded, whitespace collapsed."""
        parts: list[str] = []
        self._collect(parts)
        return " ".join("".join(parts).split())

    def _collect(self, parts: list[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            else:
                child._collect(parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def matches(
        self, tag: str | None = None, cls: str | None = None, attrs: dict[str, str | None] | None = None
    ) -> bool:
        if tag is not None and self.tag != tag:
            return False
        if cls is not None and cls not in self.classes:
            return False
        for key, value in (attrs or {}).items():
            if key not in self.attrs or (value is not None and self.attrs[key] != value):
                return False
        return True

    def find_all(
        self, tag: str | None = None, cls: str | None = None, attrs: dict[str, str | None] | None = None
    ) -> list[Element]:
        """Descendants (not self) matching tag, class and attributes (a None value: attribute present)."""
        return [e for e in self.iter() if e is not self and e.matches(tag, cls, attrs)]

    def find(
        self, tag: str | None = None, cls: str | None = None, attrs: dict[str, str | None] | None = None
    ) -> Element | None:
        found = self.find_all(tag, cls, attrs)
        return found[0] if found else None

    def get_by_id(self, element_id: str) -> Element | None:
        return self.find(attrs={"id": element_id})


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Element(tag, {k: v or "" for k, v in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Element(tag, {k: v or "" for k, v in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(html: str) -> Element:
    """Parse a serialized DOM (as printed by `dump_dom`) into an `Element` tree rooted at `#document`."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
