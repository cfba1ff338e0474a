"""Multicast session gathering (seed catalog §3.5): the max wait starts only the ready machines,
"start now" starts a session at once, and a remote update beyond max targets fails."""

from __future__ import annotations

import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import MachineBooted, MulticastSessionStarted
from dpm_schemas.events.boot import Arch, BootStage
from dpm_schemas.ids import stream_id

from .facts import record_image

pytestmark = pytest.mark.integration


async def test_max_wait_start_now_and_updates_beyond_max_targets(api_service, scheduler_service, auth) -> None:
    scheduler = scheduler_service(
        scheduler_tick=0.1,
        scheduler_concurrency=10,
        scheduler_power_on_timeout=60,
        scheduler_wol_port=free_port(),
        scheduler_power_on_interval=0,
    )
    async with running(api_service(), headers=auth) as api, running(scheduler):
        log = api.runtime.eventlog
        assert (await api.http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success  # WOL stays local
        macs = [f"52:54:00:77:00:{i:02x}" for i in range(6)]
        ids = []
        for i, mac in enumerate(macs):
            r = await api.http.post("/machines", json={"name": f"mc{i}", "macs": [mac], "group": "loop"})
            ids.append(r.json()["machine_id"])

        async def boot(mac: str) -> None:  # what pxe appends when the machine network-boots
            booted = MachineBooted(mac=mac, arch=Arch.BIOS_X86, stage=BootStage.ROM)
            await log.append(stream_id(subjects.BOOT, mac), ANY_VERSION, [NewEvent(booted, Metadata.new(actor="pxe"))])

        async def sessions() -> list[MulticastSessionStarted]:
            return [r.event for r in await log.read_all(limit=100_000) if isinstance(r.event, MulticastSessionStarted)]

        async def states(run_id: str) -> dict[str, str]:
            rows = (await api.http.get("/executions", params={"run_id": run_id})).json()
            return {r["machine"]: r["state"] for r in rows}

        def restore(group: str, **conditions) -> dict:
            return {"kind": "restore", "multicast": {"group": group, **conditions}, "params": {"image": "golden"}}

        await record_image(api, "golden")  # a restore of an image never captured is refused (DPM-E158)

        # max wait: two of three machines boot; after 2 s the session starts with those two only
        await api.http.post(
            "/scenarios", json={"name": "r-wait", "spec": restore("239.9.9.1", max_targets=3, max_wait_seconds=2)}
        )
        run = (await api.http.post("/scenarios/r-wait/runs", json={"machines": ids[:3]})).json()
        await eventually(
            lambda: states(run["run_id"]), until=lambda s: set(s.values()) == {"powering-on"}, what="woken"
        )
        await boot(macs[0])
        await boot(macs[1])
        await eventually(
            lambda: states(run["run_id"]), until=lambda s: s.get("mc0") == s.get("mc1") == "waiting", what="ready"
        )
        (first,) = await eventually(sessions, timeout=15, what="the max-wait session")
        assert first.reason == "max-wait" and first.group == "239.9.9.1"
        assert set(map(str, first.machine_ids)) == set(ids[:2])
        got = await eventually(
            lambda: states(run["run_id"]), until=lambda s: s["mc0"] == s["mc1"] == "running", what="members running"
        )
        assert got["mc2"] == "powering-on"  # not booted: it was not waited for

        # start now: no max wait, max targets not reached; the operator starts it
        await api.http.post("/scenarios", json={"name": "r-now", "spec": restore("239.9.9.2", max_targets=5)})
        run = (await api.http.post("/scenarios/r-now/runs", json={"machines": [ids[3]]})).json()
        await eventually(lambda: states(run["run_id"]), until=lambda s: s.get("mc3") == "powering-on", what="woken")
        await boot(macs[3])
        await eventually(lambda: states(run["run_id"]), until=lambda s: s.get("mc3") == "waiting", what="ready")
        assert len(await sessions()) == 1  # nothing starts by itself
        assert (await api.http.post("/scenarios/r-now/start-now")).status_code == 202
        second = (await eventually(sessions, until=lambda s: len(s) == 2, what="start now"))[1]
        assert second.reason == "start-now" and [str(m) for m in second.machine_ids] == [ids[3]]

        # multicast remote updates are refused until the updater delivers by multicast (DPM-E115);
        # their max-targets failure (DPM-E146) comes back with it
        update = {
            "kind": "remote-update",
            "params": {"packages": "x"},
            "multicast": {"group": "239.9.9.3", "max_targets": 1},
        }
        refused = await api.http.post("/scenarios", json={"name": "upd", "spec": update})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "DPM-E115"
