"""Install orders end to end on the agent's side: a real HTTP server on 127.0.0.1 (starlette under
uvicorn) stands in for the updater -- it serves .deb files built here with dpkg-deb and records the
reports -- and the agent's installer downloads, installs with dpkg into a per-test root (its own
package database) and reports. Also the whole agent: an install command over the WebSocket is
accepted at once and outlives its session, and the inventory shows the package."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, serve

from dpm_agent import facts
from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_agent.packages import pending
from dpm_agent.packages.download import RetryPolicy
from dpm_agent.packages.orders import Installer
from dpm_agent.packages.reports import Reporter
from dpm_agent.power import MachinePower, SimulatedPower, last_power_action
from dpm_runtime.testing import eventually
from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import (
    Action,
    Command,
    CommandResult,
    Facts,
    Hello,
    InstallItem,
    InstallOrder,
    InstallWhen,
    Inventory,
    Welcome,
)
from dpm_schemas.packages import Execution, Package, PackageType

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg and dpkg-deb"),
]

TOKEN = "order-token-0123456789"
FAST = RetryPolicy(retry_for=2.0, first_delay=0.01, max_delay=0.05, timeout=5.0)


@dataclass
class Updater:
    """The updater's two agent-facing routes; ``answers``: statuses for the next reports (then 202)."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    report_attempts: int = 0

    def add(self, content: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(content).hexdigest()
        self.files[sha] = content
        return sha, len(content)

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.reports]

    def final(self) -> dict[str, Any] | None:
        return next((r for r in self.reports if r["status"] != "progress"), None)

    async def content(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response(status_code=401)
        body = self.files.get(request.path_params["sha256"])
        return Response(status_code=404) if body is None else Response(body, media_type="application/octet-stream")

    async def report(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response(status_code=401)
        self.report_attempts += 1
        status = self.answers.pop(0) if self.answers else 202
        if status == 202:
            self.reports.append(await request.json())
        return Response(status_code=status)


@pytest.fixture
async def updater() -> AsyncIterator[Updater]:
    state = Updater()
    app = Starlette(routes=[Route("/v1/content/{sha256}", state.content), Route("/v1/reports", state.report,
                                                                                 methods=["POST"])])  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    state.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await eventually(lambda: asyncio.sleep(0, server.started), timeout=10, what="the updater")
    yield state
    server.should_exit = True
    await asyncio.wait_for(task, 10)


def dpkg_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for d in ("info", "updates"):
        (root / "var/lib/dpkg" / d).mkdir(parents=True)
    for f in ("status", "available"):
        (root / "var/lib/dpkg" / f).touch()
    return root


def deb_item(tmp_path: Path, updater: Updater, name: str, postinst: str = "true") -> InstallItem:
    tree = tmp_path / f"build-{name}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: 1.2-3\nArchitecture: all\nMaintainer: dpm <t@example>\nDescription: t\n"
    (tree / "DEBIAN/control").write_text(control)
    (tree / "DEBIAN/postinst").write_text(f"#!/bin/sh\n{postinst}\n")
    (tree / "DEBIAN/postinst").chmod(0o755)
    (tree / f"opt/{name}").mkdir(parents=True)
    (tree / f"opt/{name}/a").write_text("hi\n")
    out = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True, capture_output=True)
    sha, size = updater.add(out.read_bytes())
    package = Package(id=name, type=PackageType.DEB, system_package=name, revision=1,
                      execution=Execution(files=(f"{name}.deb",)))  # fmt: skip
    return InstallItem(package=package, sha256=sha, size=size, file_name=f"{name}.deb")


def script_item(updater: Updater, script: str, name: str = "dpm-script", padding: int = 0) -> InstallItem:
    sha, size = updater.add(f"#!/bin/sh\n{script}\n# {'x' * padding}\n".encode())
    execution = Execution(files=("setup.sh",), command="sh setup.sh")
    package = Package(id=name, type=PackageType.SCRIPT, execution=execution, revision=4)
    return InstallItem(package=package, sha256=sha, size=size, file_name="setup.sh")


def make_order(updater: Updater, *items: InstallItem, **fields: Any) -> InstallOrder:
    return InstallOrder(execution_id=uuid.uuid4(), step="update", server=updater.base, token=TOKEN, items=items,
                        **fields)  # fmt: skip


def config(tmp_path: Path, root: Path | None = None, **fields: Any) -> AgentConfig:
    return AgentConfig(server="http://127.0.0.1:9", state_dir=tmp_path / "state", install_root=root or tmp_path,
                       **fields)  # fmt: skip


def installer(cfg: AgentConfig, **kwargs: Any) -> Installer:
    reporter = Reporter(cfg.packages_dir / "outbox.json", FAST, FAST)
    return Installer(cfg, reporter=reporter, download_policy=FAST, **kwargs)


async def test_a_deb_installed_now_is_reported_completed_and_in_the_inventory(tmp_path: Path, updater: Updater) -> None:
    root = dpkg_root(tmp_path)
    order = make_order(updater, deb_item(tmp_path, updater, "dpm-hello", postinst='echo "configured in $DPKG_ROOT"'))
    final = await installer(config(tmp_path, root)).carry_out(order)
    assert final is not None and updater.final() == final.model_dump(mode="json")
    assert updater.statuses() == ["progress", "progress", "completed"]
    assert [r["message"] for r in updater.reports[:2]] == ["downloading dpm-hello", "installing dpm-hello"]
    (done,) = updater.final()["outcomes"]  # type: ignore[index]
    assert done["ok"] and done["exit_code"] == 0 and f"configured in {root}" in done["output_tail"]
    assert "dpm-hello=1.2-3" in facts.inventory(root).packages
    assert (tmp_path / "state/packages/cache" / order.items[0].sha256).is_file()  # type: ignore[operator]


async def test_a_script_that_exits_3_fails_the_step_with_its_code_and_output(tmp_path: Path, updater: Updater) -> None:
    order = make_order(updater, script_item(updater, "echo 'libfoo is missing' >&2; exit 3"))
    await installer(config(tmp_path)).carry_out(order)
    final = updater.final()
    assert final is not None and final["status"] == "failed" and final["code"] == E.PACKAGE_INSTALL_FAILED.code
    (failed,) = final["outcomes"]
    assert (failed["ok"], failed["exit_code"], failed["revision"]) == (False, 3, 4)
    assert "libfoo is missing" in failed["output_tail"] and "libfoo is missing" in final["message"]


async def test_an_installer_that_cannot_start_still_ends_the_order_with_a_report(
    tmp_path: Path, updater: Updater
) -> None:
    package = Package(id="ghost", type=PackageType.SCRIPT, execution=Execution(command="/nonexistent/setup --quiet"),
                      revision=1)  # fmt: skip
    order = make_order(updater, InstallItem(package=package), script_item(updater, "true", name="after"))
    await asyncio.wait_for(installer(config(tmp_path)).carry_out(order), 15)
    final = updater.final()
    assert final is not None and (final["status"], final["code"]) == ("failed", E.PACKAGE_INSTALL_INVALID.code)
    assert [o["package_id"] for o in final["outcomes"]] == ["ghost"] and "neither one of its files" in final["message"]


async def test_an_installer_past_its_timeout_is_killed_and_reported(tmp_path: Path, updater: Updater) -> None:
    order = make_order(updater, script_item(updater, "echo waiting; sleep 30"), timeout_seconds=1)
    await asyncio.wait_for(installer(config(tmp_path)).carry_out(order), 15)
    final = updater.final()
    assert final is not None and (final["status"], final["code"]) == ("failed", E.PACKAGE_INSTALL_TIMEOUT.code)
    assert final["outcomes"][0]["exit_code"] is None and "waiting" in final["outcomes"][0]["output_tail"]


async def test_no_room_in_the_cache_fails_before_any_download(tmp_path: Path, updater: Updater) -> None:
    state = tmp_path / "tiny"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(state)], capture_output=True)
    try:
        item = script_item(updater, "true", padding=400_000)  # needs 1.2 MB free on a 1 MB disk
        if mounted.returncode != 0:  # no tmpfs here: a size larger than the free space says the same
            free = shutil.disk_usage(tmp_path).free
            item = item.model_copy(update={"size": free})
        cfg = AgentConfig(server="http://127.0.0.1:9", state_dir=state, install_root=tmp_path)
        await installer(cfg).carry_out(make_order(updater, item))
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(state)], check=True)
    final = updater.final()
    assert final is not None and (final["status"], final["code"]) == ("failed", E.PACKAGE_DISK_SPACE.code)
    assert final["outcomes"][0]["exit_code"] is None


