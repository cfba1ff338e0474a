"""Agent identity (issue 12 item 3) and a robust agent socket (item 14): an unbound enrolment never
takes over a machine that has an agent or was revoked (MACs and SMBIOS UUIDs are claims, not proof);
a token bound to the machine at issue is the admin step that re-enrols it, and closes the old
token's session on every gateway replica; one live session per token (the newest wins); and any bad
frame closes only the session that sent it, with a code."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import agent_protocol, subjects
from dpm_schemas.agent_protocol import Action, Command, CommandResult, Facts, Heartbeat, Hello, Refused, Welcome
from dpm_schemas.events import AgentEnrolled

from .conftest import ENROLMENT

pytestmark = pytest.mark.integration

GATEWAY = {"agent_gateway_heartbeat_interval": 0.5, "agent_gateway_heartbeat_timeout": 10.0}
MAC, SMBIOS = "52:54:0e:00:00:01", uuid.UUID(int=0x1D << 64 | 1)
FACTS = Facts(macs=(MAC,), smbios_uuid=SMBIOS, hostname="victim", ips=("10.9.1.1",))


def real_agent(port: int, tmp: Path, facts: Facts = FACTS) -> tuple[Agent, Path]:
    files = tmp / "files"
    files.mkdir(exist_ok=True)
    config = AgentConfig(server=f"http://127.0.0.1:{port}", enrolment_token=ENROLMENT, state_dir=tmp / "state",
                         inventory=False, allowed_paths=(files,), max_backoff=0.5)  # fmt: skip
    return Agent(config, gather=lambda _c: facts, current_addresses=lambda: facts.ips), files


@dataclass
class Peer:
    """A hand-driven agent session: answers commands with its name, records a refusal and the close code."""

    ws: ClientConnection
    name: str
    refused: list[Refused] = field(default_factory=list)

    async def serve(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = agent_protocol.decode(raw)  # type: ignore[arg-type]
                if isinstance(frame, Command):
                    await self.ws.send(agent_protocol.encode(CommandResult(id=frame.id, ok=True, message=self.name)))
                elif isinstance(frame, Refused):
                    self.refused.append(frame)

    async def beat(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            for seq in range(10_000):
                await self.ws.send(agent_protocol.encode(Heartbeat(seq=seq)))
                await asyncio.sleep(0.5)

    async def closed(self) -> int | None:
        await asyncio.wait_for(self.ws.wait_closed(), 10)
        return self.ws.close_code


@contextlib.asynccontextmanager
async def peer(port: int, token: str, name: str, facts: Facts = FACTS) -> AsyncIterator[Peer]:
    url = f"ws://127.0.0.1:{port}{agent_protocol.AGENT_PATH}"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:
        await ws.send(agent_protocol.encode(Hello(agent_version="0.1.0", facts=facts)))
        assert isinstance(agent_protocol.decode(await ws.recv()), Welcome)  # type: ignore[arg-type]
        p = Peer(ws, name)
        tasks = [asyncio.create_task(p.serve()), asyncio.create_task(p.beat())]
        try:
            yield p
        finally:
            for t in tasks:
                t.cancel()


async def enrol(gw, token: str, facts: Facts = FACTS):  # type: ignore[no-untyped-def]
    body = {"enrolment_token": token, "facts": facts.model_dump(mode="json")}
    return await gw.http.post(agent_protocol.ENROL_PATH, json=body)


async def issue(api, **body: object) -> str:  # type: ignore[no-untyped-def]
    """A new enrolment token (the gateway learns it from the log a moment later)."""
    r = await api.http.post("/agents/enrolment-tokens", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def known(r) -> bool:  # type: ignore[no-untyped-def]
    """The gateway knows the enrolment token (whatever it then decided)."""
    return bool(r.status_code != 403 or r.json()["error"]["code"] != "DPM-E403")


async def who_answers(nc, machine_id: str) -> str:  # type: ignore[no-untyped-def]
    cmd = Command(id=uuid.uuid4(), action=Action.LIST_DIR, path="/")
    reply = await nc.request(subjects.agent_command(machine_id, cmd.action), agent_protocol.encode(cmd), timeout=5)
    result = agent_protocol.decode(reply.data)
    assert isinstance(result, CommandResult)
    return result.message


async def register(api, name: str = "victim", mac: str = MAC, smbios: uuid.UUID | None = SMBIOS) -> str:  # type: ignore[no-untyped-def]
    body = {"name": name, "macs": [mac], **({"smbios_uuid": str(smbios)} if smbios else {})}
    r = await api.http.post("/machines", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["machine_id"])


async def test_an_impostor_with_an_unbound_token_cannot_take_over_an_enrolled_machine(
    api_service, gateway_service, auth, tmp_path
) -> None:
    gateway = gateway_service(**GATEWAY)
    async with running(api_service(), headers=auth) as api, running(gateway) as gw:
        machine_id = await register(api)
        agent, files = real_agent(gateway.port, tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await eventually(lambda: api.http.get(f"/machines/{machine_id}"), until=lambda r: r.json()["online"],
                         what="the real agent online")  # fmt: skip
        real_token = (tmp_path / "state" / "token").read_text()

        fresh = await issue(api, uses=3)
        by_mac = Facts(macs=(MAC, "52:54:0e:00:00:99"), hostname="impostor")
        by_smbios = Facts(macs=("52:54:0e:00:00:98",), smbios_uuid=SMBIOS, hostname="impostor")
        for facts, token in ((by_mac, fresh), (by_smbios, fresh), (by_mac, ENROLMENT)):
            refused = await eventually(lambda f=facts, t=token: enrol(gw, t, f), until=known, what="the token known")
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "DPM-E123"
            assert "dpm agents enrolment-token --machine victim" in error["remedy"]

        # nothing changed for the real agent: same token, same session, and it still takes commands
        assert (tmp_path / "state" / "token").read_text() == real_token and agent.sessions == 1
        (files / "a.txt").write_text("x")
        listed = await api.http.post(
            f"/machines/{machine_id}/commands", json={"action": "list_dir", "path": str(files)}
        )
        assert listed.status_code == 200 and [e["name"] for e in listed.json()["entries"]] == ["a.txt"]
        assert agent.sessions == 1 and (await api.http.get(f"/machines/{machine_id}")).json()["online"]
        enrolled = [e.event for e in await api.runtime.eventlog.read_all() if isinstance(e.event, AgentEnrolled)]
        assert [e.machine_id for e in enrolled] == [uuid.UUID(machine_id)]
        # the refusals did not use the token up: it still enrols three new machines, not a fourth
        for i in range(3):
            new = Facts(macs=(f"52:54:0e:00:01:0{i}",), hostname=f"new-{i}")
            assert (await enrol(gw, fresh, new)).status_code == 200
        assert (await enrol(gw, fresh, Facts(macs=("52:54:0e:00:01:09",), hostname="x"))).status_code == 403
        stop.set()
        await task


async def test_a_revoked_machine_re_enrols_only_through_a_token_bound_to_it(
    api_service, gateway_service, auth, tmp_path
) -> None:
    async with running(api_service(), headers=auth) as api, running(gateway_service(**GATEWAY)) as gw:
        machine_id = await register(api)
        first = await enrol(gw, ENROLMENT)
        assert first.status_code == 200 and first.json()["machine_id"] == machine_id
        never = await register(api, "never-enrolled", "52:54:0e:00:00:02", None)
        for m in (machine_id, never):
            assert (await api.http.post(f"/machines/{m}/agent/revoke")).status_code == 202

        async def refused_code(facts: Facts) -> str:
            r = await enrol(gw, ENROLMENT, facts)
            return str(r.json()["error"]["code"]) if r.status_code == 403 else f"HTTP {r.status_code}"

        await eventually(lambda: refused_code(FACTS), until=lambda c: c == "DPM-E124", what="victim refused")
        other = Facts(macs=("52:54:0e:00:00:02",), hostname="never-enrolled")
        await eventually(lambda: refused_code(other), until=lambda c: c == "DPM-E124", what="revoked, no token")

        bound = await issue(api, machine="victim")
        wrong = await eventually(lambda: enrol(gw, bound, other), until=known, what="the bound token known")
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "DPM-E125"  # bound to another machine
        again = await enrol(gw, bound)
        assert again.status_code == 200 and again.json()["machine_id"] == machine_id
        async with peer(gw.service.port, again.json()["token"], "re-enrolled") as p:
            assert await who_answers(api.runtime.nc, machine_id) == "re-enrolled"
            assert not p.refused


async def test_a_bound_re_enrolment_closes_the_old_session_on_another_replica(
    api_service, gateway_service, auth
) -> None:
    a, b = gateway_service(**GATEWAY), gateway_service(**GATEWAY)
    async with running(api_service(), headers=auth) as api, running(a), running(b) as gw_b:
        machine_id = await register(api)
        old = (await enrol(gw_b, ENROLMENT)).json()["token"]
        async with peer(a.port, old, "old") as on_a:
            assert await who_answers(api.runtime.nc, machine_id) == "old"
            bound = await issue(api, machine=machine_id)
            await eventually(lambda: enrol(gw_b, bound), until=lambda r: r.status_code == 200, what="re-enrolled")
            assert await on_a.closed() == agent_protocol.CLOSE_UNAUTHORIZED  # replica a learnt it
            assert [r.code for r in on_a.refused] == ["DPM-E402"]
        enrolled = [e.event for e in await api.runtime.eventlog.read_all() if isinstance(e.event, AgentEnrolled)]
        assert [(e.replaced, e.enrolment_token_id is not None) for e in enrolled] == [(False, False), (True, True)]


async def test_one_live_session_per_token_the_newest_wins(api_service, gateway_service, auth) -> None:
    a, b = gateway_service(**GATEWAY), gateway_service(**GATEWAY)
    async with running(api_service(), headers=auth) as api, running(a), running(b) as gw_b:
        machine_id = await register(api)
        token = (await enrol(gw_b, ENROLMENT)).json()["token"]
        async with peer(a.port, token, "first") as first, peer(b.port, token, "second") as second:
            assert await first.closed() == agent_protocol.CLOSE_REPLACED  # across replicas
            assert [r.code for r in first.refused] == ["DPM-E126"]
            assert await who_answers(api.runtime.nc, machine_id) == "second"
            async with peer(b.port, token, "third") as third:
                assert await second.closed() == agent_protocol.CLOSE_REPLACED  # on the same replica
                assert await who_answers(api.runtime.nc, machine_id) == "third"
                live = [s for g in (a, b) for s in g.app.state.presence.connections.values()]
                assert len(live) == 1 and not third.refused


async def test_a_bad_frame_closes_only_its_own_session(api_service, gateway_service, auth, tmp_path) -> None:
    gateway = gateway_service(**GATEWAY)
    async with running(api_service(), headers=auth) as api, running(gateway) as gw:
        good_id = await register(api)
        good = (await enrol(gw, ENROLMENT)).json()["token"]
        bad_frames: list[str | bytes] = [
            "hello?",  # a text frame
            b"\xc1\xff garbage",  # not msgpack
            agent_protocol.encode(Welcome(machine_id=uuid.uuid4(), heartbeat_interval=1, server_version="x")),
            b"\x00" * (agent_protocol.MAX_FRAME + 1),  # oversized
        ]
        async with peer(gateway.port, good, "good") as served:
            for i, frame in enumerate(bad_frames):
                facts = Facts(macs=(f"52:54:0e:00:02:0{i}",), hostname=f"bad-{i}")
                token = (await enrol(gw, ENROLMENT, facts)).json()["token"]
                async with peer(gateway.port, token, f"bad-{i}", facts) as bad:
                    await bad.ws.send(frame)
                    assert await bad.closed() == agent_protocol.CLOSE_PROTOCOL, frame[:20]
                    assert [r.code for r in bad.refused] == ["DPM-E127"]
                assert await who_answers(api.runtime.nc, good_id) == "good"  # the others are still served
            assert not served.refused


async def test_a_command_on_the_subject_of_another_action_is_refused(api_service, gateway_service, auth) -> None:
    """NATS lets the scheduler publish only reboot and shutdown subjects: a file command sent on one of
    them must not reach the agent, or its credential would be as strong as an operator's."""
    gateway = gateway_service(**GATEWAY)
    async with running(api_service(), headers=auth) as api, running(gateway) as gw:
        machine_id = await register(api)
        token = (await enrol(gw, ENROLMENT)).json()["token"]
        async with peer(gateway.port, token, "agent") as agent:
            cmd = Command(id=uuid.uuid4(), action=Action.LIST_DIR, path="/")
            subject = subjects.agent_command(machine_id, Action.REBOOT)
            reply = await api.runtime.nc.request(subject, agent_protocol.encode(cmd), timeout=5)
            result = agent_protocol.decode(reply.data)
            assert isinstance(result, CommandResult) and not result.ok and result.code == "DPM-E100"
            assert "another action" in result.message
            assert await who_answers(api.runtime.nc, machine_id) == "agent"  # the right subject still works
            assert not agent.refused
