"""The lab simulator: machines that behave like real ones towards dpm, as asyncio tasks on loopback.

Each simulated machine has its MAC, SMBIOS UUID and a power state. A Wake-on-LAN listener (a lab
"switch": it reads the MAC out of the magic packet) powers the right machine on. A powered-on
machine does what a PXE ROM and iPXE do, with real packets against the pxe service: DHCP DISCOVER
(PXEClient, option 93, option 97), TFTP download of the boot file it was given, DHCP again as iPXE,
HTTP fetch of its script. A deploy script makes it the deploy environment: it downloads kernel and
initrd and reports its step through the api with the token from the kernel command line -- a
machine given a disk-image file runs the real deploy client on it (disk check, backup, restore). A
local boot script leaves it running its "OS".

Like a real machine it ignores a magic packet while it is on (only a machine that is off powers
on: the repeated packets of one wake never queue a second boot), its ROM repeats its DHCP DISCOVER
for about a minute (``rom_dhcp_seconds``) and its deploy environment retries a report that meets a
connection error or a 5xx (``deployenv``) -- so a failure in the lab is dpm's, not the lab's.

Each machine listens on its own loopback address (127.0.0.N), so replies reach the right one; pxe
answers a DISCOVER that carries ciaddr by unicast to it (RFC 2131 §4.1). Its HTTP comes from that
address too (``httpfrom``): pxe hands a deploy environment only to where it saw the MAC boot from.
For namespace realism use the netlab and the real agent instead; this is the scale mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import httpx

from dpm_agent.deploy.run import BootParams
from dpm_agent.deploy.run import run as run_deploy
from dpm_lab.deployenv import report
from dpm_lab.httpfrom import ApiFrom, client_from
from dpm_lab.ipxe import fetch_script
from dpm_netproto import tftp as tftp
from dpm_netproto.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    OPT_BOOTFILE,
    OPT_CLIENT_ARCH,
    OPT_CLIENT_UUID,
    OPT_MESSAGE_TYPE,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    DhcpPacket,
    build,
    parse,
)

log = logging.getLogger(__name__)

MAGIC = b"\xff" * 6


@dataclass
class SimMachine:
    name: str
    mac: str
    smbios_uuid: uuid.UUID
    address: IPv4Address  # its loopback address: where DHCP answers reach it
    power: str = "off"  # off | on
    disk: Path | None = None  # a disk-image file: backup, restore and disk check run the real deploy client on it
    stages: list[str] = field(default_factory=list)  # what happened, for tests and the console
    wakes: int = 0

    @property
    def chaddr(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))


@dataclass(frozen=True)
class LabConfig:
    dhcp: tuple[str, int]  # where pxe listens for DHCP
    tftp: tuple[str, int]
    wol_port: int
    step_seconds: float = 0.5
    timeout: float = 5.0  # TFTP: per packet; DHCP: a quarter of it is the first wait for an answer
    # How long the PXE ROM repeats its DISCOVER before it gives up (real ROMs: 4 + 8 + 16 + 32 s),
    # and iPXE its own (its default backs off from 1 to 10 s, about 15 s in all).
    rom_dhcp_seconds: float = 60.0
    ipxe_dhcp_seconds: float = 15.0
    report_seconds: float = 60.0  # how long the deploy environment retries one step report
    script_retry_seconds: float = 300.0  # how long iPXE follows "sleep; chain" scripts (pxe's "ask again")
    # Firmware self-test before the PXE ROM runs. Real machines take seconds; without any, a lab
    # machine could ask for its script before pxe has read the netboot request written just
    # before the magic packet (see the note on issue 7).
    post_seconds: float = 0.3


def fleet(n: int, *, prefix: str = "lab", seed: int = 7) -> list[SimMachine]:
    rng = random.Random(seed)
    return [
        SimMachine(
            name=f"{prefix}{i:04d}",
            mac=f"52:54:01:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
            smbios_uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
            address=IPv4Address("127.0.0.0") + 10 + i,
        )
        for i in range(n)
    ]


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


OsRunner = Callable[[SimMachine], Awaitable[str]]  # runs the machine's OS until it ends: "off" or "reboot"


class Lab:
    def __init__(
        self, machines: list[SimMachine], config: LabConfig, http: httpx.AsyncClient, run_os: OsRunner | None = None
    ) -> None:
        self.machines = {m.mac: m for m in machines}
        self.config = config
        self.http = http  # its timeout; each machine's requests leave from its own address
        self.run_os = run_os  # None: a local boot leaves the machine on, doing nothing dpm can see
        self._tasks: set[asyncio.Task[None]] = set()
        self._deploys = ThreadPoolExecutor(max(1, len(machines)), thread_name_prefix="lab-deploy")

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] = lambda: None) -> None:
        """Listen for magic packets until ``stop``; one wakes its machine only if it is off.
        ``ready`` is called once the socket is bound: a packet sent before that is lost, as on a wire."""
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(
            _Inbox, local_addr=("0.0.0.0", self.config.wol_port), allow_broadcast=True
        )
        ready()
        try:
            while not stop.is_set():
                try:
                    data, _ = await asyncio.wait_for(inbox.queue.get(), 0.2)
                except TimeoutError:
                    continue
                if len(data) >= 102 and data[:6] == MAGIC:
                    mac = ":".join(f"{b:02x}" for b in data[6:12])
                    machine = self.machines.get(mac)
                    if machine is not None and machine.power == "off":  # a machine that is on ignores it
                        self.power_on(machine)
        finally:
            transport.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._deploys.shutdown(wait=False, cancel_futures=True)

    def power_on(self, machine: SimMachine) -> None:
        machine.power, machine.wakes = "on", machine.wakes + 1
        task = asyncio.create_task(self._boot(machine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, m: SimMachine) -> None:
        while await self._boot_once(m) == "reboot":
            m.stages.append("reboot")

    async def _boot_once(self, m: SimMachine) -> str:
        outcome = "off"
        try:
            await asyncio.sleep(self.config.post_seconds)
            rom = await self._dhcp(m, ipxe=False)  # retried for rom_dhcp_seconds, as a ROM does
            m.stages.append(f"rom:{rom}")
            size = await self._tftp(m, rom)
            m.stages.append(f"tftp:{size}")
            script_url = await self._dhcp(m, ipxe=True)
            async with client_from(str(m.address), self.http.timeout) as http:
                script = await fetch_script(http, script_url, budget=self.config.script_retry_seconds)
                deploy = "\nkernel " in script
                if deploy:
                    m.stages.append("deploy")
                    await self._deploy(m, script, http)
            if not deploy:
                m.stages.append("local")
                if self.run_os is not None:
                    outcome = await self.run_os(m)
                    m.stages.append(f"os:{outcome}")
        except Exception as exc:  # a lab machine that fails shows why, like a console would
            m.stages.append(f"error:{exc!r}")
            log.warning("lab machine %s: %r", m.name, exc)
        finally:
            m.power = "on" if m.stages and m.stages[-1] == "local" else "off"
        return outcome

    async def _dhcp(self, m: SimMachine, *, ipxe: bool) -> str:
        options = {
            OPT_MESSAGE_TYPE: bytes([DISCOVER]),
            OPT_CLIENT_ARCH: b"\x00\x00",
            OPT_VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001",
            OPT_CLIENT_UUID: b"\x00" + m.smbios_uuid.bytes_le,
        }
        if ipxe:
            options[OPT_USER_CLASS] = b"iPXE"
        xid = random.getrandbits(32)
        request = DhcpPacket(op=BOOTREQUEST, xid=xid, chaddr=m.chaddr, ciaddr=m.address, options=options)
        loop = asyncio.get_running_loop()
        broadcast = self.config.dhcp[0] == "255.255.255.255"  # a real ROM's DISCOVER, in a lab namespace
        transport, inbox = await loop.create_datagram_endpoint(
            _Inbox, local_addr=(str(m.address), 68), allow_broadcast=broadcast
        )
        try:
            budget = self.config.ipxe_dhcp_seconds if ipxe else self.config.rom_dhcp_seconds
            for wait in discover_waits(budget, first=self.config.timeout / 4):  # ROMs repeat their DISCOVER
                transport.sendto(build(request), self.config.dhcp)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while True:
                            reply = parse((await inbox.queue.get())[0])
                            if reply.xid == xid:
                                name = reply.options.get(OPT_BOOTFILE) or reply.file
                                return name.decode("ascii")
            raise TimeoutError(f"no DHCP answer within {budget:.0f} s")
        finally:
            transport.close()

    async def _tftp(self, m: SimMachine, filename: str) -> int:
        """A lockstep TFTP read with blksize 1468: the size received."""
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(str(m.address), 0))
        try:
            transport.sendto(tftp.request(filename, {"blksize": "1468"}), self.config.tftp)
            received, expected, blksize = 0, 1, 512
            while True:
                data, peer = await asyncio.wait_for(inbox.queue.get(), self.config.timeout)
                packet = tftp.parse(data)
                if isinstance(packet, tftp.OAck):
                    blksize = int(packet.options.get("blksize", "512"))
                    transport.sendto(tftp.ack(0), peer)
                elif isinstance(packet, tftp.Data) and packet.block == expected & 0xFFFF:
                    received += len(packet.payload)
                    transport.sendto(tftp.ack(packet.block), peer)
                    expected += 1
                    if len(packet.payload) < blksize:
                        return received
                elif isinstance(packet, tftp.Error):
                    raise OSError(f"TFTP error {packet.code}: {packet.message}")
        finally:
            transport.close()

    async def _deploy(self, m: SimMachine, script: str, http: httpx.AsyncClient) -> None:
        """The deploy environment: fetch kernel and initrd, then report the step through the api."""
        kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
        initrd_line = next(line for line in script.splitlines() if line.startswith("initrd "))
        params = dict(re.findall(r"dpm\.(\w+)=(\S+)", kernel_line))
        for url in (kernel_line.split()[1], initrd_line.split()[-1]):
            (await http.get(url)).raise_for_status()
        if m.disk is not None:  # a machine with a disk runs the real deploy client against it
            boot = BootParams(params["execution"], params["server"], params["token"], (str(m.disk),))
            # its own thread, not the loop's default executor: services sharing this loop in the
            # tests need those threads for the very requests this client makes
            api = ApiFrom(boot, str(m.address))
            await asyncio.get_running_loop().run_in_executor(self._deploys, run_deploy, boot, api)
            m.stages.append("reported")
            return
        steps = f"{params['server'].rstrip('/')}/deploy/v1/steps"
        headers = {"Authorization": f"Bearer {params['token']}"}
        execution = params["execution"]
        budget = self.config.report_seconds
        progress = {"execution_id": execution, "status": "progress", "percent": 50}
        await report(http, steps, headers, progress, budget=budget)
        await asyncio.sleep(self.config.step_seconds)
        done = {"execution_id": execution, "status": "completed", "percent": 100}
        await report(http, steps, headers, done, budget=budget)
        m.stages.append("reported")


def discover_waits(budget: float, *, first: float, cap: float = 8.0) -> Iterator[float]:
    """How long to wait for an answer after each DISCOVER: doubling from ``first`` up to ``cap``
    until ``budget`` seconds are spent. (Real ROMs start at 4 s; the lab starts lower, so a dropped
    first packet costs a test little, but gives up no sooner than they do.)"""
    spent, wait = 0.0, max(first, 0.01)
    while spent < budget:
        step = min(wait, budget - spent)
        yield step
        spent, wait = spent + step, min(wait * 2, cap)


def magic_packet(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    return MAGIC + raw * 16


__all__ = ["Lab", "LabConfig", "SimMachine", "discover_waits", "fleet", "magic_packet"]
