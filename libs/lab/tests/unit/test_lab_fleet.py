"""The lab's fleet and its Wake-on-LAN switch: machines that differ as real ones do (names, MACs,
SMBIOS UUIDs, loopback addresses), the same fleet for the same seed, and a magic packet on the wire
powering on exactly the machine it names, once while it is on."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Network

import httpx

from dpm_lab.sim import Lab, LabConfig, SimMachine, fleet, magic_packet
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually


def test_a_fleet_is_distinct_machines_and_the_same_for_the_same_seed() -> None:
    machines = fleet(300)
    for attribute in ("name", "mac", "smbios_uuid", "address"):
        assert len({getattr(m, attribute) for m in machines}) == 300, attribute
    assert all(len(m.chaddr) == 6 and m.address in IPv4Network("127.0.0.0/8") for m in machines)
    assert all(str(m.address) != "127.0.0.1" for m in machines)  # the host's own address stays the host's
    assert [m.smbios_uuid for m in fleet(300)] == [m.smbios_uuid for m in machines]
    assert fleet(1, seed=8)[0].smbios_uuid != machines[0].smbios_uuid


def test_a_magic_packet_is_six_ff_then_the_mac_sixteen_times() -> None:
    packet = magic_packet("52:54:01:00:00:2a")
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("52540100002a") * 16


async def test_a_magic_packet_powers_on_only_the_machine_it_names() -> None:
    machines = fleet(3)
    config = LabConfig(
        dhcp=("127.0.0.1", free_port(udp=True)),
        tftp=("127.0.0.1", free_port(udp=True)),
        wol_port=free_port("0.0.0.0", udp=True),
        post_seconds=60,  # a woken machine stays in its firmware self-test: only the switch is under test
    )
    stop, bound = asyncio.Event(), asyncio.Event()

    async def wakes(machine: SimMachine) -> int:
        return machine.wakes

    async with httpx.AsyncClient() as http:
        task = asyncio.create_task(Lab(machines, config, http).run(stop, ready=bound.set))
        await asyncio.wait_for(bound.wait(), 5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wire:
            for packet in (magic_packet("52:54:00:00:00:01"), magic_packet(machines[1].mac)[:101]):
                wire.sendto(packet, ("127.0.0.1", config.wol_port))  # a MAC not in the lab; a short packet
            wire.sendto(magic_packet(machines[1].mac), ("127.0.0.1", config.wol_port))
            await eventually(lambda: wakes(machines[1]), what="machine 1 woken")
            wire.sendto(magic_packet(machines[1].mac), ("127.0.0.1", config.wol_port))  # already on: ignored
            wire.sendto(magic_packet(machines[2].mac), ("127.0.0.1", config.wol_port))
            await eventually(lambda: wakes(machines[2]), what="machine 2 woken")
        assert [(m.power, m.wakes) for m in machines] == [("off", 0), ("on", 1), ("on", 1)]
        stop.set()
        await task
