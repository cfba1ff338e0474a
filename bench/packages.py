"""Package delivery benchmark (issue 14): one package to many agents by unicast, against nginx.

    uv run python -m bench --only packages [--quick] [--package-mb 200] [--clients 50]

The updater runs as its own process (as `dpm up` starts it) and serves ``GET /v1/content/<sha256>``
to ``clients`` agents at once, each with its own delivery token (one PackageDeliveryGranted each, as
the step handler grants them). The clients are the agent's real downloader (hashed while it streams,
verified, then deleted), run in separate processes so the server's CPU time (user + sys from
/proc/<pid>/stat) is its own. The baseline is Debian's nginx (sendfile on, worker_processes auto)
serving the same file (the same inode) to the same clients on loopback, in the same run; nginx
cannot check our tokens, so it serves plainly. Figures: aggregate MB/s (bytes of every client over
the wall time from "go" to the last verified file) and server CPU seconds per GB served.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from bench.imaging import _ready as ready
from dpm_agent.packages.download import download
from dpm_runtime.eventlog import EventLog
from dpm_runtime.localstack.procs import free_port
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import PackageDeliveryGranted
from dpm_schemas.ids import stream_id

Row = Callable[..., dict[str, Any]]
REPO = Path(__file__).resolve().parent.parent
ROUND_TIMEOUT = 900.0  # seconds one server's round may take, clients included
NGINX_CONF = """daemon off; worker_processes auto; pid {work}/nginx.pid; error_log {work}/nginx-error.log warn;
{user}events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_timeout 30; default_type application/octet-stream;
  client_body_temp_path {work}/t-body; proxy_temp_path {work}/t-proxy; fastcgi_temp_path {work}/t-fcgi;
  uwsgi_temp_path {work}/t-uwsgi; scgi_temp_path {work}/t-scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }}
}}
"""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc/<pid>/stat."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """``pid`` and its children (nginx's master and workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return [pid, *children]


def fit(size_mb: int, clients: int, where: Path) -> tuple[int, int]:
    """(size, clients) the disk holds: every client's copy at once, the store's, and the downloader's
    3x-free-space check; fewer clients (then a smaller file) when it cannot, said on the way."""
    free_mb = shutil.disk_usage(where).free // 1_000_000
    room = free_mb // size_mb - 4
    if room >= clients:
        return size_mb, clients
    fitted = (size_mb, room) if room >= 1 else (max(1, free_mb // 8), 1)
    print(f"packages: only {free_mb} MB free in {where}: {fitted[1]} clients x {fitted[0]} MB", flush=True)
    return fitted


@dataclass(frozen=True)
class Round:
    """One server's round: wall seconds from "go" to the last verified file, CPU seconds."""

    seconds: float
    cpu: float  # the server's
    clients_cpu: float


async def start_clients(url: str, tokens: list[str], sha: str, size: int, cache: Path) -> list[Process]:
    """One client process per CPU, each with its share of the tokens, imported and waiting for "go"."""
    n_procs = min(len(tokens), os.cpu_count() or 2)
    procs = []
    for p in range(n_procs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.packages", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO
        )
        procs.append(proc)
        job = {"url": url, "tokens": tokens[p::n_procs], "sha256": sha, "size": size, "cache": str(cache / str(p))}
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        await proc.stdin.drain()
        if (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("a client process failed to start")
    return procs


async def run_clients(url: str, tokens: list[str], sha: str, size: int, cache: Path, server: list[int]) -> Round:
    """Every token's download at once; start-up of the client processes is no part of the figures."""
    procs: list[Process] = []
    try:
        procs = await start_clients(url, tokens, sha, size, cache)
        cpu, started = cpu_seconds(server), time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outs = await asyncio.wait_for(asyncio.gather(*(p.stdout.read() for p in procs if p.stdout)), ROUND_TIMEOUT)
        seconds, cpu = time.perf_counter() - started, cpu_seconds(server) - cpu
        codes = [await proc.wait() for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if any(codes):
        raise RuntimeError(f"client processes exited with {codes}")
    return Round(seconds, cpu, sum(float(out) for out in outs))


async def grant(log: EventLog, sha: str) -> str:
    """One agent's delivery of the package, as the updater's step handler grants it; its token."""
    token = secrets.token_urlsafe(32)
    granted = PackageDeliveryGranted(
        execution_id=uuid.uuid4(), machine_id=uuid.uuid4(), token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        packages=("bench",), contents=(sha,), expires_at=datetime.now(UTC) + timedelta(hours=2),
    )  # fmt: skip
    stream = stream_id(subjects.DELIVERY, granted.execution_id)
    await log.append(stream, None, [NewEvent(granted, Metadata.new(actor="bench"))])
    return token


async def accepted(url: str, tokens: list[str]) -> None:
    """Every token opens the content (the projection applied its grant) before the clock starts."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        for token in tokens:
            while (await http.head(url, headers={"Authorization": f"Bearer {token}"})).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} refuses a granted token")
                await asyncio.sleep(0.1)


def make_package(work: Path, size_mb: int) -> tuple[Path, str]:
    """A random package file readable by nginx's workers, and hard-linked into the updater's store."""
    www = work / "www"
    www.mkdir(mode=0o755)
    path = www / "bench.deb"
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size_mb):
            block = os.urandom(1_000_000)
            hasher.update(block)
            f.write(block)
    path.chmod(0o644)
    (www / "ready.txt").write_text("ready\n")
    sha = hasher.hexdigest()
    (work / "store" / "sha256" / sha[:2]).mkdir(parents=True)
    os.link(path, work / "store" / "sha256" / sha[:2] / sha)  # as a completed upload leaves it
    return path, sha


def updater(work: Path, port: int, *, admin_url: str, service_url: str, nats_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
    env.update(
        DPM_DATABASE_URL=service_url, DPM_DATABASE_ADMIN_URL=admin_url, DPM_NATS_URL=nats_url,
        DPM_UPDATER_PORT=str(port), DPM_UPDATER_ROOT=str(work / "store"), DPM_RELAY_ENABLED="false",
        DPM_LOG_LEVEL="WARNING",
    )  # fmt: skip
    with open(work / "updater.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "dpm_updater"], env=env, stdout=log, stderr=subprocess.STDOUT)


def nginx(work: Path, port: int, root: Path) -> subprocess.Popen[bytes]:
    user = "user root;\n" if os.geteuid() == 0 else ""  # the compiled-in default group may not exist here
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, root=root, user=user))
    with open(work / "nginx.log", "wb") as log:
        return subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(work), "-e", str(work / "nginx-error.log")], stdout=log, stderr=log
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def say(server: str, r: Round) -> None:
    print(
        f"{'':<44} {server}: {r.seconds:.1f} s wall, {r.cpu:.2f} s CPU, clients {r.clients_cpu:.1f} s CPU", flush=True
    )


def figures(row: Row, label: str, ours: Round, base: Round | None, total: int) -> list[dict[str, Any]]:
    """MB/s and CPU s/GB of the updater, each beside nginx's (the ratio is dpm/nginx) when it ran."""
    mb, gb = total / 1e6, total / 1e9
    tput: list[Any] = [mb / ours.seconds] + (["nginx (sendfile)", mb / base.seconds] if base else [])
    cpu: list[Any] = [ours.cpu / gb] + (["nginx (master + workers)", base.cpu / gb] if base else [])
    return [
        row(f"package delivery {label}", *tput, unit="MB/s"),
        row("package delivery, server CPU per GB served", *cpu, unit="s/GB"),
    ]


async def delivery_cases(
    row: Row, *, admin_url: str, service_url: str, nats_url: str, size_mb: int = 200, clients: int = 50
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="dpm-bench-pkg-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        size_mb, clients = fit(size_mb, clients, work)
        path, sha = make_package(work, size_mb)
        size, total = path.stat().st_size, path.stat().st_size * clients
        port = free_port()
        label = f"({clients} clients x {size_mb} MB, unicast)"
        print(
            f"\npackages: {clients} agents' downloaders x {size_mb} MB on loopback, {os.cpu_count()} CPUs", flush=True
        )
        server = updater(work, port, admin_url=admin_url, service_url=service_url, nats_url=nats_url)
        try:
            await ready(f"http://127.0.0.1:{port}/readyz")
            async with AsyncConnectionPool(service_url, min_size=1, max_size=2, open=False) as pool:
                tokens = [await grant(EventLog(pool), sha) for _ in range(clients)]
            url = f"http://127.0.0.1:{port}/v1/content/{sha}"
            await accepted(url, tokens)
            ours = await run_clients(url, tokens, sha, size, work / "cache-dpm", [server.pid])
        finally:
            stop(server)
        say("updater", ours)
        base = await nginx_round(work, path, tokens, sha, size) if shutil.which("nginx") else None
        if base is None:
            print("packages: nginx not installed, baseline skipped (apt-get install nginx-light)", flush=True)
        return figures(row, label, ours, base, total)


async def nginx_round(work: Path, path: Path, tokens: list[str], sha: str, size: int) -> Round:
    port = free_port()
    server = nginx(work, port, path.parent)
    try:
        await ready(f"http://127.0.0.1:{port}/ready.txt")
        url = f"http://127.0.0.1:{port}/{path.name}"
        base = await run_clients(url, tokens, sha, size, work / "cache-nginx", with_children(server.pid))
    finally:
        stop(server)
    say("nginx", base)
    return base


async def _client(job: dict[str, Any]) -> None:
    """One client process: its share of the agents, each downloading at once into its own cache."""

    async def one(i: int, token: str) -> None:
        cache = Path(job["cache"]) / str(i)
        got = await download(job["url"], token=token, sha256=job["sha256"], size=job["size"], cache_dir=cache)
        got.unlink()  # verified by download(); the next run's disk needs the room

    await asyncio.gather(*(one(i, t) for i, t in enumerate(job["tokens"])))


def client_main() -> None:
    job = json.loads(sys.stdin.readline())
    print("ready", flush=True)
    if sys.stdin.readline().strip() == "go":
        started = time.process_time()
        asyncio.run(_client(job))
        print(time.process_time() - started, flush=True)  # this process's CPU seconds (user + sys)


if __name__ == "__main__":
    client_main()
