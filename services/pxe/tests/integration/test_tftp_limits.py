"""What an unproven TFTP peer can draw (issue 12 items 12 and 14): a spoofed RRQ gets its first DATA
once, not six times; an OACK is retried a couple of times with backoff and no parting ERROR; one
address holds few unacknowledged transfers; a 300-byte file name gets an ERROR packet, not silence."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from dpm_netproto import tftp as p
from dpm_pxe.adapters.tftp.server import TftpLimits, TftpServer
from dpm_runtime.localstack.procs import free_port

pytestmark = pytest.mark.integration

TIMEOUT = 0.2


@pytest.fixture
async def tftp(tmp_path: Path):
    (tmp_path / "boot.bin").write_bytes(b"b" * 100_000)
    port = free_port(udp=True)
    stop = asyncio.Event()
    server = TftpServer(tmp_path, limits=TftpLimits(timeout=TIMEOUT, unacked_per_source=4))
    task = asyncio.create_task(server.serve("127.0.0.1", port, stop))
    await asyncio.sleep(0.05)  # the bind happens on the first loop turn
    yield port, server
    stop.set()
    await task


def listen(sock: socket.socket, seconds: float) -> list[tuple[bytes, tuple[str, int]]]:
    """Everything that arrives within ``seconds``, never acknowledging (a spoofed request's victim)."""
    got, deadline = [], time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(65536))
        except TimeoutError:
            continue
    return got


async def unanswered(port: int, packets: list[bytes], seconds: float) -> list[tuple[bytes, tuple[str, int]]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for packet in packets:
            s.sendto(packet, ("127.0.0.1", port))
        return await asyncio.to_thread(listen, s, seconds)


async def test_a_spoofed_rrq_draws_one_block_not_six(tftp) -> None:
    port, _ = tftp
    rrq = p.request("boot.bin")  # 17 bytes, no options: answered by DATA 1 (516 bytes)
    got = await unanswered(port, [rrq], TIMEOUT * 12)  # past every retry the old server made
    assert [p.parse(data) for data, _ in got] == [p.Data(1, b"b" * 512)]
    assert sum(len(data) for data, _ in got) <= 516  # was 6 x 516 = 3096 bytes, 182 times the request


async def test_an_unacknowledged_oack_is_retried_twice_with_backoff_and_no_error(tftp) -> None:
    port, _ = tftp
    got = await unanswered(port, [p.request("boot.bin", {"tsize": "0", "blksize": "1468"})], TIMEOUT * 12)
    assert [type(p.parse(data)) for data, _ in got] == [p.OAck] * 3


async def test_one_address_holds_few_unacknowledged_transfers(tftp) -> None:
    port, server = tftp
    got = await unanswered(port, [p.request("boot.bin")] * 20, TIMEOUT * 3)
    assert len({peer for _, peer in got}) == 4  # four transfers (TIDs) answered, sixteen requests dropped
    assert server.unacked.refused == 16
    # once they are over, the address is served again
    assert isinstance(p.parse((await unanswered(port, [p.request("boot.bin")], TIMEOUT * 2))[0][0]), p.Data)


@pytest.mark.parametrize("name", ["a" * 300, "dir/" + "b" * 256, "x" * 900])
async def test_an_over_long_file_name_gets_an_error_packet(tftp, name: str) -> None:
    port, _ = tftp
    got = await unanswered(port, [p.request(name)], 1.0)
    (reply,) = [p.parse(data) for data, _ in got]
    assert isinstance(reply, p.Error) and reply.code in (p.E_ACCESS, p.E_NOT_FOUND)


async def test_a_real_client_still_downloads_with_acks(tftp) -> None:
    port, _ = tftp
    loop = asyncio.get_running_loop()
    received = b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.sendto(p.request("boot.bin", {"blksize": "1468"}), ("127.0.0.1", port))
        while True:
            data, peer = await asyncio.wait_for(loop.sock_recvfrom(s, 65536), 5)
            packet = p.parse(data)
            if isinstance(packet, p.OAck):
                s.sendto(p.ack(0), peer)
                continue
            assert isinstance(packet, p.Data)
            received += packet.payload
            s.sendto(p.ack(packet.block), peer)
            if len(packet.payload) < 1468:
                break
    assert received == b"b" * 100_000
