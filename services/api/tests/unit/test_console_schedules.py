"""The schedule pages' pure parts: the next firing from cron and zone (the scheduler's rule), times
shown on the schedule's own clock with the zone's name, the strict "Once at" format, and counts in
words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dpm_api.console import res_schedules
from dpm_schemas.errors import DpmError

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)  # a Friday


def _s(**over: object) -> dict[str, object]:
    base = {"schedule_id": "s1", "name": "n", "action": "power-on", "machine_ids": ["m"], "group": None,
            "cron": "0 22 * * 1-5", "at": None, "timezone": "UTC", "enabled": True}  # fmt: skip
    return {**base, **over}


def test_the_next_run_follows_cron_in_the_schedules_own_zone() -> None:
    assert res_schedules.next_run(_s(), NOW) == "2026-12-04 22:00 UTC"
    # 22:00 in Berlin is 21:00 UTC, shown on Berlin's clock with its name
    assert res_schedules.next_run(_s(timezone="Europe/Berlin"), NOW) == "2026-12-04 22:00 Europe/Berlin"
    assert res_schedules.next_run(_s(cron="0 9 * * 1"), NOW) == "2026-12-07 09:00 UTC"  # Monday
    assert res_schedules.next_run(_s(enabled=False), NOW) == "none (paused)"
    assert res_schedules.next_run(_s(cron="0 0 30 2 *"), NOW).startswith("never")


def test_a_one_shot_is_shown_in_its_zone_not_utc() -> None:
    once = _s(cron=None, at="2026-12-24T17:30:00+00:00", timezone="Europe/Berlin")
    row = res_schedules._row(once, {}, NOW)
    assert row["when"] == "once, 2026-12-24 18:30 Europe/Berlin"
    assert row["next"] == "2026-12-24 18:30 Europe/Berlin"
    assert res_schedules.next_run(_s(cron=None, at="2026-12-01T10:00:00+00:00"), NOW) == "none (its time has passed)"


def test_targets_are_counted_in_words() -> None:
    assert res_schedules._row(_s(), {}, NOW)["targets"] == "1 machine"
    assert res_schedules._row(_s(machine_ids=["a", "b"], group="lab"), {}, NOW)["targets"] == "group lab, 2 machines"


def test_once_at_is_read_strictly_on_a_24_hour_clock() -> None:
    assert res_schedules.once_at("2026-12-24 18:30") == "2026-12-24T18:30"
    body = res_schedules.form_body({"when_kind": "at", "at": "2026-12-24 18:30", "timezone": "Europe/Berlin"})
    assert body["at"] == "2026-12-24T18:30:00+01:00" and body["cron"] is None
    for typed in ("12/24/2026, 06:30 PM", "2026-12-24", "2026-13-01 10:00", "2026-12-24 25:00"):
        with pytest.raises(DpmError) as caught:
            res_schedules.once_at(typed)
        assert caught.value.code == "DPM-E441" and "YYYY-MM-DD HH:MM" in caught.value.message
    # the once field is only read when "once" was picked
    assert res_schedules.form_body({"when_kind": "cron", "at": "junk", "cron": "0 1 * * *"})["at"] is None
