"""The TFTP server against clients nobody here wrote: curl (blksize 1468) and atftp (blksize and
windowsize) download a 50 MB file intact; traversal, missing files and writes get TFTP errors;
concurrent transfers all complete."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dpm_netproto import tftp as p
from dpm_pxe.adapters.tftp.server import TftpServer
from dpm_runtime.localstack.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def tftp_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tftproot")
    (root / "big.bin").write_bytes(os.urandom(SIZE))
    (root / "small.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 17))
    (root.parent / "secret.txt").write_text("outside")
    return root


@pytest.fixture
async def tftp(tftp_root: Path, tracing):
    port = free_port(udp=True)
    stop = asyncio.Event()
    server = TftpServer(tftp_root, tracer=tracing[0].get_tracer("test"))
    task = asyncio.create_task(server.serve("127.0.0.1", port, stop))
    await asyncio.sleep(0.05)  # the bind happens on the first loop turn
    yield port
    stop.set()
    await task


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def run(argv: list[str]) -> tuple[int, float]:
    started = time.monotonic()
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=300)
    return proc.returncode, time.monotonic() - started


async def test_curl_downloads_50_mb_intact_with_blksize_1468(tftp, tftp_root, tmp_path, tracing) -> None:
    out = tmp_path / "curl.bin"
    code, seconds = await run(
        ["curl", "-sS", "--tftp-blksize", "1468", f"tftp://127.0.0.1:{tftp}/big.bin", "-o", str(out)]
    )
    assert code == 0 and sha(out) == sha(tftp_root / "big.bin")
    (span,) = [s for s in tracing[1].get_finished_spans() if s.name == "tftp.transfer"]  # one span per transfer
    assert span.attributes["tftp.file"] == "big.bin" and span.attributes["tftp.bytes"] == SIZE
    assert span.attributes["tftp.option.blksize"] == "1468"
    print(f"\ncurl blksize 1468: {SIZE / seconds / 1e6:.1f} MB/s")


@pytest.mark.skipif(shutil.which("atftp") is None, reason="atftp not installed (apt-get install atftp)")
@pytest.mark.parametrize("window", [1, 16])
async def test_atftp_downloads_with_windowsize(tftp, tftp_root, tmp_path, window: int) -> None:
    out = tmp_path / f"atftp{window}.bin"
    code, seconds = await run(
        [
            "atftp",
            "--option",
            "blksize 1468",
            "--option",
            f"windowsize {window}",
            "-g",
            "-r",
            "big.bin",
            "-l",
            str(out),
            "127.0.0.1",
            str(tftp),
        ]
    )
    assert code == 0 and sha(out) == sha(tftp_root / "big.bin")
    print(f"\natftp blksize 1468 windowsize {window}: {SIZE / seconds / 1e6:.1f} MB/s")


async def request(port: int, packet: bytes) -> p.Packet:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.sendto(packet, ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(s, 2048), 5)
    return p.parse(data)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../secret.txt", p.E_ACCESS),
        ("..\\secret.txt", p.E_ACCESS),
        ("/../secret.txt", p.E_ACCESS),
        ("missing.bin", p.E_NOT_FOUND),
    ],
)
async def test_traversal_and_missing_files_get_tftp_errors(tftp, name: str, code: int) -> None:
    reply = await request(tftp, p.request(name))
    assert isinstance(reply, p.Error) and reply.code == code


async def test_writes_are_refused_and_garbage_is_ignored(tftp) -> None:
    wrq = b"\x00\x02upload.bin\x00octet\x00"
    reply = await request(tftp, wrq)
    assert isinstance(reply, p.Error) and reply.code == p.E_ACCESS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no answer, no crash
        s.sendto(b"\x00\x09garbage", ("127.0.0.1", tftp))
    reply = await request(tftp, p.request("small.bin", {"blksize": "1468"}))
    assert isinstance(reply, p.OAck) and reply.options == {"blksize": "1468"}  # still serving


async def test_many_concurrent_transfers_complete(tftp, tftp_root, tmp_path) -> None:
    outs = [tmp_path / f"c{i}.bin" for i in range(12)]
    results = await asyncio.gather(
        *(
            run(["curl", "-sS", "--tftp-blksize", "1468", f"tftp://127.0.0.1:{tftp}/small.bin", "-o", str(o)])
            for o in outs
        )
    )
    assert [code for code, _ in results] == [0] * 12
    assert {sha(o) for o in outs} == {sha(tftp_root / "small.bin")}
