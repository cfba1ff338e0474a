"""Wake-on-LAN on a real lab network: a "machine" in its own namespace on a bridge receives correct
magic packets at the directed broadcast of its segment and at 255.255.255.255, on the set port."""

from __future__ import annotations

import json
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dpm_runtime.testing import netlab
from dpm_scheduler.adapters.driver import PowerTarget
from dpm_scheduler.adapters.wol import WakeOnLan, power_on_all

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2")]

LISTENER = Path(__file__).with_name("wol_listener.py")


def read_lines(proc, n: int) -> list[dict]:
    return [json.loads(proc.stdout.readline()) for _ in range(n)]


@pytest.mark.parametrize("port", [5561, 9])
async def test_magic_packets_reach_the_machine_at_its_broadcast_addresses(port: int) -> None:
    with netlab.NetLab(hosts_wanted=2) as lab:
        machine, other = lab.hosts
        repeats = 2
        proc = lab.popen(
            machine, [sys.executable, str(LISTENER), str(port), machine.mac, str(2 * repeats)], stdout=-1, text=True
        )
        try:
            assert read_lines(proc, 1) == [{"listening": port}]
            driver = WakeOnLan(port=port, interface=lab.bridge, repeats=repeats, spacing=0.01)
            # another segment's machine (directed broadcast of its group) ...
            await driver.power_on(PowerTarget("m1", (machine.mac,), lab.broadcast))
            # ... and the server's own segment (limited broadcast, out of the lab interface)
            await power_on_all(driver, [PowerTarget("m1", (machine.mac,), None)], interval=0.0)
            received = read_lines(proc, 2 * repeats)
        finally:
            proc.kill()
            proc.wait()
    assert {r["to"] for r in received[:repeats]} == {str(lab.broadcast)}
    assert {r["to"] for r in received[repeats:]} == {"255.255.255.255"}
    assert all(r["magic_for_me"] and r["size"] == 102 and r["from"] == str(lab.host_ip) for r in received)
    assert other.mac != machine.mac and IPv4Address(str(lab.broadcast)).packed[-1] == 255
