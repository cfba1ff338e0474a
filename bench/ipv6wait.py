"""iPXE's wait for IPv6 (issue 15): power-on to the script request of a QEMU machine booting its NIC's
iPXE ROM, without and with pxe answering router solicitations (``DPM_PXE_IPV6_ROUTER_ADVERT``).

    uv run python -m bench --only boot     (root, qemu-system-x86 and ipxe-qemu; else skipped)

A lab bridge with a tap (``dpm_runtime.testing.netlab``); dpm's DHCP server in full mode hands the
ROM an address and a script URL served by a tiny HTTP listener on the bridge that notes when the
script is asked for. The same machine boots twice, the baseline (no advertisement: what every
network without an IPv6 router sees, dnsmasq's included) first, in the same run. Software
emulation: the absolute figures include a slow firmware, the difference is iPXE's wait."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.dhcp.server import DhcpServer
from dpm_pxe.adapters.routeradv import RouterAdvertiser
from dpm_pxe.adapters.state import DDL, SCHEMA
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig
from dpm_runtime.directory import directory_ddl
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import netlab
from dpm_schemas.events.boot import DhcpMode, DhcpRange

Row = Callable[..., dict]
BOOT_TIMEOUT = 240.0  # seconds for one boot to ask for its script
SCRIPT = b"#!ipxe\necho dpm bench: script fetched\n"


def ready() -> str | None:
    """Why the case cannot run here, or None."""
    if not netlab.available():
        return "needs root and iproute2"
    if shutil.which("qemu-system-x86_64") is None or not Path("/usr/lib/ipxe/qemu/pxe-e1000.rom").exists():
        return "needs qemu-system-x86 and ipxe-qemu"
    return None


async def script_listener(host: str, port: int, asked: asyncio.Event) -> asyncio.Server:
    """Answers any GET with a one-line script, setting ``asked`` at the first request."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            asked.set()
            head = f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(SCRIPT)}\r\n\r\n"
            writer.write(head.encode() + SCRIPT)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port)


async def boot_once(lab: netlab.NetLab, tap: str, url: str, serial: Path, *, advert: bool) -> float:
    """Seconds from starting QEMU to its script request."""
    asked, stop = asyncio.Event(), asyncio.Event()
    port = free_port()
    listener = await script_listener(str(lab.host_ip), port, asked)
    pool_range = DhcpRange(start=str(lab.host_ip + 100), end=str(lab.host_ip + 120), subnet=str(lab.subnet))
    config = BootConfig(mode=DhcpMode.FULL, server_ip=lab.host_ip, pools=(Pool.from_range(pool_range),),
                        script_url=f"http://{lab.host_ip}:{port}/boot/{{mac}}.ipxe")  # fmt: skip
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with pool.connection() as conn:
            for statement in [*directory_ddl(SCHEMA), *DDL]:
                await conn.execute(statement.encode())
        server = DhcpServer(lambda: config, leases=LeaseStore(pool), interface=lab.bridge)
        tasks.append(asyncio.create_task(server.serve("0.0.0.0", (67, 4011), stop)))
        if advert:
            tasks.append(asyncio.create_task(RouterAdvertiser(lab.bridge).serve(stop)))
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-monitor", "none",
            "-smbios", f"type=1,uuid={uuid.uuid4()}", "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", "e1000,netdev=n0,mac=52:54:00:b6:00:01", "-boot", "n", "-serial", f"file:{serial}",
        ]  # fmt: skip
        began = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            await asyncio.wait_for(asked.wait(), timeout=BOOT_TIMEOUT)
            return time.monotonic() - began
        finally:
            proc.kill()
            await asyncio.to_thread(proc.wait, 30)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=5)
        listener.close()
        with contextlib.suppress(Exception):
            async with pool.connection() as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE".encode())
        await pool.close()


async def cases(row: Row, url: str) -> list[dict]:
    if (why := ready()) is not None:
        print(f"iPXE IPv6 wait: skipped ({why})")
        return []
    print("\niPXE IPv6 wait: a QEMU e1000 ROM (software emulation) from power-on to its script request", flush=True)
    with netlab.NetLab(hosts_wanted=0) as lab:
        tap = lab.add_tap()
        with tempfile.TemporaryDirectory(prefix="dpm-bench-ipv6-") as tmp:
            serial = Path(tmp) / "serial.log"
            without = await boot_once(lab, tap, url, serial, advert=False)
            with_advert = await boot_once(lab, tap, url, serial, advert=True)
    return [
        row("iPXE ROM power-on to script, advert on", with_advert, unit="s", baseline=without,
            baseline_name="no IPv6 router on the segment (default; dnsmasq too)"),
    ]  # fmt: skip