async def test_next_boot_waits_for_another_boot_id(tmp_path: Path, updater: Updater) -> None:
    root = dpkg_root(tmp_path)
    boot = ["boot-1"]
    cfg = config(tmp_path, root)
    order = make_order(updater, deb_item(tmp_path, updater, "dpm-later"), when=InstallWhen.NEXT_BOOT)
    await installer(cfg, boot_id=lambda: boot[0]).handle(order)
    assert [r["message"] for r in updater.reports] == ["downloading dpm-later", "scheduled for next boot"]
    assert await installer(cfg, boot_id=lambda: boot[0]).run_due() == 0  # an agent restart is not a reboot
    assert "dpm-later=1.2-3" not in facts.inventory(root).packages
    updater.files.clear()  # the content was fetched when the order came: the new boot needs no server files

    boot[0] = "boot-2"
    stop = asyncio.Event()
    running = asyncio.create_task(installer(cfg, boot_id=lambda: boot[0]).run(stop))  # start-up runs what is due
    await eventually(lambda: asyncio.sleep(0, updater.final()), timeout=20, what="the final report")
    stop.set()
    await asyncio.wait_for(running, 10)
    assert updater.statuses()[-1] == "completed" and "dpm-later=1.2-3" in facts.inventory(root).packages
    assert pending.load(cfg.packages_dir / "pending.json") == ()


