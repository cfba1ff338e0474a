"""Staged rollouts over real PostgreSQL, NATS and HTTP (issue 14): a canary group first, the rest only
once the canary ring ended within the failure rate; a failing canary halts the rollout and the rest
get nothing. Agents stand in as NATS responders and HTTP reports."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import nats
import pytest

from dpm_runtime.handlers import unit_of_work
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, subjects
from dpm_updater import auto
from tests.integration.test_auto_update import came_online, dpm, error_code, orders_of, report
from tests.integration.test_remote_update_delivery import StandInAgent, append, inventory, register

pytestmark = pytest.mark.integration

FLEET = {"c1": "canary", "p1": "prod", "p2": "prod"}


async def rollout(api, rollout_id: str, state: str) -> dict:
    async def shown() -> dict:
        return (await api.http.get(f"/rollouts/{rollout_id}")).json()

    return await eventually(shown, until=lambda r: r["state"] == state, what=f"rollout {state}")


async def test_a_failing_canary_halts_the_rollout_and_a_good_one_reaches_every_ring(
    api_service, updater_service, auth, nats_server, tmp_path
) -> None:
    agents: dict[str, StandInAgent] = {}
    nc = await nats.connect(nats_server.url)
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        rt = up.runtime
        for group in ("canary", "prod"):
            assert (await api.http.put(f"/groups/{group}", json={})).is_success
        for n, (name, group) in enumerate(FLEET.items()):
            r = await api.http.post(
                "/machines", json={"name": name, "macs": [f"52:54:0f:00:00:0{n + 1}"], "group": group}
            )
            machine = uuid.UUID(r.json()["machine_id"])
            agents[name] = StandInAgent()
            await nc.subscribe(subjects.agent_command(machine, "install"), cb=agents[name].accept)
            await inventory(rt, machine)
            await append(rt, subjects.AGENT, machine, came_online(machine))
        for pid in ("fixr", "fixs"):
            await register(rt, tmp_path / "packages", pid, pid.encode())
        await eventually(lambda: api.http.get("/packages"), until=lambda r: len(r.json()) == 2, what="the catalogue")
        assert error_code(await api.http.post("/rollouts", json={"package": "fixr", "rings": ["nope"]})) == "DPM-E106"
        assert error_code(await api.http.post("/rollouts", json={"package": "nope", "rings": ["prod"]})) == "DPM-E276"

        cli = await dpm(api.url, auth, "updates", "rollout", "fixr", "--ring", "canary", "--ring", "prod", "--json")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        first = json.loads(cli.stdout)["rollout_id"]
        (canary,) = await orders_of(agents["c1"], 1)
        await report(up, canary, ok=False)
        halted = await rollout(api, first, "halted")
        assert halted["ring"] == 0 and "1 of 1 failed" in halted["message"], halted
        assert agents["p1"].orders == agents["p2"].orders == []  # the rest got nothing

        r = await api.http.post("/rollouts", json={"package": "fixs", "rings": ["canary", "prod"]})
        assert r.status_code == 202, r.text
        second = r.json()["rollout_id"]
        canary = (await orders_of(agents["c1"], 2))[1]
        assert [i.package.id for i in canary.install.items] == ["fixs"]  # type: ignore[union-attr]
        assert agents["p1"].orders == []  # prod waits for its canary
        await report(up, canary, ok=True)
        for name in ("p1", "p2"):
            (order,) = await orders_of(agents[name], 1)
            await report(up, order, ok=True)
        done = await rollout(api, second, "completed")
        assert done["message"] == "0 of 3 deliveries failed" and [g["machines"] for g in done["rings"]] == [1, 2]
        listed = await dpm(api.url, auth, "updates", "rollouts")
        assert listed.returncode == 0 and "halted" in listed.stdout and "completed" in listed.stdout
    await nc.close()


async def test_a_canary_that_never_reports_ends_with_its_lifetime_and_halts_the_rollout(
    api_service, updater_service, auth, nats_server, tmp_path
) -> None:
    agent = StandInAgent()
    nc = await nats.connect(nats_server.url)
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        rt = up.runtime
        assert (await api.http.put("/groups/canary", json={})).is_success
        r = await api.http.post("/machines", json={"name": "mute", "macs": ["52:54:0f:00:01:01"], "group": "canary"})
        machine = uuid.UUID(r.json()["machine_id"])
        await nc.subscribe(subjects.agent_command(machine, "install"), cb=agent.accept)
        await inventory(rt, machine)
        await append(rt, subjects.AGENT, machine, came_online(machine))
        await register(rt, tmp_path / "packages", "quiet", b"q")
        await eventually(lambda: api.http.get("/packages"), until=lambda r: len(r.json()) == 1, what="the catalogue")
        started = (await api.http.post("/rollouts", json={"package": "quiet", "rings": ["canary"]})).json()
        await orders_of(agent, 1)  # accepted, and then nothing: the agent died
        later = datetime.now(UTC) + auto.LIFETIME + timedelta(minutes=1)
        await rt.projections["deliveries"].wait_for(await rt.eventlog.head(), timeout=10)  # the grant, applied
        async with unit_of_work(rt.pool, rt.eventlog, cause=Metadata.new(actor="test"), actor="updater") as ctx:
            assert await auto.end_expired(ctx, later, rt.eventlog) == 1
        halted = await rollout(api, started["rollout_id"], "halted")
        assert "1 of 1 failed" in halted["message"], halted
        async with unit_of_work(rt.pool, rt.eventlog, cause=Metadata.new(actor="test"), actor="updater") as ctx:
            await rt.projections["deliveries"].wait_for(await rt.eventlog.head(), timeout=10)
            assert await auto.end_expired(ctx, later, rt.eventlog) == 0  # ended once
    await nc.close()
