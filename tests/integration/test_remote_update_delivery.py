"""The updater's side of a remote-update step over real PostgreSQL, NATS and HTTP (issue 14): a
StepRequested becomes a delivery and an install order on the agent's install subject; the order's
token downloads only that delivery's content (with Range) and reports only on its execution, until
the execution ends; a step that cannot start fails at once with its code. The agent's side stands in
here as plain HTTP calls (tests/e2e/test_remote_update.py runs the real agent)."""

from __future__ import annotations

import hashlib
import os
import uuid

import nats
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import Command, CommandResult, InstallReport
from dpm_schemas.events import (
    ExecutionCompleted,
    InventoryReported,
    PackageDeliveryGranted,
    PackageInstallReported,
    PackageRegistered,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.packages import PackageOutcome, package_stream_key
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id
from dpm_schemas.packages import Package

pytestmark = pytest.mark.integration

DEBIAN = "Debian GNU/Linux 12 (bookworm)"


async def append(rt, category: str, key: object, *events) -> int:
    meta = Metadata.new(actor="test")
    done = await rt.eventlog.append(stream_id(category, key), ANY_VERSION, [NewEvent(e, meta) for e in events])
    return done.position


async def register(rt, root, pid: str, data: bytes, version: str = "1.0", urgency: str = "normal") -> str:
    sha = hashlib.sha256(data).hexdigest()
    (root / "sha256" / sha[:2]).mkdir(parents=True, exist_ok=True)
    (root / "sha256" / sha[:2] / sha).write_bytes(data)  # as a completed upload leaves it
    package = Package(id=pid, type="deb", system_version=version, urgency=urgency, revision=1)
    event = PackageRegistered(package=package, content_sha256=sha, content_size=len(data), file_name=f"{pid}.deb")
    await append(rt, subjects.PACKAGE, package_stream_key(pid), event)
    return sha


async def inventory(rt, machine_id: uuid.UUID, *packages: str) -> None:
    reported = InventoryReported(machine_id=machine_id, os=DEBIAN, kernel="6.1.0", packages=packages, digest="d")
    await append(rt, subjects.AGENT, machine_id, reported)


async def request_step(rt, machine_id: uuid.UUID, packages: str, **params: str) -> uuid.UUID:
    execution_id = uuid.uuid4()
    spec = ScenarioSpec(kind=ScenarioKind.REMOTE_UPDATE, params={"packages": packages, **params})
    step = StepRequested(execution_id=execution_id, machine_id=machine_id, step="remote-update", spec=spec)
    await append(rt, subjects.EXECUTION, execution_id, step)
    return execution_id


async def delivery(rt, execution_id: uuid.UUID) -> list:
    return [r.event for r in await rt.eventlog.read_stream(stream_id(subjects.DELIVERY, execution_id))]


async def final_report(rt, execution_id: uuid.UUID) -> StepReported:
    def final(events: list) -> bool:
        return any(isinstance(e, StepReported) and e.status != "progress" for e in events)

    events = await eventually(lambda: delivery(rt, execution_id), until=final, what="the step's final report")
    return next(e for e in events if isinstance(e, StepReported) and e.status != "progress")


class StandInAgent:
    """The gateway and agent as the install subject sees them: accept every order, keep it."""

    def __init__(self) -> None:
        self.orders: list[Command] = []

    async def accept(self, msg) -> None:
        cmd = agent_protocol.decode(msg.data)
        assert isinstance(cmd, Command)
        self.orders.append(cmd)
        await msg.respond(agent_protocol.encode(CommandResult(id=cmd.id, ok=True)))

    async def received(self) -> list[Command]:
        return self.orders


async def test_a_delivery_token_fetches_its_content_reports_its_step_and_dies_with_the_execution(
    updater_service, nats_server, tmp_path
) -> None:
    machine_id = uuid.uuid4()
    data = os.urandom(300_000)
    agent = StandInAgent()
    nc = await nats.connect(nats_server.url)
    await nc.subscribe(subjects.agent_command(machine_id, "install"), cb=agent.accept)
    async with running(updater_service(relay_enabled=True)) as up:
        rt = up.runtime
        sha = await register(rt, tmp_path / "packages", "hello", data)
        other = await register(rt, tmp_path / "packages", "other", b"not yours")
        await inventory(rt, machine_id)
        execution_id = await request_step(rt, machine_id, "hello")
        await eventually(agent.received, what="the install order")
        order = agent.orders[0].install
        assert order is not None and order.execution_id == execution_id and order.server == up.url
        assert [(i.package.id, i.sha256, i.size) for i in order.items] == [("hello", sha, len(data))]
        bearer = {"Authorization": f"Bearer {order.token}"}

        whole = await up.http.get(f"/v1/content/{sha}", headers=bearer)
        assert whole.status_code == 200 and whole.content == data
        rest = await up.http.get(f"/v1/content/{sha}", headers={**bearer, "Range": "bytes=1000-"})
        assert rest.status_code == 206 and rest.content == data[1000:]
        for refused in (
            await up.http.get(f"/v1/content/{other}", headers=bearer),  # content of another delivery
            await up.http.get(f"/v1/content/{sha}", headers={"Authorization": "Bearer forged-token-000000"}),
        ):
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "DPM-E281")
        assert (await up.http.get(f"/v1/content/{sha}")).status_code == 401

        garbage = await up.http.post("/v1/reports", content=b"{not json", headers=bearer)
        assert (garbage.status_code, garbage.json()["error"]["code"]) == (422, "DPM-E100")
        assert (await up.http.post("/v1/reports", content=b"{not json")).status_code == 401  # the token first
        foreign = InstallReport(execution_id=uuid.uuid4(), status="completed")  # another machine's step
        r = await up.http.post("/v1/reports", json=foreign.model_dump(mode="json"), headers=bearer)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "DPM-E281")
        stranger = PackageOutcome(package_id="other", revision=1, ok=False)  # not delivered: not its to report
        lie = InstallReport(execution_id=execution_id, status="failed", outcomes=(stranger,))
        r = await up.http.post("/v1/reports", json=lie.model_dump(mode="json"), headers=bearer)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "DPM-E281")
        outcome = PackageOutcome(package_id="hello", revision=1, ok=True, exit_code=0, output_tail="Setting up hello")
        done = InstallReport(execution_id=execution_id, status="completed", outcomes=(outcome,))
        r = await up.http.post("/v1/reports", json=done.model_dump(mode="json"), headers=bearer)
        assert r.status_code == 202, r.text
        events = await delivery(rt, execution_id)
        assert [type(e) for e in events] == [PackageDeliveryGranted, StepReported, StepReported, PackageInstallReported]
        assert events[1].status == "progress" and "delivering hello r1" in events[1].message
        assert events[2].status == "completed" and events[3].outcome == outcome

        await append(rt, subjects.EXECUTION, execution_id, ExecutionCompleted(execution_id=execution_id,
                                                                              machine_id=machine_id))  # fmt: skip

        async def after_the_end() -> int:
            return (await up.http.get(f"/v1/content/{sha}", headers=bearer)).status_code

        assert await eventually(after_the_end, until=lambda status: status == 403, what="the token ended") == 403
    await nc.close()


