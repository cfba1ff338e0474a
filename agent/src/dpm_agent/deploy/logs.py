"""The deploy environment's logs, uploaded after its step (ADR 0015): /init's console copy (its own
lines and the client's output), the kernel's messages (``dmesg``) and the client's own log, as one
gzip-compressed tar -- members ``console.log``, ``dmesg.log``, ``client.log`` -- sent to the api's
``PUT /deploy/v1/logs`` with the deploy token, which the api accepts for a short grace after the
step ended.

Each log keeps only its tail (``MAX_PART``), so a bundle always fits the api's 16 MiB; the token on
the kernel command line (in dmesg) is hidden before anything leaves the machine. An upload that
fails is retried for a bounded time and then given up: it never changes what /init does next.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from dpm_agent.deploy.run import BootParams
from dpm_agent.deploy.transport import HttpClient
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)
MAX_PART = 4 << 20  # bytes kept of each log (its tail); three of them fit the api's 16 MiB bundle
RETRY_FOR = 30.0  # seconds an upload keeps trying (dropped connection, 5xx) before it gives up
TIMEOUT = 10.0  # seconds one attempt may wait for the api
_TOKEN = re.compile(rb"(dpm\.token=)\S+")


def tail(data: bytes, limit: int = MAX_PART) -> bytes:
    """The last ``limit`` bytes of a log, from a line start, saying how much was cut."""
    if len(data) <= limit:
        return data
    marker = b"[dpm: %d earlier bytes not kept]\n"
    cut = data[len(data) - limit + len(marker % len(data)) :]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return marker % (len(data) - len(cut)) + cut


def redact(data: bytes) -> bytes:
    """The deploy token hidden wherever a command line shows it (``dpm.token=...``)."""
    return _TOKEN.sub(rb"\1<hidden>", data)


def build_bundle(parts: dict[str, bytes]) -> bytes:
    """``{"console.log": ..., ...}`` as a gzip'd tar, each part's tail only, tokens hidden."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in parts.items():
            body = redact(tail(data))
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def kernel_messages(run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run) -> bytes:
    """The kernel ring buffer (busybox ``dmesg``), or a line saying why there is none."""
    try:
        return run(["dmesg"], capture_output=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"[dpm: no kernel messages: {exc}]\n".encode()


def collect(console: Path, client_log: Path | None, dmesg: Callable[[], bytes] = kernel_messages) -> dict[str, bytes]:
    """The bundle's parts from the files /init and the client wrote (a missing one is said so)."""

    def read(path: Path) -> bytes:
        try:
            with path.open("rb") as f:  # only the tail: a runaway log must not fill the memory
                size = f.seek(0, 2)
                f.seek(max(0, size - MAX_PART - 4096))
                return f.read()
        except OSError as exc:
            return f"[dpm: {path} not readable: {exc}]\n".encode()

    parts = {"console.log": read(console), "dmesg.log": dmesg()}
    if client_log is not None:
        parts["client.log"] = read(client_log)
    return parts


def upload(params: BootParams, bundle: bytes, *, retry_for: float | None = None, timeout: float = TIMEOUT) -> str:
    """Send the bundle; '' when the api kept it, else why not (retried up to ``retry_for`` seconds,
    ``RETRY_FOR`` by default, when the api is unreachable or busy; a refusal is final)."""
    http = HttpClient(params.server.rstrip("/") + "/deploy/v1", params.token, timeout=timeout,
                      down=lambda exc: exc, retry_for=RETRY_FOR if retry_for is None else retry_for)  # fmt: skip
    try:
        http.call("PUT", f"/logs?execution_id={params.execution}", bundle, "application/gzip")
    except DpmError as exc:
        return f"{exc.code} {exc.message}"
    except Exception as exc:  # unreachable after the retries, or anything else: never fatal
        return repr(exc)
    return ""


def send_logs(params: BootParams, console: Path, client_log: Path | None, **kw: float) -> tuple[bool, str]:
    """``dpm-deploy logs``: collect, bundle and upload; whether the api kept the bundle, and a line
    for the console saying so."""
    bundle = build_bundle(collect(console, client_log))
    why = upload(params, bundle, **kw)
    if why:
        return False, f"dpm: deploy logs not uploaded ({len(bundle)} bytes): {why}"
    return True, f"dpm: deploy logs uploaded ({len(bundle)} bytes)"
