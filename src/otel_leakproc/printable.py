"""Names from uploads printed safely: control characters escaped wherever text reaches a terminal or log.

A client chooses service names, labels and function names. Printed as sent, a newline forges a whole log
or console line and ANSI escapes recolour or rewrite the terminal. `printable` escapes C0 and C1 control
characters, DEL and the Unicode line/paragraph separators and bidirectional overrides as `\\xNN` /
`\\uNNNN` (a backslash itself stays as it is), so a printed line is always exactly one line of what was
sent, visibly. `log_format.EscapingFormatter` applies it to every log message (a module of its own: `analyze`
prints through `printable` and does not import `logging`).
"""

from __future__ import annotations

import re

# C0 controls (newline, tab and ESC among them), DEL, C1 controls, line/paragraph separators, and the
# bidirectional embedding/override/isolate characters that reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character escaped (unchanged when it has none)."""
    return _UNSAFE.sub(_escape, text)
