"""Faults mid-run (issue 21): one crash, restart or outage during a 20-machine scenario that really
network-boots, in the lab. Every service runs as its own process under the stack's supervisor (what
``dpm up`` runs); the lab's machines are woken by magic packet, DHCP, TFTP and fetch their iPXE
script from pxe, and report their step through the api.

Cells: {scheduler, pxe, api, imager, agent-gateway} x {SIGKILL, SIGTERM}, the imager's with a backup
scenario (its chunk uploads are what the imager serves), the rest with a disk check; and
{nats-server, PostgreSQL} x {6 s, 45 s} outages. Each cell asserts: every execution ends -- completed,
or failed with the code of a timeout the fault outlasted -- none is stuck, none started or ended
twice, and every machine whose execution started was woken. The recovery time (fault to the faulted
component ready again) and the run's duration beside an unfaulted baseline run are printed.
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dpm_lab.sim import Lab, LabConfig, SimMachine, fleet
from dpm_runtime.localstack.stack import SERVICES

from .fault_lab import FaultStack, fault_stack, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MACHINES = 20
# Codes an execution may end with when a fault outlasted one of its deadlines: power-on (no boot seen),
# no response from the deploy environment, the scenario's own timeout.
TIMEOUT_CODES = {"DPM-E112", "DPM-E145", "DPM-E172"}
FINAL = ("completed", "failed")
FIGURES: list[str] = []


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultStack]:
    with fault_stack() as fs:
        with httpx.Client(base_url=fs.api, headers={"Authorization": f"Bearer {fs.token}"}, timeout=10) as http:
            assert http.put("/boot/settings", json={"mode": "proxy", "server_ip": "127.0.0.1"}).is_success
            assert http.put("/groups/loop", json={"subnet": "127.0.0.0/8"}).is_success
            for m in machines(fs.disks):
                body = {"name": m.name, "macs": [m.mac], "smbios_uuid": str(m.smbios_uuid), "group": "loop"}
                assert http.post("/machines", json=body).status_code == 201
            check = {"kind": "disk-check", "timeout_seconds": 240}
            backup = {"kind": "backup", "params": {"image": "faults/{machine}", "mode": "full"}, "timeout_seconds": 240}
            for name, spec in (("check", check), ("take", backup)):
                r = http.post("/scenarios", json={"name": name, "spec": spec})
                assert r.status_code == 201, r.text
        yield fs
    print("\n" + "\n".join(["fault matrix (20 lab machines each):", *FIGURES]))


def machines(disks: Path, *, with_disks: bool = False) -> list[SimMachine]:
    """The same 20 identities every cell (registered once); with disks for the backup cell."""
    fleet_ = fleet(MACHINES, prefix="fm")
    if with_disks:
        rng = random.Random(3)
        for m in fleet_:
            path = disks / f"{m.name}.img"
            if not path.exists():
                path.write_bytes(rng.randbytes(256 * 1024) + bytes(768 * 1024))
            m.disk = path
    return fleet_


async def started(http: httpx.AsyncClient, run_id: str) -> int:
    rows = (await http.get("/executions", params={"run_id": run_id, "limit": 1000})).json()
    return sum(r["state"] != "queued" for r in rows)


async def final_rows(http: httpx.AsyncClient, run_id: str, *, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        try:
            rows = (await http.get("/executions", params={"run_id": run_id, "limit": 1000})).json()
            if len(rows) == MACHINES and all(r["state"] in FINAL for r in rows):
                return rows
        except (httpx.HTTPError, ValueError):
            pass  # the api itself may be the faulted one
        await asyncio.sleep(0.5)
    states = collections.Counter(r.get("state") for r in rows if isinstance(r, dict))
    raise AssertionError(f"executions not final within {timeout:.0f} s: {dict(states)}")


def inject(fs: FaultStack, fault: str, target: str, outage: float) -> float:
    """Apply the fault; returns the recovery time: from the fault to the target ready again."""
    start = time.monotonic()
    if fault in ("SIGKILL", "SIGTERM"):
        fs.signal(target, signal.Signals[fault])
        wait(lambda: fs.stack.services[target].poll() is not None, timeout=30, what=f"{target} gone")
        wait(lambda: fs.stack.services[target].poll() is None and fs.ready((target,)), timeout=60, what=target)
        return time.monotonic() - start
    fs.stack.hold(target)
    time.sleep(max(0.0, outage - (time.monotonic() - start)))  # the outage itself, not a wait for an outcome
    back = time.monotonic()
    fs.stack.release(target)
    wait(fs.ready, timeout=90, what=f"every service ready after the {target} outage")
    return time.monotonic() - back


CELLS = [
    *((service, fault, 0.0) for service, _ in SERVICES if service != "updater" for fault in ("SIGKILL", "SIGTERM")),
    *((server, "outage", seconds) for server in ("nats", "postgres") for seconds in (6.0, 45.0)),
]


@pytest.mark.parametrize(
    ("target", "fault", "outage"), [("none", "none", 0.0), *CELLS], ids=lambda v: str(v).replace(".0", "s")
)
async def test_one_fault_during_a_netboot_run(faults: FaultStack, target: str, fault: str, outage: float) -> None:
    fs = faults
    backup = target == "imager"
    lab_machines = machines(fs.disks, with_disks=backup)
    config = LabConfig(dhcp=("127.0.0.1", fs.dhcp), tftp=("127.0.0.1", fs.tftp), wol_port=fs.wol, step_seconds=0.5)
    stop, listening = asyncio.Event(), asyncio.Event()
    headers = {"Authorization": f"Bearer {fs.token}"}
    async with (
        httpx.AsyncClient(base_url=fs.api, headers=headers, timeout=10) as http,
        httpx.AsyncClient(timeout=10) as lab_http,
    ):
        lab = Lab(lab_machines, config, lab_http)
        lab_task = asyncio.create_task(lab.run(stop, listening.set))
        try:
            await asyncio.wait_for(listening.wait(), 10)
            began = time.monotonic()
            r = await http.post(f"/scenarios/{'take' if backup else 'check'}/runs", json={"group": "loop"})
            assert r.status_code in (200, 201, 202), r.text
            run_id = r.json()["run_id"]
            recovery = 0.0
            if fault != "none":
                deadline = time.monotonic() + 60
                while await started(http, run_id) < 5:  # mid-run: some started, most still to come
                    assert time.monotonic() < deadline, "the run did not start"
                    await asyncio.sleep(0.1)
                recovery = await asyncio.to_thread(inject, fs, fault, target, outage)
            rows = await final_rows(http, run_id, timeout=300)
            took = time.monotonic() - began
            assert (await http.post("/clear", json={"state": "failed"})).is_success
        finally:
            stop.set()
            await lab_task
    ids = {r["execution_id"] for r in rows}
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for kind, _stream, data in fs.events(("ExecutionStarted", "ExecutionCompleted", "ExecutionFailed")):
        if data.get("execution_id") in ids:
            counts[(kind, data["execution_id"])] += 1
    assert all(n == 1 for n in counts.values()), f"started or ended twice: {[k for k, n in counts.items() if n > 1]}"
    outcomes = collections.Counter(r["state"] if r["state"] == "completed" else r["code"] for r in rows)
    FIGURES.append(
        f"  {target:>13} {fault:>7} {outage:>4.0f} s: recovery {recovery:5.1f} s, run {took:5.1f} s, {dict(outcomes)}"
    )
    failed = [r for r in rows if r["state"] != "completed"]
    assert all(r["code"] in TIMEOUT_CODES for r in failed), failed
    if fault in ("SIGKILL", "SIGTERM") or outage < 10:
        assert not failed, f"a short fault failed executions: {failed}; lab: {[m.stages for m in lab_machines]}"
    by_name = {m.name: m for m in lab_machines}
    for r in rows:
        if r["state"] == "completed":
            assert by_name[r["machine"]].wakes >= 1, (r, by_name[r["machine"]].stages)
