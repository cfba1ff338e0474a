"""The install-order runner's own logic: how outcomes and reports are built (control characters, the
output limit), when scheduled orders are due (injected clock and boot id), the runner's sequencing
(fail-fast, one install at a time) and the outbox of final reports (kept, then sent after a restart).

The installers are real processes (command-only script packages); the updater is an
``httpx.MockTransport`` that records what it is sent (the integration tests use a real server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from dpm_agent.config import AgentConfig
from dpm_agent.packages import pending
from dpm_agent.packages.download import RetryPolicy
from dpm_agent.packages.install import InstallResult
from dpm_agent.packages.orders import Installer
from dpm_agent.packages.pending import Pending, When, due
from dpm_agent.packages.reports import Delivery, Reporter, clean, outcome, report
from dpm_schemas import E
from dpm_schemas.agent_protocol import OUTPUT_TAIL_MAX, InstallItem, InstallOrder, InstallReport, InstallWhen
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.packages import AGENT_PACKAGE_ID, Execution, Package, PackageType

NOW = dt.datetime(2026, 12, 3, 1, 0, tzinfo=dt.UTC)
FAST = RetryPolicy(retry_for=0.3, first_delay=0.01, max_delay=0.02, timeout=5.0)
TOKEN = "order-token-0123456789"


def command_item(name: str, command: str, reboot: bool = False) -> InstallItem:
    """A command-only script package: ``sh -c <command>``, nothing to download."""
    execution = Execution(command="sh", parameters=f"-c '{command}'", reboot_after_install=reboot)
    return InstallItem(package=Package(id=name, type=PackageType.SCRIPT, execution=execution, revision=2))


def order(*items: InstallItem, when: InstallWhen = InstallWhen.NOW, at: dt.datetime | None = None) -> InstallOrder:
    return InstallOrder(
        execution_id=uuid.uuid4(), step="install", server="http://updater.test", token=TOKEN, items=items,
        when=when, at=at, timeout_seconds=30,
    )  # fmt: skip


@dataclass
class Updater:
    """What the updater was sent; ``answers``: the statuses of the next reports (then 202)."""

    answers: list[int] = field(default_factory=list)
    reports: list[InstallReport] = field(default_factory=list)
    attempts: int = 0

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/v1/reports" and request.headers["authorization"] == f"Bearer {TOKEN}"
            self.attempts += 1
            status = self.answers.pop(0) if self.answers else 202
            if status == 202:
                self.reports.append(InstallReport.model_validate_json(request.content))
            return httpx.Response(status)

        return httpx.MockTransport(handle)

    def messages(self) -> list[str]:
        return [r.message for r in self.reports]


def installer(tmp_path: Path, updater: Updater, **kwargs: object) -> Installer:
    config = AgentConfig(server="http://gw.test", state_dir=tmp_path / "state", install_root=tmp_path)
    reporter = Reporter(config.packages_dir / "outbox.json", FAST, FAST, transport=updater.transport())
    return Installer(config, reporter=reporter, **kwargs)  # type: ignore[arg-type]


def test_outcome_replaces_control_characters_and_keeps_the_end_of_the_output() -> None:
    item = command_item("p", "true")
    noisy = "\x1b[31mred\x1b[0m\ttab\r\nnul\x00 c1\x85 del\x7f" + "x" * OUTPUT_TAIL_MAX + "END"
    result = InstallResult(False, "DPM-E234", 3, noisy, False, 1.5, "p: exited with 3: \x1b[1mboom")
    got = outcome(item, result)
    assert len(got.output_tail) == OUTPUT_TAIL_MAX and got.output_tail.endswith("xEND")
    assert got.message == "p: exited with 3: \ufffd[1mboom"
    assert (got.package_id, got.revision, got.exit_code, got.code) == ("p", 2, 3, "DPM-E234")
    assert clean("\x1b[31mred\t\r\n\x00\x85\x7f", 100) == "\ufffd[31mred\t\r\n\ufffd\ufffd\ufffd"
    assert clean("abcdef", 3) == "def"
    assert len(report(uuid.uuid4(), StepStatus.FAILED, message="m" * 5000).message) == 1000


def test_scheduled_orders_are_due_by_the_injected_clock_and_boot_id() -> None:
    later = order(command_item("a", "true"), when=InstallWhen.AT_TIME, at=NOW + dt.timedelta(hours=1))
    boot = order(command_item("b", "true"), when=InstallWhen.NEXT_BOOT)
    timed = Pending(key="t", order=later, when=When.AT_TIME, at=later.at, scheduled_at=NOW)
    rebooted = Pending(key="n", order=boot, when=When.NEXT_BOOT, boot_id="boot-1", scheduled_at=NOW)
    assert due([timed, rebooted], NOW, "boot-1") == ()
    assert due([timed, rebooted], NOW + dt.timedelta(hours=1), "boot-1") == (timed,)
    assert due([timed, rebooted], NOW, "boot-2") == (rebooted,)
    with pytest.raises(ValueError, match="either a package or an order"):
        Pending(key="x", when=When.AT_TIME, at=NOW, scheduled_at=NOW)


async def test_an_order_stops_at_its_first_failure(tmp_path: Path) -> None:
    updater = Updater()
    marker = tmp_path / "third-ran"
    third = command_item("third", f"touch {marker}")
    final = await installer(tmp_path, updater).carry_out(
        order(command_item("first", "echo one"), command_item("second", "echo broken >&2; exit 3"), third)
    )
    assert final is not None and final.status is StepStatus.FAILED and final.code == E.PACKAGE_INSTALL_FAILED.code
    assert [(o.package_id, o.ok, o.exit_code) for o in final.outcomes] == [("first", True, 0), ("second", False, 3)]
    assert "broken" in final.outcomes[1].output_tail and final.message.startswith("second: ")
    assert not marker.exists()
    assert updater.messages()[:4] == [
        "downloading first",
        "installing first",
        "downloading second",
        "installing second",
    ]
    assert [r.percent for r in updater.reports[:4]] == [0, 16, 33, 50]
    assert updater.reports[-1] == final


async def test_installs_never_overlap(tmp_path: Path) -> None:
    log = tmp_path / "log"
    runner = installer(tmp_path, Updater())
    orders = [order(command_item(n, f"echo start-{n} >> {log}; sleep 0.2; echo end-{n} >> {log}")) for n in "abc"]
    for each in (*orders, orders[0]):  # the first one twice: the command was sent again
        runner.submit(each)
    await asyncio.wait_for(runner.idle(), 20)
    lines = log.read_text().split()
    assert len(lines) == 6 and all(s.replace("start", "end") == e for s, e in zip(lines[::2], lines[1::2], strict=True))


async def test_a_step_that_is_over_stops_the_order(tmp_path: Path) -> None:
    updater = Updater(answers=[403])
    marker = tmp_path / "ran"
    assert await installer(tmp_path, updater).carry_out(order(command_item("p", f"touch {marker}"))) is None
    assert not marker.exists() and updater.reports == [] and updater.attempts == 1


async def test_a_final_report_kept_in_the_outbox_is_sent_after_a_restart(tmp_path: Path) -> None:
    down = Updater(answers=[202, 202] + [503] * 100)
    final = await installer(tmp_path, down).carry_out(order(command_item("p", "echo done")))
    assert final is not None and final.status is StepStatus.COMPLETED and down.attempts > 3
    outbox = tmp_path / "state/packages/outbox.json"
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o600
    assert [json.loads(outbox.read_text())[0]["report"]["status"]] == ["completed"]

    up = Updater()  # the agent restarted; the updater is back
    assert await installer(tmp_path, up).reporter.flush() == 0
    assert up.reports == [final] and json.loads(outbox.read_text()) == []
    assert await installer(tmp_path, up).reporter.flush() == 0 and len(up.reports) == 1  # sent once


async def test_a_refused_final_report_leaves_the_outbox(tmp_path: Path) -> None:
    updater = Updater(answers=[409])
    reporter = Reporter(tmp_path / "outbox.json", FAST, FAST, transport=updater.transport())
    body = report(uuid.uuid4(), StepStatus.COMPLETED, percent=100)
    assert await reporter.final("http://updater.test", TOKEN, body) is Delivery.CLOSED
    assert await reporter.flush() == 0 and updater.attempts == 1


async def test_an_unreadable_outbox_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "outbox.json").write_text("[{broken")
    reporter = Reporter(tmp_path / "outbox.json", FAST, FAST, transport=Updater().transport())
    assert await reporter.flush() == 0
    assert (tmp_path / "outbox.json.unreadable").exists()


async def test_reboot_comes_after_the_final_report(tmp_path: Path) -> None:
    updater = Updater()
    seen: list[list[str]] = []

    async def reboot() -> None:
        seen.append([r.status.value for r in updater.reports])

    changed: list[int] = []

    async def on_change() -> None:
        changed.append(1)

    runner: Callable[[], Installer] = lambda: installer(tmp_path, updater, reboot=reboot, on_change=on_change)  # noqa: E731
    await runner().carry_out(order(command_item("p", "true", reboot=True)))
    assert seen == [["progress", "progress", "completed"]] and changed == [1]


async def test_the_agents_own_package_restarts_it_after_the_final_report(tmp_path: Path) -> None:
    """Only the agent's package restarts the agent, only once installed and reported, and a reboot
    asked for in the same order wins (the agent starts again with the machine)."""
    updater = Updater()
    restarts: list[list[str]] = []
    reboots: list[int] = []

    async def reboot() -> None:
        reboots.append(1)

    async def restart() -> None:  # the process would be replaced here: no order is taken meanwhile
        restarts.append([r.status.value for r in updater.reports])
        taken_while = order(command_item("late", "true"))
        runner.submit(taken_while)
        assert taken_while.execution_id not in runner._seen and runner.restarting

    runner = installer(tmp_path, updater, restart=restart, reboot=reboot)
    await runner.carry_out(order(command_item("other", "true")))
    await runner.carry_out(order(command_item(AGENT_PACKAGE_ID, "false")))  # failed: the old agent goes on
    assert restarts == []
    updater.reports.clear()
    await runner.carry_out(order(command_item(AGENT_PACKAGE_ID, "true")))
    assert restarts == [["progress", "progress", "completed"]] and reboots == []
    await runner.carry_out(order(command_item(AGENT_PACKAGE_ID, "true", reboot=True)))
    assert len(restarts) == 1 and reboots == [1]
    assert not runner.restarting  # a restart that returns (none configured) leaves the agent taking orders


async def test_queue_entries_of_single_packages_are_left_alone(tmp_path: Path) -> None:
    runner = installer(tmp_path, Updater(), now=lambda: NOW)
    single = Pending(key="k", package=command_item("p", "true").package, files={}, when=When.AT_TIME, at=NOW,
                     scheduled_at=NOW)  # fmt: skip
    pending.add(runner.queue, single)
    assert await runner.run_due() == 0  # not an order: not this installer's to run
    assert pending.load(runner.queue) == (single,)
