"""`dpm lab up` and `dpm up` started as background jobs of a script stop on SIGINT and on SIGTERM
within their grace period. A background job of a non-interactive shell starts with SIGINT ignored
(POSIX), so Python raises no KeyboardInterrupt for it: both commands install their handlers
explicitly. `dpm lab up` runs 20 rounds in a row, the signals by turns (no api needed with
--no-register); `dpm up`, the real stack, twice -- and a service killed under it is restarted,
and said so, while the rest of the stack stays up. Both run under CPU load (a busy process per core,
bounded in time): a handler that only works on an idle machine is the bug the issue was about."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dpm_cli.labcmd import GRACE_SECONDS
from dpm_runtime.localstack.procs import free_port

pytestmark = pytest.mark.slow

ROUNDS = 20
STACK_GRACE = 30.0  # services drain in parallel; nats-server, then PostgreSQL, each in seconds
BACKGROUND = 'exec 3>"$1"; shift; "$@" >&3 2>&3 & echo $!; wait $!'  # as `cmd &` in a script


def background(log: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``argv`` as a background job of ``bash -c`` (output to ``log``); the shell and the job's pid."""
    shell = subprocess.Popen(
        ["bash", "-c", BACKGROUND, "bash", str(log), *argv], stdout=subprocess.PIPE, text=True, env=env
    )
    assert shell.stdout is not None
    return shell, int(shell.stdout.readline())


def wait_for(log: Path, text: str, shell: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (out := log.read_text(errors="replace")):
        assert shell.poll() is None and time.monotonic() < deadline, out
        time.sleep(0.05)
    return out


def stopped_within(shell: subprocess.Popen[str], pid: int, sig: int, grace: float) -> int:
    """Signal the job; its exit code (through the shell's ``wait``), failing if it outlives ``grace``."""
    os.kill(pid, sig)
    try:
        code = shell.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        shell.wait(5)
        pytest.fail(f"still running {grace:.0f} s after signal {sig}")
    return code


BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def cpu_load(seconds: float = 300.0) -> Iterator[None]:
    """One busy process per core for the block (and never longer than ``seconds``)."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=seconds)]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(5)


def test_a_background_job_of_a_script_starts_with_sigint_ignored(tmp_path: Path) -> None:
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    shell, _pid = background(tmp_path / "probe.log", sys.executable, "-c", probe)
    assert shell.wait(30) == 0 and (tmp_path / "probe.log").read_text().strip() == "True"


def test_lab_up_in_the_background_stops_on_sigint_and_sigterm_20_times_in_a_row(tmp_path: Path) -> None:
    """20 rounds, SIGINT and SIGTERM by turns, two labs at a time (each on its own WOL port)."""
    cmd = [sys.executable, "-m", "dpm_cli", "lab", "up", "--no-register", "--machines", "2"]
    signals = [signal.SIGINT, signal.SIGTERM] * (ROUNDS // 2)
    with cpu_load():
        _lab_rounds(cmd, signals, tmp_path)


def _lab_rounds(cmd: list[str], signals: list[signal.Signals], tmp_path: Path) -> None:
    for pair in range(0, ROUNDS, 2):
        jobs = []
        for round_ in (pair, pair + 1):
            env = {**os.environ, "DPM_SCHEDULER_WOL_PORT": str(free_port("0.0.0.0", udp=True))}
            log = tmp_path / f"lab-{round_}.log"
            jobs.append((round_, log, *background(log, *cmd, env=env)))
        for round_, log, shell, pid in jobs:
            wait_for(log, "waiting for Wake-on-LAN", shell, timeout=30)
            code = stopped_within(shell, pid, signals[round_], GRACE_SECONDS)
            assert code == 0 and "lab stopped" in log.read_text(), (round_, signals[round_].name, log.read_text())


def _stack_env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
    for setting in ("API", "SCHEDULER", "PXE", "IMAGER", "UPDATER", "AGENT_GATEWAY"):
        env[f"DPM_{setting}_PORT"] = str(free_port())
    for setting in ("STACK_POSTGRES", "STACK_NATS", "STACK_NATS_MONITOR", "PXE_TFTP"):
        env[f"DPM_{setting}_PORT"] = str(free_port())
    for setting in ("PXE_DHCP", "PXE_DHCP_PXE", "SCHEDULER_WOL"):
        env[f"DPM_{setting}_PORT"] = str(free_port(udp=True))
    env["DPM_STACK_VAR_DIR"] = str(var)
    return env


def _pids_of(module: str, var: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if module.encode() in cmdline and f"DPM_STACK_VAR_DIR={var}".encode() in environ:
            found.append(int(entry.name))
    return found


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.e2e
def test_dpm_up_in_the_background_restarts_a_crashed_service_and_stops_on_sigint_and_sigterm() -> None:
    var = Path(tempfile.mkdtemp(prefix="dpm-signals-"))
    var.chmod(0o755)
    env = _stack_env(var)
    try:
        with cpu_load():
            _up_twice(env, var)
    finally:
        for name in ("dpm_api", "dpm_scheduler", "dpm_pxe", "dpm_imager", "dpm_updater", "dpm_agent_gateway"):
            for leftover in _pids_of(name, var):
                os.kill(leftover, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(var)], check=False)


def _up_twice(env: dict[str, str], var: Path) -> None:
    log = var.parent / f"{var.name}-up1.log"
    shell, pid = background(log, sys.executable, "-m", "dpm_cli", "up", env=env)
    wait_for(log, "dpm is up", shell, timeout=90)
    [updater] = _pids_of("dpm_updater", var)
    os.kill(updater, signal.SIGKILL)  # a crash: the rest of the stack stays up, the updater comes back
    out = wait_for(log, "updater restarted (attempt 1)", shell, timeout=30)
    assert re.search(r"updater exited unexpectedly \(exit -9\); restart attempt 1 in \d+ s", out), out
    port = env["DPM_UPDATER_PORT"]
    deadline = time.monotonic() + 30
    while not _ready(f"http://127.0.0.1:{port}/readyz"):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    assert httpx.get(f"http://127.0.0.1:{env['DPM_API_PORT']}/readyz", timeout=2).status_code == 200
    code = stopped_within(shell, pid, signal.SIGINT, STACK_GRACE)
    assert code == 0 and "stopped" in log.read_text().splitlines()[-1], log.read_text()

    log = var.parent / f"{var.name}-up2.log"
    shell, pid = background(log, sys.executable, "-m", "dpm_cli", "up", env=env)
    wait_for(log, "dpm is up", shell, timeout=90)
    code = stopped_within(shell, pid, signal.SIGTERM, STACK_GRACE)
    assert code == 0, log.read_text()
    assert _pids_of("dpm_api", var) == [] and _pids_of("dpm_updater", var) == []
