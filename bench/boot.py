"""Network-boot benchmarks: TFTP throughput against tftpd-hpa, DHCP answers per second.

    uv run python -m bench --only boot [--quick]

TFTP: one 100 MB file, the same clients (atftp, curl) and options against dpm's server and Debian's
tftpd-hpa, both on loopback, measured in the same run (best of ``repeats``). DHCP: a bounded burst of
DISCOVERs on loopback (at most ``WINDOW`` unanswered), proxy mode (no database) and full mode (every
offer held in PostgreSQL before it is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from dpm_netproto.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    OPT_VENDOR_CLASS,
    DhcpPacket,
    build,
    parse,
)
from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.dhcp.server import DhcpServer
from dpm_pxe.adapters.state import DDL, SCHEMA
from dpm_pxe.adapters.tftp.server import TftpServer
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig
from dpm_runtime.directory import directory_ddl
from dpm_runtime.localstack.procs import free_port
from dpm_schemas.events.boot import DhcpMode, DhcpRange

WINDOW = 32  # DISCOVERs in flight at once
Row = Callable[..., dict]


async def fetch(argv: list[str], out: Path, expected: str) -> float:
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or hashlib.sha256(out.read_bytes()).hexdigest() != expected:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[:300]}")
    return seconds


def clients(port: int, out: Path) -> dict[str, list[str]]:
    atftp = ["atftp", "--option", "blksize 1468"]
    tail = ["-g", "-r", "big.bin", "-l", str(out), "127.0.0.1", str(port)]
    return {
        "atftp blksize 1468": [*atftp, *tail],
        "atftp blksize 1468 windowsize 16": [*atftp, "--option", "windowsize 16", *tail],
        "curl blksize 1468": [
            "curl",
            "-sS",
            "--tftp-blksize",
            "1468",
            f"tftp://127.0.0.1:{port}/big.bin",
            "-o",
            str(out),
        ],
    }


async def tftp_cases(row: Row, *, size_mb: int, repeats: int) -> list[dict]:
    if not (shutil.which("in.tftpd") and shutil.which("atftp") and shutil.which("curl")):
        print("TFTP: skipped (needs tftpd-hpa, atftp and curl: apt-get install tftpd-hpa atftp curl)")
        return []
    work = Path(tempfile.mkdtemp(prefix="dpm-bench-tftp-"))
    root = work / "root"
    root.mkdir()
    work.chmod(0o755)
    root.chmod(0o755)
    big = root / "big.bin"
    with open(big, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    big.chmod(0o644)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    dpm_port, hpa_port = free_port(udp=True), free_port(udp=True)
    stop = asyncio.Event()
    server = asyncio.create_task(TftpServer(root).serve("127.0.0.1", dpm_port, stop))
    hpa = subprocess.Popen(
        ["in.tftpd", "--foreground", "--listen", "--address", f"127.0.0.1:{hpa_port}", "--secure", str(root)]
    )
    results = []
    try:
        await asyncio.sleep(0.2)
        print(f"\nTFTP: {size_mb} MB file, best of {repeats}, dpm vs tftpd-hpa on loopback", flush=True)
        for name, argv in clients(dpm_port, work / "out.bin").items():
            hpa_argv = clients(hpa_port, work / "out.bin")[name]
            dpm_best = min([await fetch(argv, work / "out.bin", expected) for _ in range(repeats)])
            hpa_best = min([await fetch(hpa_argv, work / "out.bin", expected) for _ in range(repeats)])
            results.append(row(f"TFTP {name}", size_mb / dpm_best, "tftpd-hpa", size_mb / hpa_best, unit="MB/s"))
    finally:
        stop.set()
        await server
        hpa.terminate()
        hpa.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return results


def discover(i: int) -> bytes:
    mac = (0x525400000000 + i).to_bytes(6, "big")
    return build(
        DhcpPacket(
            op=BOOTREQUEST,
            xid=i,
            chaddr=mac,
            ciaddr=IPv4Address("127.0.0.1"),  # answered by unicast to 127.0.0.1:68, where the bench listens
            options={
                OPT_MESSAGE_TYPE: bytes([DISCOVER]),
                OPT_CLIENT_ARCH: b"\x00\x07",
                OPT_VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
            },
        )
    )


async def dhcp_burst(server: DhcpServer, n: int) -> float:
    """Send ``n`` DISCOVERs with at most WINDOW unanswered; returns answers per second."""
    port, pxe_port = free_port(udp=True), free_port(udp=True)
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve("127.0.0.1", (port, pxe_port), stop))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 68))
    sock.setblocking(False)
    try:
        await asyncio.sleep(0.1)
        started, sent, answered = time.perf_counter(), 0, 0
        deadline = started + 120
        while answered < n and time.perf_counter() < deadline:
            while sent < n and sent - answered < WINDOW:
                await loop.sock_sendto(sock, discover(sent), ("127.0.0.1", port))
                sent += 1
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)
            except TimeoutError:
                break
            if parse(data).xid < n:
                answered += 1
        seconds = time.perf_counter() - started
    finally:
        sock.close()
        stop.set()
        await task
    if answered < n:
        raise RuntimeError(f"only {answered} of {n} DISCOVERs answered")
    return n / seconds


async def dhcp_cases(row: Row, url: str, *, n: int) -> list[dict]:
    if os.geteuid() != 0:
        print("DHCP: skipped (the answers go to port 68, which needs root)")
        return []
    print(f"\nDHCP: {n} DISCOVERs on loopback, at most {WINDOW} in flight", flush=True)
    subnet = "10.200.0.0/16"
    pool_range = DhcpRange(start="10.200.0.10", end="10.200.255.250", subnet=subnet)

    def config(mode: DhcpMode) -> Callable[[], BootConfig]:
        built = BootConfig(
            mode=mode,
            server_ip=IPv4Address("127.0.0.1"),
            script_url="http://127.0.0.1:26502/boot/{mac}.ipxe?arch={arch}",
            pools=(Pool.from_range(pool_range),),
        )
        return lambda: built

    results = [row("DHCP proxy offers", await dhcp_burst(DhcpServer(config(DhcpMode.PROXY)), n), unit="answers/s")]
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url, min_size=2, max_size=4, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    try:
        async with pool.connection() as conn:
            for statement in [*directory_ddl(SCHEMA), *DDL]:
                await conn.execute(statement.encode())
        server = DhcpServer(config(DhcpMode.FULL), leases=LeaseStore(pool))
        full_n = max(n // 4, 100)
        results.append(
            row("DHCP full-mode offers (held in PostgreSQL)", await dhcp_burst(server, full_n), unit="answers/s")
        )
    finally:
        with contextlib.suppress(Exception):
            await pool.close()
    return results
