"""`dpm lab up`: simulated machines against a running dpm (`dpm up`), for demos and trying scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Annotated

import httpx
import typer

from dpm_cli.client import request
from dpm_cli.lab import Lab, LabConfig, fleet
from dpm_schemas import ports

app = typer.Typer(help="The lab simulator: machines that wake, network-boot and run scenarios.", no_args_is_help=True)


@app.command("up")
def lab_up(
    machines: Annotated[int, typer.Option(min=1, max=10_000)] = 10,
    group: Annotated[str, typer.Option(help="Group the lab machines are registered in.")] = "lab",
    register: Annotated[bool, typer.Option(help="Register the machines (and the group) through the api.")] = True,
    step_seconds: Annotated[float, typer.Option(help="How long a simulated step takes.")] = 2.0,
) -> None:
    """Run N simulated machines on loopback until Ctrl-C. They answer Wake-on-LAN on
    DPM_SCHEDULER_WOL_PORT and boot against pxe's DHCP (DPM_PXE_DHCP_PORT) and TFTP (DPM_PXE_TFTP_PORT);
    set the boot settings to proxy mode with server IP 127.0.0.1 first (`dpm boot set`)."""
    lab = fleet(machines)
    if register:
        request("PUT", f"/groups/{group}", json={"subnet": "127.0.0.0/8", "description": "dpm lab simulator"})
        existing = {m["name"] for m in request("GET", "/machines")}
        for m in lab:
            if m.name not in existing:
                body = {"name": m.name, "macs": [m.mac], "smbios_uuid": str(m.smbios_uuid), "group": group}
                request("POST", "/machines", json=body)
    config = LabConfig(
        dhcp=("127.0.0.1", int(os.environ.get("DPM_PXE_DHCP_PORT", ports.DHCP))),
        tftp=("127.0.0.1", int(os.environ.get("DPM_PXE_TFTP_PORT", ports.TFTP))),
        wol_port=int(os.environ.get("DPM_SCHEDULER_WOL_PORT", ports.WAKE_ON_LAN)),
        step_seconds=step_seconds,
    )
    print(f"{machines} lab machines in group {group}; waiting for Wake-on-LAN on port {config.wol_port} (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(lab, config))


async def _run(machines: list, config: LabConfig) -> None:  # type: ignore[type-arg]
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as http:
        lab = Lab(machines, config, http)
        task = asyncio.create_task(lab.run(stop))
        last = ""
        try:
            while not task.done():
                states = ", ".join(f"{m.name}: {m.stages[-1] if m.stages else m.power}" for m in machines if m.stages)
                if states and states != last:
                    print(states, flush=True)
                    last = states
                await asyncio.sleep(2)
        finally:
            stop.set()
            await task