async def test_at_time_runs_when_the_injected_clock_gets_there(tmp_path: Path, updater: Updater) -> None:
    at = dt.datetime(2026, 12, 24, 3, 0, tzinfo=dt.UTC)
    now = [at - dt.timedelta(minutes=5)]
    runner = installer(config(tmp_path), now=lambda: now[0])
    order = make_order(updater, script_item(updater, "echo late"), when=InstallWhen.AT_TIME, at=at)
    await runner.handle(order)
    assert updater.reports[-1]["message"] == f"scheduled for {at.isoformat()}"
    assert await runner.run_due() == 0
    now[0] = at
    assert await runner.run_due() == 1 and updater.statuses()[-1] == "completed"


async def test_a_report_answered_503_is_sent_again(tmp_path: Path, updater: Updater) -> None:
    updater.answers = [202, 202, 503]  # the two progress reports go through; the final one first meets a 503
    await installer(config(tmp_path)).carry_out(make_order(updater, script_item(updater, "true")))
    assert updater.statuses() == ["progress", "progress", "completed"] and updater.report_attempts == 4
    assert not (tmp_path / "state/packages/outbox.json").read_bytes().strip(b"[] \n")


async def test_the_outbox_delivers_a_final_report_after_an_agent_restart(tmp_path: Path, updater: Updater) -> None:
    updater.answers = [202, 202] + [503] * 10_000  # the updater goes away before the final report
    cfg = config(tmp_path)
    await installer(cfg).carry_out(make_order(updater, script_item(updater, "true")))
    assert updater.statuses() == ["progress", "progress"]
    updater.answers = []  # ... and is back; the agent restarts
    stop = asyncio.Event()
    running = asyncio.create_task(installer(cfg).run(stop))
    await eventually(lambda: asyncio.sleep(0, updater.statuses()), until=lambda s: "completed" in s, timeout=10,
                     what="the final report")  # fmt: skip
    stop.set()
    await asyncio.wait_for(running, 10)


FACTS = Facts(macs=("52:54:0a:00:00:02",), hostname="installs", ips=("10.9.9.2",))


def agent(tmp_path: Path, port: int, root: Path, power: MachinePower | None = None) -> Agent:
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state/token").write_text("machine-token")  # enrolled already
    cfg = AgentConfig(server=f"http://127.0.0.1:{port}", state_dir=tmp_path / "state", install_root=root,
                      max_backoff=0.2)  # fmt: skip
    return Agent(cfg, power=power, gather=lambda _c: FACTS, current_addresses=lambda: FACTS.ips)


