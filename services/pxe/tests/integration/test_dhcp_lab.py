"""DHCP on a lab network: a PXE DISCOVER broadcast from a namespace whose NIC has no address gets
boot information without an address in proxy mode, an address (persisted as a lease) in full mode,
and nothing in off mode -- the mode switched between packets, without a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.dhcp.server import DhcpServer
from dpm_pxe.adapters.state import DDL, SCHEMA
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig
from dpm_runtime.directory import directory_ddl
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import netlab
from dpm_schemas.events.boot import DhcpMode, DhcpRange

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2")]

CLIENT = Path(__file__).with_name("dhcp_client.py")


async def discover(lab: netlab.NetLab, host: netlab.LabHost, port: int, arch: int, *, full: bool = False) -> dict:
    argv = [sys.executable, str(CLIENT), str(port), host.mac, str(arch), "2", "full" if full else "proxy"]
    proc = lab.popen(host, argv, stdout=-1, text=True)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)  # the server answers on this loop
    return json.loads(out)


async def test_proxy_full_and_off_modes_switched_without_a_restart(pool, tracing) -> None:
    async with pool.connection() as conn:
        for statement in [*directory_ddl(SCHEMA), *DDL]:
            await conn.execute(statement.encode())
    with netlab.NetLab(hosts_wanted=2) as lab:
        first, second = lab.hosts
        for host in lab.hosts:  # a ROM has no address yet
            subprocess.run(["ip", "-n", host.netns, "addr", "flush", "dev", "eth0"], check=True)
        start, end = lab.host_ip + 100, lab.host_ip + 101
        pools = (
            Pool.from_range(
                DhcpRange(
                    start=str(start), end=str(end), subnet=str(lab.subnet), router=str(lab.host_ip), lease_seconds=600
                )
            ),
        )
        mode = {"now": DhcpMode.PROXY}

        def config() -> BootConfig:
            return BootConfig(
                mode=mode["now"],
                server_ip=lab.host_ip,
                script_url=f"http://{lab.host_ip}:26502/boot/{{mac}}.ipxe",
                files_url=f"http://{lab.host_ip}:26502/files",
                pools=pools,
            )

        booted: list[tuple[str, IPv4Address | None]] = []

        async def on_boot(info: ClientInfo, ip: IPv4Address | None) -> None:
            booted.append((info.mac, ip))

        server = DhcpServer(
            config, leases=LeaseStore(pool), interface=lab.bridge, on_boot=on_boot, tracer=tracing[0].get_tracer("t")
        )
        port, pxe_port = free_port("0.0.0.0", udp=True), free_port("0.0.0.0", udp=True)
        stop = asyncio.Event()
        task = asyncio.create_task(server.serve("0.0.0.0", (port, pxe_port), stop))
        try:
            await asyncio.sleep(0.1)
            bios = (await discover(lab, first, port, 0))["reply"]
            uefi = (await discover(lab, first, port, 7))["reply"]
            http = (await discover(lab, first, port, 16))["reply"]
            mode["now"] = DhcpMode.FULL
            full = await discover(lab, first, port, 0, full=True)
            again = await discover(lab, first, port, 0, full=True)
            other = await discover(lab, second, port, 7, full=True)
            mode["now"] = DhcpMode.OFF
            silent = (await discover(lab, first, port, 7))["reply"]
        finally:
            stop.set()
            await task
        async with pool.connection() as conn:
            leases = await (
                await conn.execute(f"SELECT host(ip), mac, state FROM {SCHEMA}.leases ORDER BY ip")
            ).fetchall()

    assert bios == {
        "from": str(lab.host_ip),
        "yiaddr": "0.0.0.0",
        "siaddr": str(lab.host_ip),
        "file": "undionly.kpxe",
        "type": 2,
        "vendor_class": "PXEClient",
    }
    assert uefi is not None and uefi["file"] == "ipxe.efi" and uefi["yiaddr"] == "0.0.0.0"
    # UEFI HTTP boot: the iPXE EFI binary's URL, in an offer that says HTTPClient
    assert http is not None and http["vendor_class"] == "HTTPClient" and http["yiaddr"] == "0.0.0.0"
    assert http["file"] == f"http://{lab.host_ip}:26502/files/ipxe.efi"
    # full mode: an address from the range with mask, router and lease time, and the boot file
    offer, ack = full["reply"], full["ack"]
    assert offer["yiaddr"] == str(start) and offer["type"] == 2 and offer["file"] == "undionly.kpxe"
    assert ack == {**offer, "type": 5}
    assert offer["mask"] == str(lab.subnet.netmask) and offer["router"] == str(lab.host_ip) and offer["lease"] == 600
    assert again["ack"]["yiaddr"] == str(start)  # the same client keeps its address
    assert other["ack"]["yiaddr"] == str(end) and other["ack"]["file"] == "ipxe.efi"
    assert leases == [(str(start), first.mac, "bound"), (str(end), second.mac, "bound")]
    assert silent is None
    # recorded boots: the proxy offers and the full-mode ACKs (with the address), never the full OFFER
    assert booted == [
        (first.mac, None),
        (first.mac, None),
        (first.mac, None),
        (first.mac, start),
        (first.mac, start),
        (second.mac, end),
    ]
    # one span per exchange; the ignored one says why
    spans = [sp for sp in tracing[1].get_finished_spans() if sp.name == "dhcp.exchange"]
    assert len(spans) == 10 and all(sp.attributes["dhcp.mac"] in (first.mac, second.mac) for sp in spans)
    assert [sp.attributes.get("dhcp.ignored") for sp in spans][-1] == "DHCP mode is off"
