"""`dpm up` from a clean directory: every service ready within 60 s, the CLI works against it, a
local account (``runuser -u nobody``) gets into neither its databases, its bus nor its files, a
stolen service credential reads no other service's inbox, Ctrl-C leaves no process behind, and a
second `dpm up` keeps the data."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import pytest

from dpm_runtime.bus import events_stream_config, inbox_prefix
from dpm_runtime.dbroles import ROLES
from dpm_runtime.localstack.postgres import SUPERUSER
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.localstack.stack import SERVICES
from dpm_schemas import subjects

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PORT_SETTINGS = [
    "DPM_API_PORT",
    "DPM_SCHEDULER_PORT",
    "DPM_PXE_PORT",
    "DPM_IMAGER_PORT",
    "DPM_UPDATER_PORT",
    "DPM_AGENT_GATEWAY_PORT",
    "DPM_STACK_POSTGRES_PORT",
    "DPM_STACK_NATS_PORT",
    "DPM_STACK_NATS_MONITOR_PORT",
    "DPM_PXE_TFTP_PORT",
    "DPM_PXE_DHCP_PORT",
    "DPM_PXE_DHCP_PXE_PORT",
    "DPM_SCHEDULER_WOL_PORT",
]


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Every live process whose command line or environment mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append((int(entry.name), cmdline[:200]))
    return found


def start_stack(env: dict[str, str], out: Path) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dpm_cli", "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    while "dpm is up" not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() - started < 90, out.read_text()
        time.sleep(0.1)
    return proc, time.monotonic() - started


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dpm_cli", *args], env=env, capture_output=True, text=True, timeout=60)


NOBODY_PROBE = """
import json, os, socket, subprocess, sys
pg, nats_port, paths = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
out = {"read": [], "psql": []}
for path in paths:
    try:
        (os.listdir if os.path.isdir(path) else lambda p: open(p, "rb").read(1))(path)
        out["read"].append(path)
    except PermissionError:
        pass
for user in sys.argv[4:]:
    r = subprocess.run(["psql", f"postgresql://{user}@127.0.0.1:{pg}/dpm", "-w", "-c", "SELECT 1"],
                       capture_output=True, text=True, timeout=20)
    out["psql"].append([user, r.returncode, r.stderr.strip()[-200:]])
s = socket.create_connection(("127.0.0.1", nats_port), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\\r\\nPING\\r\\n')
out["nats"] = f.readline().decode().strip()
print(json.dumps(out))
"""


def local_account_probe(var: Path, env: dict[str, str]) -> None:
    """As ``nobody``, one process: no file of var/ readable, PostgreSQL and NATS refuse it."""
    wanted = [var / "api-token", var / "secrets", var / "log", var / "images", var / "postgres" / "secrets"]
    paths = [str(p) for top in wanted for p in (top, *(top.rglob("*") if top.is_dir() else ()))]
    assert len(paths) > 10 and any("/images/" in p for p in paths) and any("/log/" in p for p in paths)
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", NOBODY_PROBE, env["DPM_STACK_POSTGRES_PORT"],
         env["DPM_STACK_NATS_PORT"], json.dumps(paths), SUPERUSER, *(r.role for r in ROLES.values())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["read"] == []
    assert all(code != 0 and "password" in err for _, code, err in found["psql"]), found["psql"]
    assert "Authorization Violation" in found["nats"], found["nats"]


async def stolen_pxe_credential_probe(var: Path, env: dict[str, str]) -> list[str]:
    """With pxe's NATS password (root can read var/secrets): try the api's inbox, every inbox, and
    widening the events stream to agent commands. Returns the server's refusals."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(
        f"nats://127.0.0.1:{env['DPM_STACK_NATS_PORT']}",
        user="pxe",
        password=(var / "secrets" / "nats-pxe").read_text().strip(),
        inbox_prefix=inbox_prefix("pxe"),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        for subject in (f"{inbox_prefix('api')}.>", "_INBOX.>"):
            await nc.subscribe(subject)
        wider = dataclasses.replace(events_stream_config(), subjects=[subjects.all_events(), "dpm.cmd.agent.>"])
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).update_stream(config=wider)
        await nc.flush()
        return errors
    finally:
        await nc.close()


