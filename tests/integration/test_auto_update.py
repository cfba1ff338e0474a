"""Automatic delivery by urgency over real PostgreSQL, NATS and HTTP (issue 14): a highest-urgency
package reaches every applicable online machine with no scenario, an offline one when it comes back,
a busy one after its install; each once per revision, a failure again only by notify-now; a normal
one only by scenario. The agents stand in as NATS responders and HTTP reports
(tests/integration/test_remote_update.py runs the real agent)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import nats
import pytest

from dpm_runtime.handlers import unit_of_work
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, subjects
from dpm_schemas.agent_protocol import Command, InstallReport
from dpm_schemas.events import AutoUpdateEnded, MachineCameOnline, UpdatesNotifyRequested
from dpm_schemas.events.packages import PackageOutcome
from dpm_updater import auto
from dpm_updater.deliverer import Deliverer
from tests.integration.test_remote_update_delivery import StandInAgent, append, delivery, inventory, register

pytestmark = pytest.mark.integration


def came_online(machine_id: uuid.UUID) -> MachineCameOnline:
    return MachineCameOnline(machine_id=machine_id, agent_version="test")


async def orders_of(agent: StandInAgent, n: int) -> list[Command]:
    return await eventually(agent.received, until=lambda got: len(got) >= n, what=f"{n} install orders")


async def report(up, order: Command, *, ok: bool) -> None:
    assert order.install is not None
    item = order.install.items[0]
    outcome = PackageOutcome(package_id=item.package.id, revision=item.package.revision, ok=ok,
                             code=None if ok else "DPM-E234", exit_code=0 if ok else 1)  # fmt: skip
    body = InstallReport(execution_id=order.install.execution_id, status="completed" if ok else "failed",
                         code=None if ok else "DPM-E234", outcomes=(outcome,))  # fmt: skip
    r = await up.http.post("/v1/reports", json=body.model_dump(mode="json"),
                           headers={"Authorization": f"Bearer {order.install.token}"})  # fmt: skip
    assert r.status_code == 202, r.text


async def ended(rt, order: Command) -> AutoUpdateEnded:
    assert order.install is not None
    execution_id = order.install.execution_id
    events = await eventually(
        lambda: delivery(rt, execution_id), until=lambda es: isinstance(es[-1], AutoUpdateEnded), what="its end"
    )
    return events[-1]


async def test_highest_urgency_reaches_online_then_returning_machines_once(
    updater_service, nats_server, tmp_path
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    agents = {a: StandInAgent(), b: StandInAgent()}
    nc = await nats.connect(nats_server.url)
    for machine, agent in agents.items():
        await nc.subscribe(subjects.agent_command(machine, "install"), cb=agent.accept)
    async with running(updater_service(relay_enabled=True)) as up:
        rt = up.runtime
        root = tmp_path / "packages"
        for machine in (a, b):
            await inventory(rt, machine)
        await append(rt, subjects.AGENT, a, came_online(a))
        await register(rt, root, "routine", b"normal", urgency="normal")  # scenario only
        await register(rt, root, "fix1", b"urgent one", urgency="highest")

        (first,) = await orders_of(agents[a], 1)
        assert first.install is not None and first.install.step == "auto-update"
        assert [i.package.id for i in first.install.items] == ["fix1"]
        assert agents[b].orders == []  # offline: nothing yet

        await register(rt, root, "fix2", b"urgent two", urgency="highest")  # a is busy with fix1
        await append(rt, subjects.AGENT, b, came_online(b))
        (to_b,) = await orders_of(agents[b], 1)
        assert sorted(i.package.id for i in to_b.install.items) == ["fix1", "fix2"]  # type: ignore[union-attr]
        assert len(agents[a].orders) == 1

        await report(up, first, ok=True)
        assert (await ended(rt, first)).ok
        await inventory(rt, a, "fix1=1.0")  # what its agent reports after the install
        second = (await orders_of(agents[a], 2))[1]
        assert [i.package.id for i in second.install.items] == ["fix2"]  # type: ignore[union-attr]

        await report(up, to_b, ok=False)
        assert not (await ended(rt, to_b)).ok
        await append(rt, subjects.AGENT, b, came_online(b))
        await inventory(rt, b)
        notify = UpdatesNotifyRequested(request_id=uuid.uuid4(), machine_ids=(b,))
        await append(rt, subjects.NOTIFY, notify.request_id, notify)
        retried = (await orders_of(agents[b], 2))[1]  # only notify-now tries a failure again
        assert sorted(i.package.id for i in retried.install.items) == ["fix1", "fix2"]  # type: ignore[union-attr]
        assert len(agents[b].orders) == 2 and len(agents[a].orders) == 2
    await nc.close()


async def test_high_urgency_waits_for_notify_now_through_the_api(
    api_service, updater_service, auth, nats_server, tmp_path
) -> None:
    agent = StandInAgent()
    nc = await nats.connect(nats_server.url)
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        r = await api.http.post("/machines", json={"name": "auto-1", "macs": ["52:54:0e:00:00:01"]})
        machine = uuid.UUID(r.json()["machine_id"])
        await nc.subscribe(subjects.agent_command(machine, "install"), cb=agent.accept)
        await inventory(up.runtime, machine)
        await append(up.runtime, subjects.AGENT, machine, came_online(machine))
        await register(up.runtime, tmp_path / "packages", "soon", b"high", urgency="high")
        await register(up.runtime, tmp_path / "packages", "marker", b"now", urgency="highest")
        (pushed,) = await orders_of(agent, 1)  # the highest one went by itself, the high one did not
        assert [i.package.id for i in pushed.install.items] == ["marker"]  # type: ignore[union-attr]
        await report(up, pushed, ok=True)
        await ended(up.runtime, pushed)

        assert error_code(await api.http.post("/updates/notify", json={"machines": ["nobody"]})) == "DPM-E102"
        cli = await dpm(api.url, auth, "updates", "notify", "auto-1")
        assert cli.returncode == 0 and "notified 1 machine(s)" in cli.stdout, cli.stdout + cli.stderr
        notified = (await orders_of(agent, 2))[1]
        assert [i.package.id for i in notified.install.items] == ["soon"]  # type: ignore[union-attr]
    await nc.close()


def error_code(r) -> str:
    return str(r.json()["error"]["code"])


async def test_high_urgency_comes_due_at_the_machines_auto_update_time(
    api_service, updater_service, auth, nats_server, tmp_path
) -> None:
    agent = StandInAgent()
    nc = await nats.connect(nats_server.url)
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        rt = up.runtime
        r = await api.http.post("/machines", json={"name": "auto-2", "macs": ["52:54:0e:00:00:02"]})
        machine = uuid.UUID(r.json()["machine_id"])
        await nc.subscribe(subjects.agent_command(machine, "install"), cb=agent.accept)
        bad = await api.http.put("/machines/auto-2/auto-update", json={"at": "03:00", "timezone": "Mars/Olympus"})
        assert error_code(bad) == "DPM-E285"
        cli = await dpm(api.url, auth, "updates", "schedule", "auto-2", "--at", "03:00", "--timezone", "Europe/Berlin")
        assert cli.returncode == 0 and "auto-update at 03:00 Europe/Berlin" in cli.stdout, cli.stdout + cli.stderr
        await inventory(rt, machine)
        await append(rt, subjects.AGENT, machine, came_online(machine))
        await register(rt, tmp_path / "packages", "nightly", b"high", urgency="high")
        registered = datetime.now(UTC)
        await rt.projections["auto_update_times"].wait_for(await rt.eventlog.head(), timeout=10)
        deliverer = Deliverer(nc=rt.nc, eventlog=rt.eventlog, server=up.url)

        async def round_at(when: datetime) -> int:
            async with unit_of_work(rt.pool, rt.eventlog, cause=Metadata.new(actor="test"), actor="updater") as ctx:
                return await auto.auto_time_round(ctx, deliverer=deliverer, clock=lambda: when, eventlog=rt.eventlog)

        assert await round_at(registered) == 1 and agent.orders == []  # its 03:00 came before the package
        assert await round_at(registered + timedelta(days=1, minutes=1)) == 1  # the next 03:00 has passed
        (due,) = await orders_of(agent, 1)
        assert [i.package.id for i in due.install.items] == ["nightly"]  # type: ignore[union-attr]
        await round_at(registered + timedelta(days=1, minutes=2))  # under way: nothing sent twice
        assert len(agent.orders) == 1
    await nc.close()


async def dpm(url: str, auth: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DPM_API_URL": url, "DPM_API_TOKEN": auth["Authorization"].split()[1],
           "DPM_SESSION_FILE": os.devnull + ".none"}  # fmt: skip
    argv = [sys.executable, "-m", "dpm_cli", *args]
    return await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)
