"""A scenario end to end against simulated machines: the scheduler wakes them (Wake-on-LAN to the
lab), they network-boot with real DHCP/TFTP/HTTP against pxe, get the deploy environment, and
report their step through the api with their token; every execution completes, each machine woken
once, never more than the concurrency limit at a time."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dpm_lab.sim import Lab, fleet
from dpm_runtime.testing.services import running
from dpm_schemas.events import MachineBooted, StepReported

from .conftest import lab_setup, peak_active, run_until_done

pytestmark = pytest.mark.integration

MACHINES = 6


async def test_disk_check_on_six_simulated_machines(lab_stack, auth) -> None:
    api, pxe, scheduler, config = lab_stack(concurrency=3)
    machines = fleet(MACHINES)
    stop = asyncio.Event()
    async with running(api, headers=auth) as a, running(pxe), running(scheduler), httpx.AsyncClient(timeout=10) as http:
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            await lab_setup(a.http, machines)
            await a.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
            rows = await run_until_done(a.http, "check", {"group": "loop"}, MACHINES)
            events = [r.event for r in await a.runtime.eventlog.read_all(limit=100_000)]
        finally:
            stop.set()
            await lab_task
    assert [r["state"] for r in rows] == ["completed"] * MACHINES, [m.stages for m in machines]
    for m in machines:
        assert m.wakes == 1 and m.stages == ["rom:undionly.kpxe", "tftp:70000", "deploy", "reported"], m.stages
    booted = {(e.mac, e.stage.value) for e in events if isinstance(e, MachineBooted)}
    assert booted == {(m.mac, stage) for m in machines for stage in ("rom", "ipxe")}
    assert sum(isinstance(e, StepReported) for e in events) == 2 * MACHINES  # progress, then completed
    assert peak_active(events) == 3


async def test_three_netboot_runs_in_a_row_on_one_machine_each_complete(lab_stack, auth) -> None:
    """The scheduler's repeated magic packets of one wake reach a machine that is already booting:
    it ignores them, so no phantom boot leaves it on and the next run's wake powers it on again."""
    api, pxe, scheduler, config = lab_stack(concurrency=1, wol_repeats=3)
    machines = fleet(1)
    stop = asyncio.Event()
    async with running(api, headers=auth) as a, running(pxe), running(scheduler), httpx.AsyncClient(timeout=10) as http:
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            await lab_setup(a.http, machines)
            await a.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
            runs = [await run_until_done(a.http, "check", {"group": "loop"}, 1, timeout=60) for _ in range(3)]
        finally:
            stop.set()
            await lab_task
    assert [rows[0]["state"] for rows in runs] == ["completed"] * 3, machines[0].stages
    assert machines[0].wakes == 3 and machines[0].power == "off", machines[0].stages
    assert machines[0].stages == ["rom:undionly.kpxe", "tftp:70000", "deploy", "reported"] * 3
