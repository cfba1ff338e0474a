"""The gateway's token stores are a projection of the log (issue 13), and a rebuild of it changes
nothing an enrolment decided: a spent enrolment-token use stays spent, a revoked agent token stays
refused, and the bound re-enrolment that lifted a revocation keeps it lifted; rebuilt == live."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.projections import Tokens
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.projection import ProjectionRunner, rebuild
from dpm_runtime.registry import Qualified
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import AgentEnrolled, AgentTokenRevoked, EnrolmentTokenIssued
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration

TOKENS = Qualified("agent-gateway", Tokens())


async def append(eventlog, stream: str, event) -> int:
    return (await eventlog.append(stream, ANY_VERSION, [NewEvent(event, Metadata.new(actor="test"))])).position


async def rows(pool) -> dict[str, list[tuple]]:
    async with pool.connection() as conn:
        return {
            t: await (await conn.execute(f"SELECT * FROM {store.SCHEMA}.{t} ORDER BY 1".encode())).fetchall()
            for t in Tokens.tables
        }


async def enrol(pool, eventlog, machine: uuid.UUID, token: str, *, bound: bool) -> None:
    """What ``enrolment.bind`` does with the store: the token row, the event, its position."""
    digest = store.token_hash(token)
    async with pool.connection() as conn, conn.transaction():
        if bound:
            await store.replace_token(conn, machine, digest)
        else:
            assert await store.claim_token(conn, machine, digest) is None
        event = AgentEnrolled(machine_id=machine, token_sha256=digest, hostname="h", registered=True)
        done = await eventlog.append(
            stream_id(subjects.AGENT, machine), ANY_VERSION, [NewEvent(event, Metadata.new(actor="t"))], conn=conn
        )
        await store.enrolled_at(conn, machine, done.position)


async def machine_for(pool, token: str) -> uuid.UUID | None:
    async with pool.connection() as conn:
        return await store.machine_for_token(conn, token)


async def test_a_rebuild_of_the_tokens_projection_undoes_no_enrolment(pool, eventlog) -> None:
    async with pool.connection() as conn:
        for statement in store.DDL:
            await conn.execute(statement.encode())
    runner = ProjectionRunner(TOKENS, pool=pool, eventlog=eventlog)
    await runner.setup()
    once = EnrolmentTokenIssued(
        token_id=uuid.uuid4(), token_sha256=store.token_hash("once"), expires_at=datetime.now(UTC) + timedelta(hours=1),
        uses=1,
    )  # fmt: skip
    await append(eventlog, stream_id(subjects.ENROLMENT, once.token_id), once)
    await runner.step()
    async with pool.connection() as conn, conn.transaction():
        assert await store.use_enrolment_token(conn, "once") == (once.token_id, None)
        assert await store.use_enrolment_token(conn, "once") is None  # single use

    revoked, lifted = uuid.uuid4(), uuid.uuid4()
    await enrol(pool, eventlog, revoked, "agent-a", bound=False)
    await enrol(pool, eventlog, lifted, "agent-b", bound=False)
    for machine in (revoked, lifted):
        await append(eventlog, stream_id(subjects.AGENT, machine), AgentTokenRevoked(machine_id=machine))
    await runner.step()
    assert await machine_for(pool, "agent-a") is None and await machine_for(pool, "agent-b") is None
    await enrol(pool, eventlog, lifted, "agent-b2", bound=True)  # the admin's bound re-enrolment
    await runner.step()
    assert await machine_for(pool, "agent-b2") == lifted
    async with pool.connection() as conn:  # an unbound enrolment cannot claim a revoked machine
        assert await store.claim_token(conn, revoked, store.token_hash("thief")) is True

    live = await rows(pool)
    await rebuild(TOKENS, pool=pool, eventlog=eventlog)
    assert await rows(pool) == live
    assert await machine_for(pool, "agent-a") is None and await machine_for(pool, "agent-b2") == lifted
    async with pool.connection() as conn, conn.transaction():
        assert await store.use_enrolment_token(conn, "once") is None  # the spent use stays spent
