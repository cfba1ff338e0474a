"""Schedules: a scheduled power-off skips the machine that runs a scenario and records why; a
scheduled run creates executions; bad schedules are refused with DPM-E148. A paused schedule does not
fire, a resumed one fires at its next time (the missed ones are not made up), an edit moves when it
fires (the scheduler's clock is injected and moved: nothing sleeps out real time); an unknown
schedule is DPM-E183 and a stale or concurrent edit DPM-E184."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_scheduler import bootstrap as scheduler_bootstrap
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


class Clock:
    """The scheduler's injected clock (``bootstrap.utc_now``): the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def next_at(api, schedule_id: str) -> tuple[datetime | None] | None:  # type: ignore[no-untyped-def]
    """The scheduler's row of the schedule: (its next firing,), or None before it has one."""
    async with api.runtime.pool.connection() as conn:
        sql = "SELECT next_at FROM scheduler.schedules WHERE schedule_id = %s"
        return await (await conn.execute(sql, (schedule_id,))).fetchone()


async def fired(api, schedule_id: str) -> list[ScheduleFired]:  # type: ignore[no-untyped-def]
    events = await api.runtime.eventlog.read_all(limit=100_000)
    return [r.event for r in events if isinstance(r.event, ScheduleFired) and str(r.event.schedule_id) == schedule_id]


def next_three(after: datetime) -> datetime:
    """The first 03:00 UTC after ``after`` (what cron ``0 3 * * *`` fires at)."""
    at = after.replace(hour=3, minute=0, second=0, microsecond=0)
    return at if at > after else at + timedelta(days=1)


async def test_a_paused_schedule_does_not_fire_resumed_fires_next_and_an_edit_moves_it(
    api_service, scheduler_service, auth, monkeypatch
) -> None:
    clock = Clock(datetime.now(UTC))
    monkeypatch.setattr(scheduler_bootstrap, "utc_now", clock)
    async with running(api_service(), headers=auth) as api, running(scheduler_service(scheduler_tick=0.1)):
        assert (await api.http.post("/machines", json={"name": "m", "macs": ["52:54:00:5d:02:01"]})).is_success
        body = {"action": "power-off", "machines": ["m"], "cron": "0 3 * * *"}
        witness = (await api.http.post("/schedules", json={"name": "witness", **body})).json()["schedule_id"]
        target = (await api.http.post("/schedules", json={"name": "target", **body})).json()["schedule_id"]
        day1 = next_three(clock.now)

        async def at_(schedule_id: str, when: datetime | None) -> None:
            await eventually(lambda: next_at(api, schedule_id), until=lambda r: r == (when,), what=f"next {when}")

        await at_(witness, day1)
        await at_(target, day1)
        paused = await api.http.patch(f"/schedules/{target}", json={"enabled": False})
        assert paused.status_code == 200 and paused.json()["enabled"] is False and paused.json()["version"] == 2
        await at_(target, None)
        # its time passes twice: the witness (due in the same rounds) fires each time, the paused one never
        for count, days in ((1, 0), (2, 2)):
            clock.now = day1 + timedelta(days=days, minutes=1)
            await eventually(lambda: fired(api, witness), until=lambda f, n=count: len(f) == n, what="the witness")
            assert await fired(api, target) == [] and await next_at(api, target) == (None,)
        resumed = await api.http.patch(f"/schedules/{target}", json={"enabled": True})
        assert resumed.status_code == 200 and resumed.json()["enabled"] is True
        day4 = day1 + timedelta(days=3)
        await at_(target, day4)  # the next time after the resume: the two missed firings are not made up
        assert await fired(api, target) == []
        clock.now = day4 + timedelta(minutes=1)
        await eventually(lambda: fired(api, target), until=lambda f: len(f) == 1, what="the resumed firing")
        edited = await api.http.put(f"/schedules/{target}", json={"name": "target", **body, "cron": "30 5 * * *"})
        assert edited.status_code == 200 and edited.json()["cron"] == "30 5 * * *", edited.text
        assert edited.json()["schedule_id"] == target and edited.json()["version"] == 4
        await at_(target, day4.replace(hour=5, minute=30))  # not tomorrow's 03:00 any more
        clock.now = day4.replace(hour=5, minute=31)
        await eventually(lambda: fired(api, target), until=lambda f: len(f) == 2, what="the edited firing")
        assert len(await fired(api, witness)) == 3  # still at 03:00: not due at 05:31
        listed = {s["name"]: s for s in (await api.http.get("/schedules")).json()}
        assert listed["target"]["cron"] == "30 5 * * *" and listed["target"]["enabled"] is True


async def test_editing_unknown_stale_and_concurrent_schedules_is_refused(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        await api.http.post("/machines", json={"name": "m", "macs": ["52:54:00:5d:03:01"]})
        body = {"name": "s", "action": "power-on", "machines": ["m"], "cron": "0 22 * * *"}
        unknown = "00000000-0000-4000-8000-000000000001"
        for method, extra in (("GET", {}), ("PUT", {"json": body}), ("PATCH", {"json": {"enabled": False}})):
            r = await api.http.request(method, f"/schedules/{unknown}", **extra)
            assert r.status_code == 404 and r.json()["error"]["code"] == "DPM-E183", (method, r.text)
        sid = (await api.http.post("/schedules", json=body)).json()["schedule_id"]
        assert (await api.http.get(f"/schedules/{sid}")).json()["version"] == 1
        bad = await api.http.put(f"/schedules/{sid}", json={**body, "cron": "every night"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "DPM-E148"
        bad = await api.http.patch(f"/schedules/{sid}", json={"enabled": "maybe"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "DPM-E100"
        # two edits based on version 1 at once: one is saved, the other refused, none lost silently
        both = await asyncio.gather(
            api.http.put(f"/schedules/{sid}", json={**body, "cron": "0 1 * * *", "version": 1}),
            api.http.patch(f"/schedules/{sid}", json={"enabled": False, "version": 1}),
        )
        assert sorted(r.status_code for r in both) == [200, 409], [r.text for r in both]
        (lost,) = [r for r in both if r.status_code == 409]
        assert lost.json()["error"]["code"] == "DPM-E184"
        stale = await api.http.put(f"/schedules/{sid}", json={**body, "cron": "0 2 * * *", "version": 1})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "DPM-E184"
        now = (await api.http.get(f"/schedules/{sid}")).json()
        assert now["version"] == 2 and (now["cron"] == "0 1 * * *") != (now["enabled"] is False)
        assert (await api.http.delete(f"/schedules/{sid}")).status_code == 202
        gone = await api.http.patch(f"/schedules/{sid}", json={"enabled": True})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "DPM-E183"
        again = await api.http.delete(f"/schedules/{sid}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "DPM-E183"
