"""String caps at the decoder boundary: cut, marked, counted by field; colliding names merged."""

from __future__ import annotations

from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.uploads import DecodedProfile, UploadResult
from otel_leakproc.receiver.value_caps import TRUNCATION_MARK, ValueCaps, cap_upload

CAPS = ValueCaps(max_name_chars=32, max_label_chars=16)


def upload(summary: ProfileSummary, service: str = "svc", resource: dict[str, str] | None = None) -> UploadResult:
    return UploadResult((DecodedProfile(service, "", resource or {"service.name": service}, summary),))


def test_a_result_within_the_caps_is_returned_as_is() -> None:
    result = upload(ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(SiteValue("main.f", "f.go", 1, 10.0),)))
    capped, cuts = cap_upload(result, CAPS)
    assert capped is result
    assert cuts == {}


def test_long_names_are_cut_marked_and_counted_by_field() -> None:
    long = "main." + "x" * 100
    summary = ProfileSummary(
        ProfileKind.HEAP,
        1,
        10.0,
        sites=(SiteValue(long, "/src/" + "d" * 100, 3, 10.0, leaf=long),),
        labels={"__session_id__": "s" * 40},
    )
    capped, cuts = cap_upload(upload(summary, service="s" * 50, resource={"service.name": "s" * 50, "k": "v"}), CAPS)
    profile = capped.profiles[0]
    site = profile.summary.sites[0]
    assert len(site.function) == 32
    assert site.function.endswith(TRUNCATION_MARK)
    assert site.function.startswith("main.xxx")
    assert len(site.file) == 32
    assert len(site.leaf) == 32
    assert len(profile.service) == 16
    assert profile.resource == {"service.name": profile.service, "k": "v"}
    assert len(profile.summary.labels["__session_id__"]) == 16
    assert cuts == {"function": 2, "file": 1, "service": 1, "label_value": 1}


def test_sites_equal_once_cut_are_merged_not_overwritten() -> None:
    a = SiteValue("main." + "x" * 100 + "A", "f.go", 1, 10.0, 1.0)
    b = SiteValue("main." + "x" * 100 + "B", "f.go", 2, 30.0, 2.0)
    small = SiteValue("main.small", "f.go", 3, 20.0, 1.0)
    capped, _ = cap_upload(upload(ProfileSummary(ProfileKind.HEAP, 1, 60.0, sites=(a, small, b))), CAPS)
    sites = capped.profiles[0].summary.sites
    assert [s.value for s in sites] == [40.0, 20.0]
    assert sites[0].count == 3.0
    assert sum(s.value for s in sites) == 60.0


def test_goroutine_groups_are_capped_and_merged() -> None:
    state = "chan receive " + "z" * 40
    groups = (
        GoroutineGroup(state, "runtime.gopark", "main." + "w" * 100 + "1", "m.go", 1, "main.boot", 5, 3, 1),
        GoroutineGroup(state, "runtime.gopark", "main." + "w" * 100 + "2", "m.go", 1, "main.boot", 7, 9, 2),
    )
    summary = ProfileSummary(ProfileKind.GOROUTINE, 1, 12.0, total_count=12.0, groups=groups)
    capped, cuts = cap_upload(upload(summary), CAPS)
    (group,) = capped.profiles[0].summary.groups
    assert (group.count, group.max_wait_minutes, group.leaked) == (12, 9, 3)
    assert len(group.state) == 16
    assert len(group.function) == 32
    assert cuts == {"goroutine_state": 2, "function": 2}


def test_one_long_string_anywhere_is_cut() -> None:
    """Uploads within every cap skip the copy (`cap_upload` checks first); one string over its cap, in
    any field, still takes the cutting path."""
    long = "q" * 100
    site = SiteValue("main.f", "f.go", 1, 10.0, leaf="main.f")
    group = GoroutineGroup("chan receive", "runtime.gopark", "main.g", "g.go", 1, "main.boot", 1, 0, 0)
    cases = {
        "site function": (ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(SiteValue(long, "f.go", 1, 10.0),)), {}),
        "site file": (ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(SiteValue("main.f", long, 1, 10.0),)), {}),
        "site leaf": (
            ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(SiteValue("main.f", "f.go", 1, 10.0, leaf=long),)),
            {},
        ),
        "label key": (ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(site,), labels={long: "v"}), {}),
        "resource value": (
            ProfileSummary(ProfileKind.HEAP, 1, 10.0, sites=(site,)),
            {"service.name": "svc", "k": long},
        ),
    }
    for field in ("state", "blocking", "function", "file", "creator"):
        changed = GoroutineGroup(**{**{f: getattr(group, f) for f in group.__slots__}, field: long})
        cases[f"group {field}"] = (
            ProfileSummary(ProfileKind.GOROUTINE, 1, 1.0, total_count=1.0, groups=(changed,)),
            {},
        )
    for what, (summary, resource) in cases.items():
        result = upload(summary, resource=resource or None)
        capped, cuts = cap_upload(result, CAPS)
        assert capped is not result, what
        assert cuts, what
