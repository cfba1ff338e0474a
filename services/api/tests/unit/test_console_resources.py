"""The resource and admin pages' pure rules: sizes and times for people, an image's verification
state, the schedule and boot forms turned into their REST bodies, the confirmation step, a group
change's listed differences, and the audit page's filters and time-range bisection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpm_api.console import admin_audit, admin_audit_summary, admin_settings, res_kit, res_text
from dpm_schemas.errors import DpmError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_sizes_shares_and_times_for_people() -> None:
    assert [res_text.human_bytes(n) for n in (None, 0, 512, 1536, 1024**3, 3 * 1024**5)] == [
        "unknown", "0 B", "512 B", "1.5 KiB", "1.0 GiB", "3.0 PiB",
    ]  # fmt: skip
    assert res_text.stored_share(0, 0) == "n/a" and res_text.stored_share(1000, 250) == "25 %"
    assert res_text.stamp(None) == "never" and res_text.stamp("") == "never"
    assert res_text.stamp("2026-01-01T01:00:00+01:00") == "2026-01-01 00:00:00 UTC"
    assert res_text.stamp(datetime(2026, 1, 1, 12)) == "2026-01-01 12:00:00 UTC"  # naive: UTC
    assert res_text.stamp("<b>" * 20) == ("<b>" * 20)[:40]  # not a time: as it came (escaped by the page)


def test_an_images_verification_state() -> None:
    assert res_text.verification({"verified_at": None, "verified_ok": None}) == ("not verified", "unknown")
    ok = res_text.verification({"verified_at": "2026-01-01T00:00:00+00:00", "verified_ok": True})
    assert ok == ("intact (verified 2026-01-01 00:00:00 UTC)", "ok")
    bad = res_text.verification(
        {"verified_at": "2026-01-01T00:00:00+00:00", "verified_ok": False, "corrupt": ["a", "b"]}
    )
    assert bad[0].startswith("2 corrupt chunks") and bad[1] == "bad"


def test_the_schedule_form_becomes_the_routes_body() -> None:
    once = {"name": "n", "action": "run", "scenario": "s", "when_kind": "at", "at": "2030-05-01T22:00",
            "cron": "0 1 * * *", "timezone": "Europe/Berlin", "machines": "a, b\nc", "group": "",
            "enabled": "on"}  # fmt: skip
    body = res_text.schedule_body(once)
    assert body["at"] == "2030-05-01T22:00:00+02:00" and body["cron"] is None  # the zone's wall clock
    assert body["machines"] == ["a", "b", "c"] and body["group"] is None and body["enabled"] is True
    cron = res_text.schedule_body({**once, "when_kind": "cron", "action": "power_on", "enabled": ""})
    assert cron["at"] is None and cron["cron"] == "0 1 * * *" and cron["scenario"] is None and not cron["enabled"]
    # not a time, or an unknown zone: left as typed, for the route's model to refuse with its own code
    assert (
        res_text.zoned("soon", "UTC") == "soon"
        and res_text.zoned("2030-01-01T00:00", "Mars/Base") == "2030-01-01T00:00"
    )


def test_the_boot_forms_ranges() -> None:
    fields = {"range_start": ["10.0.0.10", "", " 10.1.0.10 "], "range_end": ["10.0.0.20", "", "10.1.0.20"],
              "range_subnet": ["10.0.0.0/24", "", "10.1.0.0/24"], "range_router": ["10.0.0.1", "", ""],
              "range_dns": ["1.1.1.1, 8.8.8.8", "", ""], "range_lease_seconds": ["600", "", ""]}  # fmt: skip
    rows = res_text.range_rows(fields)
    assert rows == [
        {
            "start": "10.0.0.10",
            "end": "10.0.0.20",
            "subnet": "10.0.0.0/24",
            "router": "10.0.0.1",
            "dns": ["1.1.1.1", "8.8.8.8"],
            "lease_seconds": "600",
        },
        {"start": "10.1.0.10", "end": "10.1.0.20", "subnet": "10.1.0.0/24", "dns": []},
    ]  # fmt: skip  (the blank middle row is dropped)
    cells = res_text.range_cells(rows)
    assert len(cells) == 3 and cells[0]["dns"] == "1.1.1.1, 8.8.8.8" and set(cells[-1].values()) == {""}


def test_package_versions_and_facts() -> None:
    assert res_text.package_version({"display_version": "2.1", "system_version": "x"}) == "2.1"
    assert res_text.package_version({"system_version": "2.10-3"}) == "2.10-3"
    assert res_text.package_version({"major_version": 5, "minor_version": 2}) == "5.2"
    assert res_text.package_version({}) == ""
    facts = res_text.fact_rows({"id": "a", "empty": "", "tags": ["x", "y"], "rule": {"k": 1}, "none": None})
    assert facts == [("Package id", "a"), ("Tags", "x, y"), ("Rule", [("K", "1")])]
    # a nested value as labelled items, in words: false -> "no", "" -> "none", a deeper one as JSON
    execution = {"exclusive": False, "command": "", "reboot_after_install": True, "files": [], "x": {"y": [1, {}]}}
    assert res_text.fact_rows({"execution": execution}) == [
        ("Execution", [("Exclusive", "no"), ("Command", "none"), ("Reboot after install", "yes"), ("Files", "none"),
                       ("X", '{"y": [1, {}]}')]),
    ]  # fmt: skip


def test_only_the_confirmation_pages_form_confirms() -> None:
    res_kit.confirmed({"confirm": [res_kit.CONFIRM]}, "delete x")
    for fields in ({}, {"confirm": [""]}, {"confirm": ["no"]}):
        with pytest.raises(DpmError) as refused:
            res_kit.confirmed(fields, "delete x")
        assert refused.value.code == "DPM-E440"


def test_a_group_changes_differences() -> None:
    old = {"subnet": "10.0.0.0/24", "broadcast": None, "gateway": "10.0.0.1", "description": ""}
    new = {"subnet": "10.0.0.0/24", "broadcast": "", "gateway": "10.0.0.254", "description": "<b>lab</b>"}
    assert admin_settings.changes(old, new) == [
        {"field": "Gateway", "old": "10.0.0.1", "new": "10.0.0.254"},  # the form's labels, not the keys
        {"field": "Description", "old": "none", "new": "<b>lab</b>"},
    ]
    assert admin_settings.changes(old, {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}) == []


def test_the_audit_filters() -> None:
    f = admin_audit.parse({"actor": " admin1 ", "since": "2026-01-01T10:00", "size": "25", "after": "7"})
    assert f.actor == "admin1" and f.since == datetime(2026, 1, 1, 10, tzinfo=UTC) and f.size == 25
    assert f.query(after=30) == "/console/audit?actor=admin1&since=2026-01-01T10%3A00&after=30&size=25"
    assert admin_audit.parse({}) == admin_audit.Filters()
    for bad in ({"since": "yesterday"}, {"size": "7"}, {"after": "-1"}, {"after": "x"},
                {"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}):  # fmt: skip
        with pytest.raises(DpmError) as refused:
            admin_audit.parse(bad)
        assert refused.value.code == "DPM-E441", bad


def test_the_audit_pager_goes_back_by_its_trail() -> None:
    first = admin_audit.parse({"size": "25"})
    assert admin_audit.pager(first, 25) == {
        "next_url": "/console/audit?after=25&size=25&back=0", "prev_url": None, "first_url": None,
    }  # fmt: skip
    second = admin_audit.parse({"size": "25", "after": "25", "back": "0"})
    third = admin_audit.parse({"size": "25", "after": "50", "back": "0,25"})
    assert admin_audit.pager(second, None) == {
        "next_url": None, "prev_url": "/console/audit?size=25", "first_url": None,
    }  # fmt: skip
    assert admin_audit.pager(third, 75)["prev_url"] == "/console/audit?after=25&size=25&back=0"
    assert admin_audit.pager(third, 75)["first_url"] == "/console/audit?size=25"
    with pytest.raises(DpmError):
        admin_audit.parse({"back": "1,<b>"})


def test_an_audit_summary_names_the_main_fields_never_a_secret() -> None:
    fields = {"user_id": "u-1", "username": "admin1", "role": "admin", "password_hash": "$argon2...", "note": ""}
    assert admin_audit_summary.summary(fields) == "username: admin1; role: admin; user id: u-1"
    assert admin_audit_summary.summary({"macs": ["a", "b", "c", "d"], "enabled": False}) == (
        "macs: a, b, c and 1 more; enabled: no"
    )
    assert admin_audit_summary.summary({}) == ""


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=40), st.integers(0, 200))
def test_the_time_range_start_is_found_by_bisection(gaps: list[int], minutes: int) -> None:
    """Events at positions 1..n recorded at growing times: the cursor found lists exactly those at
    or after ``since``, in about log2(n) probes."""
    times, at = [], T0
    for gap in gaps:
        at += timedelta(minutes=gap)
        times.append(at)
    since = T0 + timedelta(minutes=minutes)
    probes: list[int] = []

    async def probe(after: int) -> datetime | None:
        probes.append(after)
        return times[after] if after < len(times) else None

    cursor = asyncio.run(admin_audit.start(probe, since, len(times)))
    assert [p for p in range(1, len(times) + 1) if p > cursor] == [
        p for p, t in enumerate(times, start=1) if t >= since
    ]
    assert len(probes) <= max(1, len(times)).bit_length() + 1