async def test_steps_that_cannot_start_fail_at_once_with_their_code(updater_service, tmp_path) -> None:
    online, offline, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with running(updater_service(relay_enabled=True)) as up:
        rt = up.runtime
        await register(rt, tmp_path / "packages", "hello", b"deb", version="2.0")
        await inventory(rt, online, "hello=2.0")
        await inventory(rt, offline)

        applied = await final_report(rt, await request_step(rt, online, "hello"))
        assert (applied.status, applied.code) == ("completed", None) and "nothing to install" in applied.message
        absent = await final_report(rt, await request_step(rt, offline, "hello"))
        assert (absent.status, absent.code) == ("failed", "DPM-E120")  # no agent session anywhere
        blind = await final_report(rt, await request_step(rt, unknown, "hello"))
        assert (blind.status, blind.code) == ("failed", "DPM-E279")
        missing = await final_report(rt, await request_step(rt, online, "hello,nope"))
        assert (missing.status, missing.code) == ("failed", "DPM-E276")


async def test_a_next_boot_step_ends_when_queued_and_the_install_reports_as_its_own_delivery(
    updater_service, nats_server, tmp_path
) -> None:
    machine_id = uuid.uuid4()
    agent = StandInAgent()
    nc = await nats.connect(nats_server.url)
    await nc.subscribe(subjects.agent_command(machine_id, "install"), cb=agent.accept)
    async with running(updater_service(relay_enabled=True)) as up:
        rt = up.runtime
        sha = await register(rt, tmp_path / "packages", "boot-fix", b"after the reboot")
        await inventory(rt, machine_id)
        execution_id = await request_step(rt, machine_id, "boot-fix", when="next-boot")
        await eventually(agent.received, what="the install order")
        order = agent.orders[0].install
        assert order is not None and order.when == "next-boot" and order.later is not None
        later, step = order.later, {"Authorization": f"Bearer {order.token}"}
        queued = InstallReport(execution_id=execution_id, status="completed", message="scheduled for next boot")
        assert (await up.http.post("/v1/reports", json=queued.model_dump(mode="json"), headers=step)).status_code == 202
        assert (await final_report(rt, execution_id)).status == "completed"  # the step is over

        own = {"Authorization": f"Bearer {later.token}"}
        assert (await up.http.get(f"/v1/content/{sha}", headers=own)).content == b"after the reboot"
        wrong = InstallReport(execution_id=execution_id, status="failed")  # the step's, not its own
        r = await up.http.post("/v1/reports", json=wrong.model_dump(mode="json"), headers=own)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "DPM-E281")
        outcome = PackageOutcome(package_id="boot-fix", revision=1, ok=True, exit_code=0)
        ran = InstallReport(execution_id=later.execution_id, status="completed", outcomes=(outcome,))
        assert (await up.http.post("/v1/reports", json=ran.model_dump(mode="json"), headers=own)).status_code == 202
        events = await delivery(rt, later.execution_id)
        assert [type(e).__name__ for e in events] == ["PackageInstallReported", "AutoUpdateEnded"]
        assert events[1].ok and not any(isinstance(e, StepReported) for e in events)
    await nc.close()
