"""The fault matrix's stack: every service as its own process under the embedded stack's supervisor
(what ``dpm up`` runs), with pxe's DHCP and TFTP and the scheduler's Wake-on-LAN on loopback ports
for the lab simulator. A test kills or stops one child and watches every execution reach its end.

The supervisor restarts a killed service with backoff, as ``dpm up`` does; an outage of PostgreSQL
or nats-server is the stack's ``hold``/``release``: stopped, kept down for the outage, then started
again with the same arguments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgpack
import psycopg
import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.localstack.stack import SERVICES, Stack, StackSettings, service_port
from dpm_schemas import ports

from .lab_history import boot_files


@dataclass
class FaultStack:
    stack: Stack
    env: dict[str, str]
    token: str
    dhcp: int
    tftp: int
    wol: int
    disks: Path
    lines: list[str] = field(default_factory=list)  # what the supervisor said

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{service_port('api', self.env)}"

    def pid(self, service: str) -> int:
        return self.stack.services[service].pid

    def signal(self, service: str, sig: signal.Signals) -> None:
        os.kill(self.pid(service), sig)

    def ready(self, services: tuple[str, ...] | None = None) -> bool:
        """Every (named) service answers its readiness probe."""
        names = services or tuple(name for name, _ in SERVICES)
        with httpx.Client(timeout=1) as http:
            for name in names:
                try:
                    if http.get(f"http://127.0.0.1:{service_port(name, self.env)}/readyz").status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return True

    def events(self, types: tuple[str, ...]) -> list[tuple[str, str, dict]]:
        """(type, stream_id, data) of the log's events of ``types``, in log order, read as the owner."""
        assert self.stack.postgres is not None
        with psycopg.connect(self.stack.postgres.url()) as conn:
            rows = conn.execute(
                "SELECT type, stream_id, data FROM events WHERE type = ANY(%s) ORDER BY position", (list(types),)
            ).fetchall()
        return [(t, s, msgpack.unpackb(d, raw=False)) for t, s, d in rows]


def _environment(boot: Path) -> tuple[dict[str, str], dict[str, int]]:
    udp = {"dhcp": free_port(udp=True), "pxe": free_port(udp=True), "tftp": free_port(udp=True), "wol": free_port()}
    env = {setting: str(free_port()) for setting, _ in _service_ports().values()}
    env.update(
        DPM_PXE_ROOT=str(boot),
        DPM_PXE_DHCP_ENABLED="true",
        DPM_PXE_DHCP_HOST="127.0.0.1",
        DPM_PXE_DHCP_PORT=str(udp["dhcp"]),
        DPM_PXE_DHCP_PXE_PORT=str(udp["pxe"]),
        DPM_PXE_TFTP_ENABLED="true",
        DPM_PXE_TFTP_HOST="127.0.0.1",
        DPM_PXE_TFTP_PORT=str(udp["tftp"]),
        DPM_PXE_SERVER_IP="127.0.0.1",
        DPM_SCHEDULER_WOL_PORT=str(udp["wol"]),
        DPM_SCHEDULER_POWER_ON_TIMEOUT="60",
        DPM_SCHEDULER_POWER_ON_INTERVAL="0",
        DPM_SCHEDULER_WOL_REPEATS="1",
        DPM_SCHEDULER_CONCURRENCY="10",
        DPM_SCHEDULER_TICK="0.1",
        DPM_IMAGER_RESERVE_BYTES="0",
        DPM_LOG_LEVEL="INFO",
    )
    return env, udp


def _service_ports() -> dict[str, tuple[str, int]]:
    return {name: ports.SETTINGS[name] for name, _ in SERVICES}


@contextlib.contextmanager
def fault_stack() -> Iterator[FaultStack]:
    """The stack started with every service, supervised in a thread until the block ends."""
    parent = Path(tempfile.mkdtemp(prefix="dpm-test-faults-"))
    parent.chmod(0o755)  # the postgres account walks to var/postgres
    env, udp = _environment(boot_files(parent / "boot"))
    (parent / "disks").mkdir()
    settings = StackSettings(
        var_dir=parent / "var", postgres_port=free_port(), nats_port=free_port(), nats_monitor_port=free_port()
    )
    lines: list[str] = []
    stack = Stack(settings, say=lines.append)
    stopping = threading.Event()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        umask = os.umask(0o022)
        try:
            started = stack.start()
            watcher = threading.Thread(target=stack.watch, args=(stopping.is_set,), daemon=True)
            watcher.start()
            try:
                yield FaultStack(
                    stack, started, stack.token(), udp["dhcp"], udp["tftp"], udp["wol"], parent / "disks", lines
                )
            finally:
                stopping.set()
                watcher.join(10)
        finally:
            os.umask(umask)
            stack.stop()
            shutil.rmtree(parent, ignore_errors=True)


def wait(predicate, *, timeout: float, what: str, interval: float = 0.1) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - start
