"""Scenario execution through the api and the scheduler: the concurrency limit, assignment refusals,
error clear, the netboot watchdog (DPM-E112), the powered-on-without-reboot error (DPM-E141),
revision pinning, and the multicast validations."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionStarted,
    MachineBooted,
    MachineCameOnline,
    NetbootCleared,
    NetbootRequested,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.boot import Arch, BootStage
from dpm_schemas.ids import stream_id

from .conftest import peak_active

pytestmark = pytest.mark.integration


def simulated(seconds: float) -> dict:
    return {"kind": "simulated", "params": {"seconds": str(seconds)}}


async def machines(api, n: int, group: str = "new-machines") -> list[str]:
    ids = []
    for i in range(n):
        mac = f"52:54:00:ee:{i // 256:02x}:{i % 256:02x}"
        r = await api.http.post("/machines", json={"name": f"m{i:03d}", "macs": [mac], "group": group})
        assert r.status_code == 201, r.text
        ids.append(r.json()["machine_id"])
    return ids


async def finished(api, run_id: str, n: int) -> list[dict]:
    async def rows() -> list[dict]:
        got = (await api.http.get("/executions", params={"run_id": run_id})).json()
        return got if len(got) == n and all(r["state"] in ("completed", "failed") for r in got) else []

    return await eventually(rows, timeout=60, interval=0.2, what=f"run {run_id} finished")


async def test_limit_5_runs_10_targets_as_5_plus_5_and_busy_machines_are_refused(
    api_service, scheduler_service, auth
) -> None:
    scheduler = scheduler_service(scheduler_concurrency=5, scheduler_tick=0.1)
    async with running(api_service(), headers=auth) as api, running(scheduler):
        ids = await machines(api, 10)
        created = await api.http.post("/scenarios", json={"name": "sim", "spec": simulated(1.0)})
        assert created.status_code == 201 and created.json()["revision"] == 1
        run = (await api.http.post("/scenarios/sim/runs", json={"machines": ids})).json()
        # the scenario is edited while the run is in flight: the run keeps revision 1
        revised = await api.http.put("/scenarios/sim", json={"name": "sim", "spec": simulated(0.1)})
        assert revised.json()["revision"] == 2

        async def running_one() -> bool:
            rows = (await api.http.get("/executions", params={"machine": "m000"})).json()
            return bool(rows) and rows[0]["state"] in ("queued", "running")

        await eventually(running_one, what="m000's execution visible")
        busy = await api.http.post("/scenarios/sim/runs", json={"machines": ["m000"]})
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "DPM-E140"

        # live progress over server-sent events, until every execution of the run is final
        events: list[tuple[str, dict]] = []
        async with api.http.stream("GET", "/executions/stream", params={"run_id": run["run_id"], "poll": 0.2}) as sse:
            assert sse.headers["content-type"].startswith("text/event-stream")
            kind = ""
            async for line in sse.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
        assert events[-1] == ("end", {})
        finals = {d["execution_id"] for k, d in events if k == "execution" and d["state"] == "completed"}
        assert len(finals) == 10
        rows = await finished(api, run["run_id"], 10)
        assert {r["state"] for r in rows} == {"completed"} and {r["revision"] for r in rows} == {1}
        # replay the run from the log: never more than 5 active, and the 6th started after a completion
        events = [r.event for r in await api.runtime.eventlog.read_all()]
        assert peak_active(events) == 5
        started = [i for i, e in enumerate(events) if isinstance(e, ExecutionStarted)]
        completed = [i for i, e in enumerate(events) if isinstance(e, ExecutionCompleted)]
        assert len(started) == 10 and started[5] > completed[0]
        again = await api.http.post("/scenarios/sim/runs", json={"machines": ["m000"]})
        assert again.status_code == 202  # completed machines take a new run
        # "power off at end" goes to the agent; without one the outcome says so
        off = {**simulated(0.1), "power_off_at_end": True}
        assert (await api.http.post("/scenarios", json={"name": "sim-off", "spec": off})).is_success
        await finished(api, again.json()["run_id"], 1)
        run = (await api.http.post("/scenarios/sim-off/runs", json={"machines": ["m001"]})).json()
        await finished(api, run["run_id"], 1)
        ends = [
            r.event
            for r in await api.runtime.eventlog.read_all(limit=100_000)
            if isinstance(r.event, ExecutionCompleted)
        ]
        assert ends[-1].power_off == "DPM-E120" and {e.power_off for e in ends[:-1]} == {None}


async def test_concurrent_run_requests_for_one_machine_one_wins(api_service, auth) -> None:
    """No scheduler: the first request's execution never shows in the read model, so only the
    claim taken with the request can stop the second -- and two at once meet on it too."""
    async with running(api_service(), headers=auth) as api:
        await machines(api, 3)
        await api.http.post("/scenarios", json={"name": "sim", "spec": simulated(1.0)})
        both = await asyncio.gather(
            *(api.http.post("/scenarios/sim/runs", json={"machines": ["m000", "m001"]}) for _ in range(2))
        )
        assert sorted(r.status_code for r in both) == [202, 409], [r.text for r in both]
        loser = next(r for r in both if r.status_code == 409).json()["error"]
        assert loser["code"] == "DPM-E140" and "a moment ago" in loser["message"]
        again = await api.http.post("/scenarios/sim/runs", json={"machines": ["m001", "m002"]})
        assert again.status_code == 409  # m001 is taken; m002 alone is free
        assert (await api.http.post("/scenarios/sim/runs", json={"machines": ["m002"]})).status_code == 202


async def test_netboot_watchdog_error_clear_and_powered_on_without_reboot(api_service, scheduler_service, auth) -> None:
    scheduler = scheduler_service(
        scheduler_concurrency=5,
        scheduler_tick=0.1,
        scheduler_power_on_timeout=1.5,
        scheduler_wol_port=free_port(),
        scheduler_power_on_interval=0,
    )
    async with running(api_service(), headers=auth) as api, running(scheduler):
        # WOL to 127.255.255.255: the packets stay on loopback
        assert (await api.http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success
        off, on = await machines(api, 2, group="loop")
        check = {"kind": "disk-check"}
        assert (await api.http.post("/scenarios", json={"name": "check", "spec": check})).status_code == 201
        await api.runtime.eventlog.append(
            stream_id(subjects.AGENT, on),
            ANY_VERSION,
            [NewEvent(MachineCameOnline(machine_id=uuid.UUID(on), agent_version="1"), Metadata.new(actor="gw"))],
        )

        async def on_is_online() -> bool:
            return bool((await api.http.get(f"/machines/{on}")).json()["online"])

        await eventually(on_is_online, what="the machine online")
        preview = await api.http.post("/scenarios/check/runs", params={"dry_run": "true"}, json={"machines": [off, on]})
        plan = {m["machine_id"]: m for m in preview.json()["machines"]}
        assert plan[off]["start"] == "wake" and plan[off]["waits_for"] == "its network boot"
        assert plan[on]["start"] is None and plan[on]["problem"].startswith("DPM-E141")
        assert preview.json()["would_run"] is True  # E141 fails at start; only busy machines refuse the run
        assert (await api.http.get("/executions", params={"scenario": "check"})).json() == []  # nothing ran
        run = (await api.http.post("/scenarios/check/runs", json={"machines": [off, on]})).json()
        rows = {r["machine_id"]: r for r in await finished(api, run["run_id"], 2)}
        assert rows[off]["code"] == "DPM-E112" and "did not network-boot" in rows[off]["reason"]
        assert rows[on]["code"] == "DPM-E141" and "reboot at start" in rows[on]["reason"]
        # pxe was told to serve the deploy environment, and told to stop when the execution failed
        events = [r.event for r in await api.runtime.eventlog.read_all()]
        assert [type(e) for e in events if isinstance(e, NetbootRequested | NetbootCleared)] == [
            NetbootRequested,
            NetbootCleared,
        ]
        exported = (await api.http.get("/executions/export", params={"scenario": "check"})).text
        header, *lines = exported.splitlines()
        assert header.startswith("machine,scenario,revision,kind,state,code,reason,remedy,")
        e112 = next(line for line in lines if "DPM-E112" in line)
        assert "Check that the machine boots from the network first" in e112  # the remedy beside the code
        refused = await api.http.post("/scenarios/check/runs", json={"machines": [off]})
        assert refused.status_code == 409 and "scenario execution error" in refused.json()["error"]["message"]
        dry = await api.http.post("/scenarios/check/runs", params={"dry_run": "true"}, json={"machines": [off]})
        assert dry.json()["would_run"] is False and "scenario execution error" in dry.json()["conflicts"][0]
        cleared = await api.http.post("/clear", json={"state": "failed"})
        assert cleared.json() == {"cleared": 2}
        assert (await api.http.post("/scenarios/check/runs", json={"machines": [off]})).status_code == 202


async def test_multicast_settings_are_validated(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:

        def restore(group: str, **extra) -> dict:
            return {"kind": "restore", "multicast": {"group": group, **extra}, "params": {"image": "golden"}}

        unicast_range = await api.http.post("/scenarios", json={"name": "r0", "spec": restore("10.0.0.1")})
        assert unicast_range.json()["error"]["code"] == "DPM-E142"
        local = await api.http.post("/scenarios", json={"name": "r0", "spec": restore("224.0.0.5")})
        assert local.json()["error"]["code"] == "DPM-E142"
        zero = await api.http.post("/scenarios", json={"name": "r0", "spec": restore("239.1.1.1", max_targets=0)})
        assert zero.status_code == 422
        first = await api.http.post("/scenarios", json={"name": "r1", "spec": restore("239.1.1.1", max_targets=4)})
        assert first.status_code == 201
        clash = await api.http.post("/scenarios", json={"name": "r2", "spec": restore("239.1.1.1")})
        assert clash.status_code == 409 and clash.json()["error"]["code"] == "DPM-E143"
        multicast_backup = {"kind": "backup", "multicast": {"group": "239.1.1.2"}, "params": {"image": "x"}}
        backup = await api.http.post("/scenarios", json={"name": "b", "spec": multicast_backup})
        assert backup.json()["error"]["code"] == "DPM-E142"
        nameless = await api.http.post("/scenarios", json={"name": "b", "spec": {"kind": "backup"}})
        assert "params.image" in nameless.json()["error"]["message"]
        bad_mode = {"kind": "backup", "params": {"image": "x", "mode": "most"}}
        assert (await api.http.post("/scenarios", json={"name": "b", "spec": bad_mode})).status_code == 422
        missing = await api.http.post("/scenarios/nope/runs", json={"machines": ["x"]})
        assert missing.status_code == 404


async def test_step_reports_end_an_execution_and_silence_is_a_no_response_error(
    api_service, scheduler_service, auth
) -> None:
    # a netboot step (disk-check) reached by waking the machines and seeing them boot; remote updates,
    # which this test used before, are refused until a service implements them (DPM-E115)
    scheduler = scheduler_service(
        scheduler_tick=0.1, scheduler_no_response_timeout=1.5, scheduler_wol_port=free_port(),
        scheduler_power_on_interval=0,
    )  # fmt: skip
    async with running(api_service(), headers=auth) as api, running(scheduler):
        assert (await api.http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success
        reporting, silent = await machines(api, 2, group="loop")
        log = api.runtime.eventlog
        assert (await api.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})).is_success
        run = (await api.http.post("/scenarios/check/runs", json={"machines": [reporting, silent]})).json()
        await netboot(api, [reporting, silent])

        async def requested() -> list:
            return [r.event for r in await log.read_all() if isinstance(r.event, StepRequested)]

        steps = await eventually(requested, until=lambda s: len(s) == 2, what="both steps requested")
        step = next(s for s in steps if str(s.machine_id) == reporting)
        assert step.step == "disk-check" and step.spec.kind == "disk-check"
        # the deploy environment reports progress, then completion
        for status, percent in (("progress", 40), ("completed", 100)):
            report = StepReported(execution_id=step.execution_id, step=step.step, status=status, percent=percent)
            await log.append(
                stream_id(subjects.STEP, step.execution_id),
                ANY_VERSION,
                [NewEvent(report, Metadata.new(actor="deploy"))],
            )
        rows = {r["machine_id"]: r for r in await finished(api, run["run_id"], 2)}
        assert rows[reporting]["state"] == "completed" and rows[reporting]["percent"] == 100
        assert rows[silent]["code"] == "DPM-E145" and "no response" in rows[silent]["reason"]


async def netboot(api, machine_ids: list[str]) -> None:
    """The machines network-boot once woken (what pxe records when their ROM asks for a boot file)."""
    rows = {m["machine_id"]: m for m in (await api.http.get("/machines")).json()}

    async def waiting() -> bool:
        got = {r["machine_id"]: r["state"] for r in (await api.http.get("/executions")).json()}
        return all(got.get(m) == "powering-on" for m in machine_ids)

    await eventually(waiting, what="woken, waiting for the network boot")
    for machine_id in machine_ids:
        mac = rows[machine_id]["macs"][0]
        booted = MachineBooted(mac=mac, arch=Arch.BIOS_X86, stage=BootStage.ROM)
        await api.runtime.eventlog.append(
            stream_id(subjects.BOOT, mac), ANY_VERSION, [NewEvent(booted, Metadata.new(actor="pxe"))]
        )


async def test_suspend_is_two_phase_and_clear_releases_the_machine(api_service, scheduler_service, auth) -> None:
    scheduler = scheduler_service(
        scheduler_tick=0.1, scheduler_suspend_timeout=2.0, scheduler_wol_port=free_port(),
        scheduler_power_on_interval=0,
    )  # fmt: skip
    async with running(api_service(), headers=auth) as api, running(scheduler):
        assert (await api.http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success
        sim_machine, update_machine = await machines(api, 2, group="loop")
        log = api.runtime.eventlog
        await api.http.post("/scenarios", json={"name": "long", "spec": simulated(60)})
        # a netboot step nobody stops (remote updates, used here before, are refused: DPM-E115)
        await api.http.post("/scenarios", json={"name": "upd", "spec": {"kind": "disk-check"}})

        async def latest(machine: str) -> dict:
            rows = (await api.http.get("/executions", params={"machine": machine})).json()
            return rows[0] if rows else {}

        # a simulated step stops at once: the interrupt is confirmed
        await api.http.post("/scenarios/long/runs", json={"machines": [sim_machine]})
        first = await eventually(
            lambda: latest(sim_machine), until=lambda r: r.get("state") == "running", what="running"
        )
        assert (await api.http.post(f"/executions/{first['execution_id']}/suspend")).status_code == 202
        done = await eventually(
            lambda: latest(sim_machine), until=lambda r: r.get("state") == "suspended", what="suspended"
        )
        assert done["code"] is None and "interrupted while running" in done["reason"]
        refused = await api.http.post("/scenarios/long/runs", json={"machines": [sim_machine]})
        assert refused.status_code == 409 and "interrupted" in refused.json()["error"]["message"]
        again = await api.http.post(f"/executions/{first['execution_id']}/suspend")
        assert again.status_code == 422 and "already suspended" in again.json()["error"]["message"]

        # a step nobody stops: asked to cancel, unconfirmed after the suspend timeout, then force-cleared
        await api.http.post("/scenarios/upd/runs", json={"machines": [update_machine]})
        await netboot(api, [update_machine])
        second = await eventually(
            lambda: latest(update_machine), until=lambda r: r.get("state") == "running", what="running"
        )
        await api.http.post(f"/executions/{second['execution_id']}/suspend")
        await eventually(lambda: latest(update_machine), until=lambda r: r.get("state") == "suspending", what="asked")
        early = await api.http.post("/clear", json={"machines": [update_machine]})  # release while interrupting
        assert early.status_code == 409 and "being interrupted" in early.json()["error"]["message"]
        unconfirmed = await eventually(
            lambda: latest(update_machine), until=lambda r: r.get("state") == "suspended", what="timed out"
        )
        assert unconfirmed["code"] == "unconfirmed" and "did not confirm the interrupt" in unconfirmed["reason"]
        names = [
            type(r.event).__name__ for r in await log.read_stream(stream_id(subjects.EXECUTION, second["execution_id"]))
        ]  # a netboot step: NetbootCleared comes between the two
        assert names[-3:] == ["StepCancelRequested", "NetbootCleared", "ExecutionSuspended"]
        assert (await api.http.post("/clear", json={"machines": [sim_machine, update_machine]})).json() == {
            "cleared": 2
        }
        assert (await api.http.post("/scenarios/long/runs", json={"machines": [sim_machine]})).status_code == 202
