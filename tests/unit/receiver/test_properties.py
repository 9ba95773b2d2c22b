"""Property tests (hypothesis): the `/ingest` label parser, the string caps and the series codec (detector
state through JSON and back) hold for any input."""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_leakproc.errors import InvalidProfileError
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.labels import RESERVED_KEYS, parse_label_set
from otel_leakproc.receiver.uploads import DecodedProfile, UploadResult
from otel_leakproc.receiver.value_caps import TRUNCATION_MARK, ValueCaps, cap_upload

APP = st.text(string.ascii_letters + string.digits + "_.-/", min_size=1, max_size=40)
KEY = st.text(string.ascii_letters + string.digits + "_.", min_size=1, max_size=20).filter(
    lambda k: k not in RESERVED_KEYS
)
# Values: anything but the label set's own syntax, without surrounding whitespace (the parser trims).
VALUE = st.text(st.characters(blacklist_characters=",{}", blacklist_categories=("Cs",)), max_size=30).map(str.strip)
LABELS = st.dictionaries(KEY, VALUE, max_size=8)
SPACE = st.sampled_from(["", " ", "  ", "\t"])


@given(APP, LABELS, SPACE)
def test_a_written_label_set_parses_back_to_itself(app: str, labels: dict[str, str], pad: str) -> None:
    body = ",".join(f"{pad}{k}{pad}={pad}{v}{pad}" for k, v in labels.items())
    parsed = parse_label_set(f"{pad}{app}{pad}{{{body}}}{pad}")
    assert parsed.app == app
    assert parsed.labels == labels
    assert list(parsed.labels) == list(labels)  # order as sent


@given(APP)
def test_a_bare_name_is_the_app(app: str) -> None:
    assert parse_label_set(app).app == app
    assert parse_label_set(app).labels == {}


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_rejected_naming_the_field(name: str) -> None:
    error: InvalidProfileError | None = None
    try:
        parsed = parse_label_set(name)
    except InvalidProfileError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("name: ")
        assert error.reason.value == "bad_values"
        return
    assert parsed.app
    assert not set(parsed.labels) & RESERVED_KEYS


TEXT = st.text(max_size=300)


@given(
    st.integers(16, 64),
    st.integers(16, 64),
    TEXT,
    st.lists(st.tuples(TEXT, TEXT, st.floats(0, 1e12), st.floats(0, 1e9)), max_size=8),
    st.lists(st.tuples(TEXT, TEXT, st.integers(0, 10_000)), max_size=8),
    st.dictionaries(TEXT, TEXT, max_size=5),
)
def test_caps_bound_every_string_and_keep_every_amount(
    name_cap: int,
    label_cap: int,
    service: str,
    sites: list[tuple[str, str, float, float]],
    groups: list[tuple[str, str, int]],
    resource: dict[str, str],
) -> None:
    summary = ProfileSummary(
        ProfileKind.HEAP,
        1,
        sum(s[2] for s in sites),
        sites=tuple(SiteValue(f, file, 1, v, c, leaf=f) for f, file, v, c in sites),
        groups=tuple(GoroutineGroup(state, "runtime.gopark", f, "", 0, "", n) for state, f, n in groups),
    )
    result = UploadResult((DecodedProfile(service, "", dict(resource), summary),))
    capped, cuts = cap_upload(result, ValueCaps(max_name_chars=name_cap, max_label_chars=label_cap))
    profile = capped.profiles[0]
    out = profile.summary
    names = [s.function for s in out.sites] + [s.file for s in out.sites] + [g.function for g in out.groups]
    labels = [profile.service, *profile.resource, *profile.resource.values(), *(g.state for g in out.groups)]
    assert all(len(n) <= name_cap for n in names)
    assert all(len(v) <= label_cap for v in labels)
    sent = {text for site in sites for text in site[:2]} | {g[1] for g in groups}
    assert all(n.endswith(TRUNCATION_MARK) and len(n) == name_cap for n in names if n not in sent)
    # Merging never loses an amount.
    assert abs(sum(s.value for s in out.sites) - sum(s[2] for s in sites)) <= 1e-6 * max(1.0, summary.total)
    assert sum(g.count for g in out.groups) == sum(g[2] for g in groups)
    assert sum(cuts.values()) == 0 or capped is not result
    if not cuts:
        assert capped is result


# -- the series codec: a detector's state survives JSON and restore, whatever profiles it was fed -------

KINDS = st.sampled_from([ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX])
NAMES = st.sampled_from([f"main.f{i}" for i in range(12)] + ["runtime.gopark", "sync.(*Mutex).Lock", "é…\x00"])


@st.composite
def profile_stream(draw: st.DrawFn) -> tuple[ProfileKind, list[ProfileSummary]]:
    kind = draw(KINDS)
    steps = draw(st.lists(st.integers(1, 3600), min_size=1, max_size=40))
    summaries = []
    now = 1_790_000_000_000_000_000
    for step in steps:
        now += step * 1_000_000_000
        sites = draw(st.dictionaries(NAMES, st.floats(0, 1e10), max_size=6))
        if kind is ProfileKind.GOROUTINE:
            groups = tuple(
                GoroutineGroup("chan receive", "runtime.gopark", name, "m.go", 1, "", int(value) % 1000 + 1)
                for name, value in sites.items()
            )
            total = float(sum(g.count for g in groups))
            summaries.append(ProfileSummary(kind, now, total, total_count=total, groups=groups))
        else:
            site_values = tuple(SiteValue(name, "f.go", 1, value, 1.0) for name, value in sites.items())
            cumulative = float(len(summaries)) if kind is ProfileKind.MUTEX else None
            total = sum(s.value for s in site_values)
            summaries.append(ProfileSummary(kind, now, total, sites=site_values, cumulative=cumulative))
    return kind, summaries


@settings(max_examples=60, deadline=None)
@given(profile_stream())
def test_detector_state_round_trips_through_json(stream: tuple[ProfileKind, list[ProfileSummary]]) -> None:
    kind, summaries = stream
    key = SeriesKey("t", "svc", "", kind)
    config = ProcessorConfig()
    detector = SeriesDetector(key, config)
    for summary in summaries:
        detector.update(summary)
    state = json.loads(json.dumps(detector.to_state(), allow_nan=False))
    restored = SeriesDetector.from_state(key, config, state)
    assert restored.to_state() == detector.to_state()
    assert restored.report() == detector.report()
    assert restored.timeline() == detector.timeline()
