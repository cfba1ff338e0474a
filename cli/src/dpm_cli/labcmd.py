"""`dpm lab up`: simulated machines against a running dpm (`dpm up`), for demos and trying scenarios.

It stops on SIGINT and SIGTERM alike, within ``GRACE_SECONDS`` (namespace machines: their own
stop, up to 15 s each). Both handlers are installed explicitly: started as a background job of a
script, a process begins with SIGINT *ignored*, and Python then installs no KeyboardInterrupt for
it -- such a `dpm lab up` used to run on after its script's Ctrl-C, holding the WOL port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from dpm_cli.client import EXIT_USAGE, CliError, request
from dpm_lab.netns import NamespaceLab
from dpm_lab.sim import Lab, LabConfig, SimMachine, fleet
from dpm_runtime.testing import netlab
from dpm_schemas import ports

GRACE_SECONDS = 5.0  # how long the loopback lab may take to stop once signalled

app = typer.Typer(help="The lab simulator: machines that wake, network-boot and run scenarios.", no_args_is_help=True)


@app.command("up")
def lab_up(
    machines: Annotated[int, typer.Option(min=1, max=10_000)] = 10,
    group: Annotated[str, typer.Option(help="Group the lab machines are registered in.")] = "lab",
    register: Annotated[bool, typer.Option(help="Register the machines (and the group) through the api.")] = True,
    step_seconds: Annotated[float, typer.Option(help="How long a simulated step takes.")] = 2.0,
    netns: Annotated[
        bool, typer.Option("--netns", help="One network namespace per machine on a lab bridge, with a real agent.")
    ] = False,
    disk_mb: Annotated[int, typer.Option(help="With --netns: a blank disk-image file of this size per machine.")] = 64,
) -> None:
    """Run N simulated machines on loopback until Ctrl-C. They answer Wake-on-LAN on
    DPM_SCHEDULER_WOL_PORT and boot against pxe's DHCP (DPM_PXE_DHCP_PORT) and TFTP (DPM_PXE_TFTP_PORT);
    set the boot settings to proxy mode with server IP 127.0.0.1 first (`dpm boot set`).

    With --netns (root): each machine in its own namespace on a new bridge, booting with real
    broadcasts, running the deploy client on its own disk file and the real agent as its OS; run
    `dpm up` with DPM_HTTP_HOST=0.0.0.0 so the namespaces reach it, and set the boot settings'
    server IP to the bridge address printed here."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        if netns:
            _netns_lab(machines, group, disk_mb)
        else:
            _loopback_lab(machines, group, register, step_seconds)
    except KeyboardInterrupt:
        pass
    print("lab stopped", flush=True)


def _loopback_lab(machines: int, group: str, register: bool, step_seconds: float) -> None:
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
    print(f"{machines} lab machines in group {group}", flush=True)
    asyncio.run(_run(lab, config))


async def _run(machines: list[SimMachine], config: LabConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # from here on a signal ends the loop, not a task in it
        loop.add_signal_handler(sig, stop.set)
    print(f"{len(machines)} lab machines; waiting for Wake-on-LAN on port {config.wol_port} (Ctrl-C stops)",
          flush=True)  # fmt: skip
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2)
        finally:
            stop.set()
            await task


def _netns_lab(machines: int, group: str, disk_mb: int) -> None:
    if not netlab.available():
        raise CliError("--netns needs root and iproute2 (ip netns)", EXIT_USAGE)
    lab_ports = {
        "dhcp": int(os.environ.get("DPM_PXE_DHCP_PORT", ports.DHCP)),
        "tftp": int(os.environ.get("DPM_PXE_TFTP_PORT", ports.TFTP)),
        "wol": int(os.environ.get("DPM_SCHEDULER_WOL_PORT", ports.WAKE_ON_LAN)),
    }
    gateway_port = int(os.environ.get("DPM_AGENT_GATEWAY_PORT", ports.AGENT_GATEWAY))
    token = request("POST", "/agents/enrolment-tokens", json={"uses": machines, "expires_in": 86400})["token"]
    work = Path(tempfile.mkdtemp(prefix="dpm-lab-"))
    with netlab.NetLab(hosts_wanted=0) as lab:
        disks = []
        for i in range(machines):
            disk = work / f"disk{i:02d}.img"
            with open(disk, "wb") as f:
                f.truncate(disk_mb << 20)
            disks.append(disk)
        nslab = NamespaceLab(lab, work)
        try:  # a signal (KeyboardInterrupt) takes the nodes down; NetLab then the namespaces and bridge
            nodes = nslab.start(machines, prefix=f"{group}-", ports=lab_ports, disks=disks, enrolment_token=token,
                                gateway_url=f"http://{lab.host_ip}:{gateway_port}")  # fmt: skip
            request("PUT", f"/groups/{group}", json={"subnet": str(lab.subnet), "description": "dpm lab (namespaces)"})
            for node in nodes:
                body = {"name": node.spec.name, "macs": [node.spec.mac], "smbios_uuid": node.spec.smbios_uuid,
                        "group": group}  # fmt: skip
                request("POST", "/machines", json=body)
            print(f"{machines} machines in namespaces on bridge {lab.bridge} ({lab.subnet}, this host {lab.host_ip}); "
                  f"logs and disks in {work}")  # fmt: skip
            print(f"set the boot settings first: dpm boot set --mode proxy --server-ip {lab.host_ip}")
            while all(n.proc.poll() is None for n in nodes):
                time.sleep(1)
        finally:
            nslab.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
