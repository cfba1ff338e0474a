"""proxyDHCP on a lab network: a PXE DISCOVER broadcast from a namespace whose NIC has no address
gets boot information without an address; switching the mode to off (no restart) silences it."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dpm_pxe.dhcp.proxy import BootConfig, Mode
from dpm_pxe.dhcp.server import DhcpServer
from dpm_runtime.testing import netlab

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2")]

CLIENT = Path(__file__).with_name("dhcp_client.py")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def discover(lab: netlab.NetLab, host: netlab.LabHost, port: int, arch: int) -> dict | None:
    proc = lab.popen(host, [sys.executable, str(CLIENT), str(port), host.mac, str(arch), "2"], stdout=-1, text=True)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)  # the server answers on this loop
    return json.loads(out)["reply"]


async def test_proxy_offers_boot_information_without_an_address_and_off_mode_is_silent() -> None:
    with netlab.NetLab(hosts_wanted=1) as lab:
        (host,) = lab.hosts
        subprocess.run(["ip", "-n", host.netns, "addr", "flush", "dev", "eth0"], check=True)  # a ROM has none yet
        mode = {"now": Mode.PROXY}

        def config():
            return BootConfig(
                mode=mode["now"],
                server_ip=lab.host_ip,
                script_url=f"http://{lab.host_ip}:26502/boot/{{mac}}.ipxe",
            )

        seen = []
        server = DhcpServer(config, interface=lab.bridge, on_client=lambda info, _src: seen.append(info))
        port, pxe_port = free_udp_port(), free_udp_port()
        stop = asyncio.Event()
        task = asyncio.create_task(server.serve("0.0.0.0", (port, pxe_port), stop))
        try:
            await asyncio.sleep(0.1)
            bios = await discover(lab, host, port, 0)
            uefi = await discover(lab, host, port, 7)
            mode["now"] = Mode.OFF
            silent = await discover(lab, host, port, 7)
        finally:
            stop.set()
            await task
    assert bios == {
        "from": str(lab.host_ip),
        "yiaddr": "0.0.0.0",
        "siaddr": str(lab.host_ip),
        "file": "undionly.kpxe",
        "type": 2,
        "vendor_class": "PXEClient",
    }
    assert uefi is not None and uefi["file"] == "ipxe.efi" and uefi["yiaddr"] == "0.0.0.0"
    assert silent is None
    assert [info.mac for info in seen] == [host.mac, host.mac] and server.ignored == 1
    assert IPv4Address(bios["siaddr"]) == lab.host_ip
