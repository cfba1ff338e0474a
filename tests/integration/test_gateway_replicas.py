"""Presence across agent-gateway replicas: "last seen" is shared in PostgreSQL, so an agent that
reconnects to another replica stays online (the replica it left does not sweep it offline), and a
machine silent everywhere goes offline exactly once."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.agent_protocol import Facts

from .conftest import ENROLMENT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 1.5


async def transitions(database) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT type FROM events WHERE type IN ('MachineCameOnline', 'MachineWentOffline') ORDER BY position"
            )
        ).fetchall()
    return [r[0] for r in rows]


async def test_an_agent_moving_between_replicas_stays_online(gateway_service, database, tmp_path) -> None:
    settings = {"agent_gateway_heartbeat_interval": 0.3, "agent_gateway_heartbeat_timeout": TIMEOUT}
    a, b = gateway_service(**settings), gateway_service(**settings)
    facts = Facts(macs=("52:54:00:77:00:01",), smbios_uuid=uuid.uuid4(), hostname="mover", ips=("10.9.0.7",))

    def agent(port: int) -> Agent:
        config = AgentConfig(server=f"http://127.0.0.1:{port}", enrolment_token=ENROLMENT, state_dir=tmp_path,
                             inventory=False, max_backoff=0.5)  # fmt: skip
        return Agent(config, gather=lambda _c: facts, current_addresses=lambda: facts.ips)

    async with running(a), running(b):
        stop_a = asyncio.Event()
        on_a = asyncio.create_task(agent(a.port).run(stop_a))
        await eventually(lambda: transitions(database), until=lambda t: t == ["MachineCameOnline"], what="online")
        stop_a.set()
        await on_a
        stop_b = asyncio.Event()
        on_b = asyncio.create_task(agent(b.port).run(stop_b))
        await asyncio.sleep(3 * TIMEOUT)  # an observation window: replica a must not sweep it offline
        assert await transitions(database) == ["MachineCameOnline"]
        assert b.app.state.presence.connections and not a.app.state.presence.connections
        stop_b.set()
        await on_b
        final = await eventually(
            lambda: transitions(database), until=lambda t: len(t) == 2, timeout=10, what="offline once silent"
        )
        await asyncio.sleep(2 * TIMEOUT)
        assert final == await transitions(database) == ["MachineCameOnline", "MachineWentOffline"]
