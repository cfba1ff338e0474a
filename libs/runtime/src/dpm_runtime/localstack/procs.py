"""Small helpers for supervising child processes and finding free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A port nothing listens on now (TCP, or UDP with ``udp``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: str | None = None,
) -> None:
    """Poll ``check`` until true; fail early (with the log tail) if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{_tail(log_path)}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout:.0f} s{_tail(log_path)}")


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal ``proc``, wait, then kill it (with its process group when it leads one) if it lingers."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:  # it leads its own group: take its children too
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        return proc.wait(5)


def _tail(path: str | None, lines: int = 15) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "\n--- log tail ---\n" + "".join(f.readlines()[-lines:])
