"""The name a Prometheus metric gets from an OTLP metric, as the OpenTelemetry Collector's Prometheus exporters
(`prometheus`, `prometheus_remote_write`) and Prometheus' OTLP receiver (with suffixes) give it.

The tests check the Prometheus names the product promises (`MetricSpec.prometheus`, the own metrics' names
in docs/metrics.md, the names the alert rules query) against this translation. No real component can do
the translation here: rotel, the collector the export tests run, exports OTLP but no Prometheus format;
Debian's Prometheus (2.42) has no OTLP receiver (2.47 added it); the collector's own translator is a Go
module and no Go module proxy is reachable. So this is the one copy of the rules, kept to the
specification (opentelemetry-specification, `specification/compatibility/prometheus_and_openmetrics.md`,
"OTLP Metric points to Prometheus") and to the collector's normalisation (opentelemetry-collector-contrib,
`pkg/translator/prometheus/README.md`, with suffixes: the default); `tests/unit/exporter/
test_prometheus_names.py` checks it against the published examples of both.

The rules, in order:
1. The name is split into words at every character other than a letter, a digit or `:`; the words are
   joined with `_` (so dots become `_`, and leading, trailing and repeated underscores go).
2. The unit is cut once at `/`. A main unit in braces (`{packet}`) is dropped; otherwise it is spelled as
   Prometheus spells it (`By` -> `bytes`, `ms` -> `milliseconds`, table below; an unknown one keeps its
   letters and digits) and appended unless the name has that word already. `1` is dimensionless: no word.
3. A per unit (after `/`) that is not in braces is appended as `per_<word>` (`s` -> `second`, `h` ->
   `hour`, ...) unless the name has that word already.
4. A gauge whose unit is `1` ends in `ratio`; a counter (a cumulative monotonic sum) ends in `total`
   (either word is moved to the end if the name had it already). The unit comes before these suffixes.
5. A name that starts with a digit gets a leading `_`.
"""

from __future__ import annotations

import re

# OpenTelemetry (UCUM) unit -> the word Prometheus names use (collector's translator table).
UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "B": "bytes",
    "KB": "kilobytes",
    "MB": "megabytes",
    "GB": "gigabytes",
    "TB": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
    "$": "dollars",
}
# The unit after `/`, as a singular word.
PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

KINDS = ("gauge", "counter", "histogram", "summary")

_NOT_NAME = re.compile(r"[^A-Za-z0-9:]+")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def _unit_word(unit: str, words: dict[str, str]) -> str:
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit or unit == "1":
        return ""
    return words.get(unit) or "_".join(w for w in _NOT_ALNUM.split(unit) if w)


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The Prometheus name of the OTLP metric `name` with `unit`; `kind` is its OTLP type: `gauge`,
    `counter` (cumulative monotonic sum), `histogram` or `summary` (whose series add `_bucket`, `_sum` and
    `_count` to this name)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    words = [w for w in _NOT_NAME.split(name) if w]
    main, _, per = unit.partition("/")
    main_word = _unit_word(main, UNIT_WORDS)
    if main_word and main_word not in words:
        words.append(main_word)
    per_word = _unit_word(per, PER_UNIT_WORDS)
    if per_word and per_word not in words:
        words += ["per", per_word]
    if kind == "gauge" and unit == "1":
        words = [w for w in words if w != "ratio"] + ["ratio"]
    if kind == "counter":
        words = [w for w in words if w != "total"] + ["total"]
    out = "_".join(words)
    return f"_{out}" if out[:1].isdigit() else out