def test_dpm_up_ready_usable_stoppable_and_persistent() -> None:
    var = Path(tempfile.mkdtemp(prefix="dpm-e2e-stack-"))
    var.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
    env.update({name: str(free_port()) for name in PORT_SETTINGS})
    env["DPM_STACK_VAR_DIR"] = str(var)
    env["DPM_API_URL"] = f"http://127.0.0.1:{env['DPM_API_PORT']}"
    env["DPM_SESSION_FILE"] = str(var.parent / f"{var.name}-session")  # never the developer's own login
    try:
        proc, seconds = start_stack(env, var.parent / f"{var.name}-up1.log")
        assert seconds < 60, f"ready after {seconds:.1f} s"
        ports = {name: env[f"DPM_{name.upper().replace('-', '_')}_PORT"] for name, _ in SERVICES}
        for name, port in ports.items():
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert r.status_code == 200 and r.json()["service"] == name

        # the pxe service serves var/boot over TFTP (curl is a client nobody here wrote)
        (var / "boot" / "hello.txt").write_text("boot me\n")
        fetched = subprocess.run(
            ["curl", "-sS", f"tftp://127.0.0.1:{env['DPM_PXE_TFTP_PORT']}/hello.txt"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert fetched.stdout == "boot me\n", fetched.stderr

        added = cli(env, "machines", "add", "e2e-01", "--mac", "52-54-00-E2-E0-01", "--json")
        assert added.returncode == 0, added.stderr
        dup = cli(env, "machines", "add", "e2e-01", "--mac", "52-54-00-E2-E0-01")
        assert dup.returncode == 1 and "DPM-E105" in dup.stderr and "remedy" in dup.stderr
        assert "e2e-01" in cli(env, "machines", "list").stdout
        assert cli(env, "groups", "add", "lab", "--subnet", "192.168.7.0/24").stdout.strip() == (
            "group lab: WOL to 192.168.7.255"
        )
        edited = cli(env, "machines", "edit", "e2e-01", "--group", "lab", "--ip", "192.168.7.20")
        assert edited.returncode == 0, edited.stderr
        exported = cli(env, "machines", "export").stdout
        assert exported.splitlines()[1] == "e2e-01,52:54:00:e2:e0:01,,192.168.7.20,lab,"
        csv_path = var.parent / f"{var.name}.csv"
        csv_path.write_text(exported.replace("192.168.7.20", "192.168.7.21"))
        preview = cli(env, "machines", "import", str(csv_path), "--dry-run")
        assert "would update e2e-01: ip: 192.168.7.20 -> 192.168.7.21" in preview.stdout
        csv_path.write_text("name,macs\nbad,nonsense\n")
        refused = cli(env, "machines", "import", str(csv_path))
        assert refused.returncode == 1 and "DPM-E110" in refused.stderr and "line 2, column 2" in refused.stderr
        assert cli(env, "groups", "rm", "lab").returncode == 1  # still holds e2e-01: DPM-E107

        # boot settings: off until chosen; a bad range names the problem; what a MAC would boot
        assert cli(env, "boot", "settings").stdout.startswith("mode:       off (default; never saved)")
        bad = cli(env, "boot", "set", "--mode", "full", "--range", "10.1.0.9-10.1.0.5/24")
        assert bad.returncode == 1 and "DPM-E130" in bad.stderr and "starts after it ends" in bad.stderr
        saved = cli(env, "boot", "set", "--mode", "full", "--range", "10.1.0.100-10.1.0.150/24,router=10.1.0.1")
        assert (
            saved.returncode == 0 and "range:      10.1.0.100-10.1.0.150 in 10.1.0.0/24 router 10.1.0.1" in saved.stdout
        )
        explained = cli(env, "boot", "explain", "52-54-00-E2-E0-01")
        assert "boots: local" in explained.stdout and "e2e-01" in explained.stdout, explained.stderr
        assert cli(env, "boot", "leases").returncode == 0

        # a scenario run followed to its end, and its history
        saved = cli(env, "scenarios", "save", "sim", "--kind", "simulated", "--param", "seconds=0.2")
        assert saved.returncode == 0 and "revision 1" in saved.stdout, saved.stderr
        ran = cli(env, "run", "sim", "--on", "e2e-01", "--wait")
        assert ran.returncode == 0 and "[1/1] e2e-01: completed" in ran.stdout, ran.stderr
        history = cli(env, "executions", "--machine", "e2e-01", "--json")
        assert '"state": "completed"' in history.stdout
        assert cli(env, "clear").returncode == 2  # names nothing: a usage error
        scheduled = cli(
            env, "schedules", "add", "nightly", "--action", "power-on", "--group", "lab", "--cron", "0 22 * * 1-5"
        )
        assert scheduled.returncode == 0, scheduled.stderr
        assert "cron 0 22 * * 1-5 UTC" in cli(env, "schedules", "list").stdout

        # dpm lab up: two simulated machines are woken, network-boot against pxe and run a disk check
        (var / "boot" / "deploy").mkdir()
        for name in ("deploy/vmlinuz", "deploy/initrd.img", "undionly.kpxe"):
            if not (var / "boot" / name).exists():
                (var / "boot" / name).write_bytes(b"\0" * 4096)
        assert cli(env, "boot", "set", "--mode", "proxy", "--server-ip", "127.0.0.1", "--clear-ranges").returncode == 0
        with open(var.parent / f"{var.name}-lab.log", "wb") as lab_log:
            lab = subprocess.Popen(
                [sys.executable, "-m", "dpm_cli", "lab", "up", "--machines", "2", "--group", "simlab",
                 "--step-seconds", "0.2"],
                env=env, stdout=lab_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "lab0001" not in cli(env, "machines", "list").stdout:
                assert time.monotonic() < deadline and lab.poll() is None
                time.sleep(0.2)
            assert cli(env, "scenarios", "save", "check", "--kind", "disk-check").returncode == 0
            checked = cli(env, "run", "check", "--group", "simlab", "--wait")
            assert checked.returncode == 0 and "[2/2] lab000" in checked.stdout, checked.stdout + checked.stderr
        finally:
            lab.send_signal(signal.SIGINT)
            lab.wait(30)

        # images by hand: a backup of a disk-image file, the list, a verification, a byte-identical restore
        disk = var.parent / f"{var.name}-disk.img"
        disk.write_bytes(os.urandom(3 << 20) + bytes(5 << 20))
        backed = cli(env, "images", "backup", str(disk), "--name", "e2e/disk", "--full")
        assert backed.returncode == 0 and "image e2e/disk: 8.0 MiB captured" in backed.stdout, backed.stderr
        again = cli(env, "images", "backup", str(disk), "--name", "e2e/disk", "--full")
        assert "0 new chunks" in again.stdout, again.stdout + again.stderr
        deadline = time.monotonic() + 10
        while "e2e/disk" not in cli(env, "images", "list").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "all intact" in cli(env, "images", "verify", "e2e/disk").stdout
        copy = var.parent / f"{var.name}-copy.img"
        copy.write_bytes(b"\xff" * (8 << 20))
        restored = cli(env, "images", "restore", "e2e/disk", str(copy))
        assert restored.returncode == 0 and copy.read_bytes() == disk.read_bytes(), restored.stderr
        missing = cli(env, "images", "restore", "e2e/none", str(copy))
        assert missing.returncode == 1 and "DPM-E158" in missing.stderr

        # local accounts: nobody gets into PostgreSQL, NATS or var/; pxe's credential reads no other inbox
        if os.geteuid() == 0 and shutil.which("runuser"):  # as on CI; another account cannot become nobody
            local_account_probe(var, env)
        refusals = asyncio.run(stolen_pxe_credential_probe(var, env))
        for denied in (f'"{inbox_prefix("api")}.>"', '"_inbox.>"', f"stream.update.{subjects.EVENTS_STREAM}"):
            assert any("permissions violation" in e and denied.lower() in e for e in refusals), (denied, refusals)

        secret = {**env, "DPM_PASSWORD": "otto-secret-1"}  # passwords never on the command line (ps shows it)
        added = cli(secret, "users", "add", "otto", "--role", "operator")
        assert added.returncode == 0, added.stderr
        logged = cli(secret, "login", "--username", "otto")
        assert logged.stdout.strip() == "logged in as otto (operator)", logged.stderr
        assert "e2e-01" in cli(env, "machines", "list").stdout  # now as otto, through the session
        denied = cli(env, "users", "list")
        assert denied.returncode == 1 and "DPM-E404" in denied.stderr
        assert cli(env, "logout").returncode == 0
        rebuilt = cli(env, "admin", "rebuild", "machines")
        assert rebuilt.returncode == 0 and rebuilt.stdout.startswith("rebuilt machines: ")
        listed = cli(env, "machines", "list").stdout
        assert "e2e-01" in listed and "lab0001" in listed  # the same rows, rebuilt from the log

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert processes_mentioning(str(var)) == []

        proc, _ = start_stack(env, var.parent / f"{var.name}-up2.log")
        listed = cli(env, "machines", "list", "--json")
        assert listed.returncode == 0 and "e2e-01" in listed.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert processes_mentioning(str(var)) == []
    finally:
        for pid, _ in processes_mentioning(str(var)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(var, ignore_errors=True)


def test_cli_without_a_server_says_so_with_exit_code_3() -> None:
    env = {**os.environ, "DPM_API_URL": f"http://127.0.0.1:{free_port()}"}
    result = cli(env, "machines", "list")
    assert result.returncode == 3 and "DPM-E022" in result.stderr and "make up" in result.stderr
