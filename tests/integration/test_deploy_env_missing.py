"""A missing deploy environment is detected (issue 21): a disk check in the lab while pxe's boot root
has no deploy kernel fails within seconds with DPM-E430 -- pxe withholds the script that would fail
in iPXE and records why, the scheduler fails the execution at once instead of waiting for its
no-response timeout (DPM-E145) -- and once the files are in place the next run completes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from dpm_lab.sim import Lab, SimMachine, fleet
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import DeployBootUnavailable, DeployTokenIssued

from .conftest import deploy_files, lab_setup, run_until_done

pytestmark = pytest.mark.integration


async def powers_off(_machine: SimMachine) -> str:
    """The machine's own OS, booted from its disk once the failed execution is over, shuts it down."""
    return "off"


async def power(machine: SimMachine) -> str:
    return machine.power


async def test_a_disk_check_without_deploy_kernel_fails_fast_then_runs_once_it_is_there(
    lab_stack, auth, tmp_path
) -> None:
    api, pxe, scheduler, config = lab_stack(concurrency=1, deploy_env=False)
    machines = fleet(1)
    stop = asyncio.Event()
    async with (
        running(api, headers=auth) as a,
        running(pxe) as p,
        running(scheduler),
        httpx.AsyncClient(timeout=10) as http,
    ):
        lab_task = asyncio.create_task(Lab(machines, config, http, run_os=powers_off).run(stop))
        try:
            await lab_setup(a.http, machines)
            assert (await p.http.get("/statusz")).json()["counters"]["deploy_environment_missing"] == 1
            await a.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
            started = time.monotonic()
            (failed,) = await run_until_done(a.http, "check", {"group": "loop"}, 1, timeout=30)
            elapsed = time.monotonic() - started
            await eventually(lambda: power(machines[0]), until=lambda s: s == "off", timeout=30, what="it is off")
            first_stages = list(machines[0].stages)

            deploy_files(tmp_path / "boot")  # what `make deploy-os` would have done
            assert (await p.http.get("/statusz")).json()["counters"]["deploy_environment_missing"] == 0
            assert (await a.http.post("/clear", json={"state": "failed"})).is_success
            (done,) = await run_until_done(a.http, "check", {"group": "loop"}, 1, timeout=60)
            events = [r.event for r in await a.runtime.eventlog.read_all(limit=100_000)]
        finally:
            stop.set()
            await lab_task
    assert failed["state"] == "failed" and failed["code"] == "DPM-E430", failed
    assert elapsed < 20, f"failed after {elapsed:.1f} s"  # the power-on timeout is 60 s, DPM-E145's 1800 s
    assert "deploy/vmlinuz is not there" in failed["reason"] and "make deploy-os" in failed["remedy"], failed
    assert f"expected at {tmp_path / 'boot' / 'deploy' / 'vmlinuz'}" in failed["reason"]
    # no script that fails in iPXE, no local disk while the execution was pending: it asked again,
    # and booted its disk only once the execution was over
    assert first_stages == ["rom:undionly.kpxe", "tftp:70000", "local", "os:off"], first_stages
    unavailable = [e for e in events if isinstance(e, DeployBootUnavailable)]
    assert len(unavailable) == 1 and unavailable[0].code == "DPM-E430", unavailable
    assert unavailable[0].path == str(tmp_path / "boot" / "deploy" / "vmlinuz")
    issued = [str(e.execution_id) for e in events if isinstance(e, DeployTokenIssued)]
    assert issued == [done["execution_id"]]  # no token was handed out for the run that could not boot
    assert done["state"] == "completed", (done, machines[0].stages)
    assert machines[0].stages[len(first_stages) :] == ["rom:undionly.kpxe", "tftp:70000", "deploy", "reported"]
