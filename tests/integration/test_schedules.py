"""Schedules: a scheduled power-off skips the machine that runs a scenario and records why; a
scheduled run creates executions; bad schedules are refused with DPM-E148."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import ScheduleFired, ScheduleSkipped

pytestmark = pytest.mark.integration


def soon(seconds: float = 1.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_power_off_skips_a_machine_in_a_scenario_and_a_scheduled_run_runs(
    api_service, scheduler_service, auth
) -> None:
    async with running(api_service(), headers=auth) as api, running(scheduler_service(scheduler_tick=0.1)):
        for i, name in enumerate(("busy", "idle")):
            r = await api.http.post("/machines", json={"name": name, "macs": [f"52:54:00:5d:00:{i:02x}"]})
            assert r.status_code == 201
        long = {"kind": "simulated", "params": {"seconds": "30"}}
        assert (await api.http.post("/scenarios", json={"name": "long", "spec": long})).is_success
        assert (await api.http.post("/scenarios/long/runs", json={"machines": ["busy"]})).is_success

        async def busy_running() -> bool:
            rows = (await api.http.get("/executions", params={"machine": "busy"})).json()
            return bool(rows) and rows[0]["state"] == "running"

        await eventually(busy_running, what="busy runs its scenario")
        off = await api.http.post(
            "/schedules", json={"name": "night-off", "action": "power-off", "machines": ["busy", "idle"], "at": soon()}
        )
        assert off.status_code == 201, off.text
        ids = {m["name"]: m["machine_id"] for m in (await api.http.get("/machines")).json()}

        async def firings() -> list:
            return [
                r.event
                for r in await api.runtime.eventlog.read_all(limit=100_000)
                if isinstance(r.event, ScheduleFired | ScheduleSkipped)
            ]

        skipped, fired = await eventually(firings, until=lambda f: len(f) == 2, timeout=15, what="the firing")
        assert isinstance(skipped, ScheduleSkipped) and str(skipped.machine_id) == ids["busy"]
        assert "running scenario long" in skipped.reason and "power-off is skipped" in skipped.reason
        assert isinstance(fired, ScheduleFired) and [str(m) for m in fired.machine_ids] == [ids["idle"]]
        assert [(str(m), code) for m, code in fired.failures] == [(ids["idle"], "DPM-E120")]  # no agent: recorded

        quick = {"kind": "simulated", "params": {"seconds": "0.1"}}
        assert (await api.http.post("/scenarios", json={"name": "quick", "spec": quick})).is_success
        run = await api.http.post(
            "/schedules",
            json={"name": "nightly", "action": "run", "scenario": "quick", "machines": ["idle"], "at": soon()},
        )
        assert run.status_code == 201

        async def idle_done() -> bool:
            rows = (await api.http.get("/executions", params={"machine": "idle"})).json()
            return bool(rows) and rows[0]["scenario"] == "quick" and rows[0]["state"] == "completed"

        await eventually(idle_done, timeout=15, what="the scheduled run completed")
        listed = (await api.http.get("/schedules")).json()
        assert {s["name"] for s in listed} == {"night-off", "nightly"}


async def test_bad_schedules_are_refused(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        await api.http.post("/machines", json={"name": "m", "macs": ["52:54:00:5d:01:01"]})
        cases = [
            {"name": "x", "action": "power-on", "machines": ["m"], "cron": "every night"},
            {"name": "x", "action": "power-on", "machines": ["m"], "at": "2020-01-01T00:00:00Z"},
            {"name": "x", "action": "power-on", "machines": ["m"]},
            {"name": "x", "action": "run", "machines": ["m"], "cron": "0 22 * * *"},
            {"name": "x", "action": "power-on", "machines": ["m"], "cron": "0 22 * * *", "timezone": "Mars/Base"},
        ]
        for body in cases:
            r = await api.http.post("/schedules", json=body)
            assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E148", (body, r.text)
