"""Downloads from a real HTTP server on 127.0.0.1 (http.server in a thread): Range resume after a
connection cut midway, refusals, a wrong hash, giving up, and the disk-space refusal on a tiny tmpfs."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dpm_agent.packages.download import RetryPolicy, download
from dpm_schemas import DpmError, E

pytestmark = pytest.mark.integration

CONTENT = os.urandom(300_000)
SHA = hashlib.sha256(CONTENT).hexdigest()
FAST = RetryPolicy(retry_for=5.0, first_delay=0.01, max_delay=0.05, timeout=5.0)


@dataclass
class Behaviour:
    honour_range: bool = True
    cuts: int = 0  # this many answers stop halfway and drop the connection
    fail_after_cuts: bool = False  # then 500 for ever
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # path, Range, Authorization


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour
        rng = self.headers.get("Range", "")
        b.requests.append((self.path, rng, self.headers.get("Authorization", "")))
        if self.path == "/gone":
            return self._status(404)
        if self.headers.get("Authorization") != "Bearer tok":
            return self._status(401)
        if b.cuts == 0 and b.fail_after_cuts:
            return self._status(500)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and b.honour_range else 0
        body = CONTENT[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if b.cuts:
            b.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(ThreadingHTTPServer):
    behaviour: Behaviour


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.behaviour = Behaviour()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.behaviour
    finally:
        srv.shutdown()
        srv.server_close()


async def fetch(base: str, cache: Path, path: str = "/c", sha: str = SHA, size: int = len(CONTENT)) -> Path:
    return await download(f"{base}{path}", token="tok", sha256=sha, size=size, cache_dir=cache, policy=FAST)


async def test_download_lands_private_and_verified(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    cache = tmp_path / "cache"
    got = await fetch(base, cache)
    assert got == cache / SHA and got.read_bytes() == CONTENT
    assert stat.S_IMODE(got.stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not list(cache.glob("*.part"))
    assert b.requests == [("/c", "", "Bearer tok")]
    assert await fetch(base, cache) == got and len(b.requests) == 1  # in the cache: no second request


async def test_cut_connection_resumes_with_range(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    b.cuts = 1
    got = await fetch(base, tmp_path / "cache")
    assert got.read_bytes() == CONTENT
    half = len(CONTENT) // 2
    assert [r[1] for r in b.requests] == ["", f"bytes={half}-"]


async def test_server_ignoring_range_starts_over(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    b.honour_range, b.cuts = False, 1
    got = await fetch(base, tmp_path / "cache")
    assert got.read_bytes() == CONTENT  # the 200 replaced the half file instead of being appended
    assert len(b.requests) == 2 and b.requests[1][1]


async def test_not_found_is_refused(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    with pytest.raises(DpmError) as err:
        await fetch(base, tmp_path / "cache", path="/gone")
    assert err.value.code == E.PACKAGE_DOWNLOAD_REFUSED.code and err.value.details["status"] == 404
    assert len(b.requests) == 1  # a refusal is not retried


async def test_wrong_token_is_refused(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DpmError) as err:
        await download(f"{base}/c", token="old", sha256=SHA, size=len(CONTENT), cache_dir=tmp_path, policy=FAST)
    assert err.value.code == E.PACKAGE_DOWNLOAD_REFUSED.code and err.value.details["status"] == 401


async def test_wrong_hash_deletes_the_partial_file(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, _ = server
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DpmError) as err:
        await fetch(base, tmp_path / "cache", sha=wrong)
    assert err.value.code == E.PACKAGE_HASH_MISMATCH.code and err.value.details["actual"] == SHA
    assert list((tmp_path / "cache").iterdir()) == []


async def test_giving_up_keeps_the_partial_file_for_next_time(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    b.cuts, b.fail_after_cuts = 1, True
    policy = RetryPolicy(retry_for=0.3, first_delay=0.01, max_delay=0.05)
    with pytest.raises(DpmError) as err:
        await download(f"{base}/c", token="tok", sha256=SHA, size=len(CONTENT), cache_dir=tmp_path, policy=policy)
    assert err.value.code == E.PACKAGE_DOWNLOAD_FAILED.code and "HTTP 500" in err.value.message
    part = tmp_path / f"{SHA}.part"
    assert part.stat().st_size == len(CONTENT) // 2
    b.fail_after_cuts = False  # the server is back: the next call resumes from the half
    assert (await fetch(base, tmp_path)).read_bytes() == CONTENT
    assert b.requests[-1][1] == f"bytes={len(CONTENT) // 2}-"


async def test_too_little_disk_space_refuses_before_downloading(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, b = server
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(DpmError) as err:
            await fetch(base, mnt / "cache", size=len(CONTENT) * 2)  # 600 kB needs 1.8 MB
        assert err.value.code == E.PACKAGE_DISK_SPACE.code
        assert err.value.details["needed"] == 6 * len(CONTENT) and err.value.details["free"] <= 1 << 20
        assert b.requests == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