@contextlib.asynccontextmanager
async def gateway(
    commands: list[Command], hang_up: bool = True
) -> AsyncIterator[tuple[int, list[list[agent_protocol.Frame]]]]:
    """A gateway that sends ``commands`` on the first session and (``hang_up``) closes it once they
    are answered; later sessions only listen. Yields its port and every session's frames."""
    sessions: list[list[agent_protocol.Frame]] = []

    async def handler(ws: ServerConnection) -> None:
        frames: list[agent_protocol.Frame] = []
        sessions.append(frames)
        first = len(sessions) == 1
        async for raw in ws:
            frame = agent_protocol.decode(raw)  # type: ignore[arg-type]
            frames.append(frame)
            if isinstance(frame, Hello):
                await ws.send(agent_protocol.encode(Welcome(machine_id=uuid.uuid4(), heartbeat_interval=0.1,
                                                            server_version="t")))  # fmt: skip
                for cmd in commands if first else []:
                    await ws.send(agent_protocol.encode(cmd))
            answered = [f for f in frames if isinstance(f, CommandResult)]
            if first and hang_up and len(answered) == len(commands):
                await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1], sessions


async def test_an_install_command_is_accepted_at_once_and_outlives_its_session(
    tmp_path: Path, updater: Updater
) -> None:
    root = dpkg_root(tmp_path)
    order = make_order(updater, deb_item(tmp_path, updater, "dpm-agent-made", postinst="sleep 1"))
    commands = [Command(id=uuid.uuid4(), action=Action.INSTALL), Command(id=uuid.uuid4(), action=Action.INSTALL,
                                                                         install=order)]  # fmt: skip
    async with gateway(commands) as (port, sessions):
        stop = asyncio.Event()
        running = asyncio.create_task(agent(tmp_path, port, root).run(stop))

        def inventories() -> list[tuple[str, ...]]:
            return [f.packages for s in sessions[1:] for f in s if isinstance(f, Inventory)]

        await eventually(lambda: asyncio.sleep(0, updater.final()), timeout=30, what="the final report")
        await eventually(lambda: asyncio.sleep(0, inventories()), until=lambda i: any("dpm-agent-made=1.2-3" in p
                         for p in i), timeout=10, what="an inventory with the package")  # fmt: skip
        stop.set()
        await asyncio.wait_for(running, 10)
    results = [f for f in sessions[0] if isinstance(f, CommandResult)]
    assert [(r.ok, r.code) for r in results] == [(False, E.AGENT_REFUSED.code), (True, "")]
    assert updater.statuses()[-1] == "completed"  # finished after the session that ordered it had ended


async def test_the_live_session_hears_the_new_inventory(tmp_path: Path, updater: Updater) -> None:
    root = dpkg_root(tmp_path)
    order = make_order(updater, deb_item(tmp_path, updater, "dpm-fresh"))
    async with gateway([Command(id=uuid.uuid4(), action=Action.INSTALL, install=order)], hang_up=False) as (port, ss):
        stop = asyncio.Event()
        running = asyncio.create_task(agent(tmp_path, port, root).run(stop))

        def inventories() -> list[tuple[str, ...]]:
            return [f.packages for f in ss[0] if isinstance(f, Inventory)] if ss else []

        seen = await eventually(lambda: asyncio.sleep(0, inventories()), until=lambda i: len(i) >= 2, timeout=30,
                                what="a second inventory on the session")  # fmt: skip
        stop.set()
        await asyncio.wait_for(running, 10)
    assert "dpm-fresh=1.2-3" not in seen[0] and "dpm-fresh=1.2-3" in seen[1] and len(ss) == 1


async def test_a_package_that_asks_for_a_reboot_gets_it_after_its_report(tmp_path: Path, updater: Updater) -> None:
    item = script_item(updater, "echo patched")
    item = item.model_copy(update={"package": item.package.model_copy(update={"execution": Execution(
        files=("setup.sh",), command="sh setup.sh", reboot_after_install=True)})})  # fmt: skip
    order = make_order(updater, item)
    async with gateway([Command(id=uuid.uuid4(), action=Action.INSTALL, install=order)], hang_up=False) as (port, ss):
        stop = asyncio.Event()
        power = SimulatedPower(tmp_path / "state", stop)
        running = asyncio.create_task(agent(tmp_path, port, tmp_path, power).run(stop))
        await eventually(lambda: asyncio.sleep(0, len(ss)), until=lambda n: n >= 2, timeout=30, what="a new session")
        stop.set()
        await asyncio.wait_for(running, 10)
    assert updater.statuses()[-1] == "completed" and last_power_action(tmp_path / "state") == "reboot"
