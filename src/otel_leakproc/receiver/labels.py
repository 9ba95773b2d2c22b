"""The Pyroscope `/ingest` `name` label set: `app.name{key=value,...}`.

The grammar follows Pyroscope's `flameql.ParseKey` (what pyroscope-go and pyroscope-rs produce): the
text before `{` is the application name, then comma-separated `key=value` pairs, every part trimmed,
`{}` optional, reserved keys (`__name__`) skipped. Where Pyroscope silently drops text (an unclosed
`{`, a pair without `=`, text after `}`), this parser rejects the name instead, so a typo never turns
into a silently different series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_leakproc.errors import InvalidProfileError, RejectReason

# Keys Pyroscope reserves in a `name` label set; a sender cannot set them.
RESERVED_KEYS = frozenset({"__name__"})
MAX_NAME_LENGTH = 65536
MAX_LABELS = 256


@dataclass(frozen=True, slots=True)
class LabelSet:
    """A parsed `name`: the application name and its labels in the order sent (last duplicate wins)."""

    app: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)


def _is_key_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "_.")


def _is_app_char(ch: str) -> bool:
    return _is_key_char(ch) or ch in "-/"


def _bad(message: str) -> InvalidProfileError:
    return InvalidProfileError(f"name: {message}", RejectReason.BAD_VALUES)


def _check_app(app: str) -> None:
    if not app:
        raise _bad("the application name before '{' is empty")
    for ch in app:
        if not _is_app_char(ch):
            raise _bad(
                f"invalid character {ch!r} in application name {app!r} (allowed: letters, digits, '_', '.', '-', '/')"
            )


def _check_key(key: str) -> None:
    if not key:
        raise _bad("a label has an empty key")
    for ch in key:
        if not _is_key_char(ch):
            raise _bad(f"invalid character {ch!r} in label key {key!r} (allowed: letters, digits, '_', '.')")


def parse_label_set(name: str) -> LabelSet:
    """Parse `app{k1=v1,k2=v2}` (or just `app`).

    Raises:
        InvalidProfileError: BAD_VALUES, the message starting with `name:` and saying what is wrong.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise _bad(f"longer than {MAX_NAME_LENGTH} characters")
    open_at = name.find("{")
    if open_at < 0:
        if "}" in name:
            raise _bad("'}' without a matching '{'")
        app = name.strip()
        _check_app(app)
        return LabelSet(app)
    app = name[:open_at].strip()
    _check_app(app)
    close_at = name.find("}", open_at + 1)
    if close_at < 0:
        raise _bad("the label set is not closed ('}' missing)")
    if name[close_at + 1 :].strip():
        raise _bad(f"unexpected text {name[close_at + 1 :]!r} after the label set")
    body = name[open_at + 1 : close_at]
    if "{" in body:
        raise _bad("nested '{' in the label set")
    labels: dict[str, str] = {}
    pairs = body.split(",")
    if len(pairs) > MAX_LABELS:
        raise _bad(f"more than {MAX_LABELS} labels")
    for n, pair in enumerate(pairs):
        if not pair.strip():
            if n == len(pairs) - 1:  # `app{}` and a trailing comma are fine
                continue
            raise _bad(f"empty label at position {n + 1}")
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq:
            raise _bad(f"label {key!r} has no '=value'")
        _check_key(key)
        if key in RESERVED_KEYS:
            continue
        labels[key] = value.strip()
    return LabelSet(app, labels)
