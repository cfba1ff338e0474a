"""A scenario end to end against simulated machines: the scheduler wakes them (Wake-on-LAN to the
lab), they network-boot with real DHCP/TFTP/HTTP against pxe, get the deploy environment, and
report their step through the api with their token; every execution completes, each machine woken
once, never more than the concurrency limit at a time."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dpm_cli.lab import Lab, LabConfig, fleet
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import MachineBooted, StepReported

from .conftest import peak_active

pytestmark = pytest.mark.integration

MACHINES = 6


async def test_disk_check_on_six_simulated_machines(
    api_service, pxe_service, scheduler_service, auth, tmp_path
) -> None:
    dhcp, pxe_port, tftp, wol = free_port(udp=True), free_port(udp=True), free_port(udp=True), free_port()
    api = api_service()
    pxe = pxe_service(
        pxe_dhcp_enabled=True,
        pxe_dhcp_host="127.0.0.1",
        pxe_dhcp_port=dhcp,
        pxe_dhcp_pxe_port=pxe_port,
        pxe_tftp_enabled=True,
        pxe_tftp_host="127.0.0.1",
        pxe_tftp_port=tftp,
        pxe_server_ip="127.0.0.1",
        pxe_api_url=f"http://127.0.0.1:{api.port}",
    )
    api.app.state.pxe_url = f"http://127.0.0.1:{pxe.port}"
    root = tmp_path / "boot"
    (root / "deploy").mkdir(parents=True)
    (root / "undionly.kpxe").write_bytes(b"\x90" * 70_000)  # stands in for Debian's; the lab only counts bytes
    (root / "deploy" / "vmlinuz").write_bytes(b"k" * 4096)
    (root / "deploy" / "initrd.img").write_bytes(b"i" * 4096)
    scheduler = scheduler_service(
        scheduler_wol_port=wol,
        scheduler_power_on_timeout=60,
        scheduler_power_on_interval=0,
        scheduler_concurrency=3,
        scheduler_tick=0.1,
        scheduler_wol_repeats=1,
    )
    machines = fleet(MACHINES)
    config = LabConfig(dhcp=("127.0.0.1", dhcp), tftp=("127.0.0.1", tftp), wol_port=wol, step_seconds=0.3)
    stop = asyncio.Event()
    async with running(api, headers=auth) as a, running(pxe), running(scheduler), httpx.AsyncClient(timeout=10) as http:
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            assert (await a.http.put("/boot/settings", json={"mode": "proxy", "server_ip": "127.0.0.1"})).is_success
            assert (await a.http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success  # WOL on loopback
            for m in machines:
                body = {"name": m.name, "macs": [m.mac], "smbios_uuid": str(m.smbios_uuid), "group": "loop"}
                assert (await a.http.post("/machines", json=body)).status_code == 201
            await a.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
            run = (await a.http.post("/scenarios/check/runs", json={"group": "loop"})).json()

            async def states() -> list[str]:
                rows = (await a.http.get("/executions", params={"run_id": run["run_id"]})).json()
                return [r["state"] for r in rows]

            final = await eventually(
                states,
                until=lambda s: len(s) == MACHINES and all(x in ("completed", "failed") for x in s),
                timeout=120,
                interval=0.25,
                what="every simulated machine done",
            )
            events = [r.event for r in await a.runtime.eventlog.read_all(limit=100_000)]
        finally:
            stop.set()
            await lab_task
    assert final == ["completed"] * MACHINES, [m.stages for m in machines]
    for m in machines:
        assert m.wakes == 1 and m.stages == ["rom:undionly.kpxe", "tftp:70000", "deploy", "reported"], m.stages
    booted = {(e.mac, e.stage.value) for e in events if isinstance(e, MachineBooted)}
    assert booted == {(m.mac, stage) for m in machines for stage in ("rom", "ipxe")}
    assert sum(isinstance(e, StepReported) for e in events) == 2 * MACHINES  # progress, then completed
    assert peak_active(events) == 3
