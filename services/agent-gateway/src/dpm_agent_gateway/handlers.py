"""The gateway's handlers, message first: its reaction to the log on its router, and the command
handlers its routes call, with their dependencies in ``Gateway`` (built in bootstrap.py).

- ``token_revoked`` (durable "tokens"): an agent token was revoked -> close its live sessions. What
  the gateway keeps of such events (revocations, issued enrolment tokens) is the projection
  ``projections.Tokens``; what is left here acts on live sessions.
- ``enrol``: an agent exchanges an enrolment token for its own (``domain.enrolment`` says which
  machine it binds, and whether it may).
- ``authenticate``: the machine a presented agent token belongs to (None: refused).
- ``frame_received``: one frame of an agent's session -> presence, inventory, a command's result.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.adapters.commands import CommandRelay, Pending
from dpm_agent_gateway.adapters.sessions import Sessions
from dpm_agent_gateway.domain import enrolment
from dpm_agent_gateway.domain.tokens import token_hash
from dpm_agent_gateway.presence import Presence
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.projection import require_position
from dpm_schemas import E, Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import Addresses, CommandResult, Facts, Frame, Heartbeat, Inventory
from dpm_schemas.events import AgentEnrolled, AgentTokenRevoked
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
router = Router(service="agent-gateway")

TOKENS = "agent-gateway.tokens"  # the projection the sessions are checked against


@dataclass
class Gateway:
    """What the routes and their handlers need, built by the bootstrap once the runtime is connected."""

    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    sessions: Sessions
    presence: Presence
    commands: CommandRelay
    enrolment_secret: str | None  # DPM_AGENT_GATEWAY_ENROLMENT_TOKEN: the shared secret, if any
    heartbeat_interval: float
    heartbeat_timeout: float


@router.handles(AgentTokenRevoked, durable="tokens")
async def token_revoked(e: AgentTokenRevoked, ctx: Ctx, *, sessions: Sessions) -> None:
    """Once the projection refuses the token (and unbound enrolments of the machine) -- unless a bound
    enrolment came later -- drop the live connection if this replica holds it, and hint the other
    replicas to check theirs (their periodic check backs it up). Closing a WebSocket is I/O and never
    runs inside the transaction; checking before the projection applied the revocation would keep it."""
    await require_position(ctx.conn, TOKENS, ctx.position)

    async def close_sessions() -> None:
        await sessions.check([e.machine_id])
        await sessions.hint(e.machine_id)

    ctx.after_commit(close_sessions)


@dataclass(frozen=True)
class EnrolRequested:
    enrolment_token: str
    facts: Facts


async def enrol(m: EnrolRequested, *, gateway: Gateway) -> tuple[AgentEnrolled, str]:
    """Exchange an enrolment token -- one issued by an admin (single-use by default, maybe bound to a
    machine) or the gateway's shared secret -- for this machine's own token (returned with its
    AgentEnrolled); only its hash is kept."""
    expected = gateway.enrolment_secret
    shared = expected is not None and hmac.compare_digest(m.enrolment_token.encode(), expected.encode())
    token = secrets.token_urlsafe(32)
    async with gateway.pool.connection() as conn, conn.transaction():
        grant = enrolment.Grant() if shared else await _grant(conn, m.enrolment_token)
        event = await bind(conn, gateway.eventlog, grant, m.facts, token_hash(token))
    if grant.machine_id is not None:
        await gateway.sessions.hint(event.machine_id)  # the old token's sessions close, wherever they are
    log.info("agent enrolled for machine %s (%s)%s", event.machine_id, m.facts.hostname,
             ", replacing its token" if event.replaced else "")  # fmt: skip
    return event, token


async def _grant(conn: Conn, presented: str) -> enrolment.Grant:
    used = await store.use_enrolment_token(conn, presented)
    if used is None:
        raise E.ENROLMENT_REFUSED()
    return enrolment.Grant(token_id=used[0], machine_id=used[1])


async def bind(conn: Conn, eventlog: EventLog, grant: enrolment.Grant, facts: Facts, digest: str) -> AgentEnrolled:
    """Give the machine these facts name the token ``digest`` if the grant allows it, and record it --
    in the caller's transaction, so a refusal rolls back the use of the enrolment token."""
    found = await store.resolve(conn, facts, prefer=grant.machine_id)
    replaced = False
    if refused := enrolment.bound_refusal(grant, found, facts):
        log.warning("enrolment refused: token bound to %s presented by %s", grant.machine_id, enrolment.describe(facts))
        raise refused
    if grant.machine_id is not None:
        replaced = await store.replace_token(conn, found.machine_id, digest)
    elif (revoked := await store.claim_token(conn, found.machine_id, digest)) is not None:
        log.warning("enrolment refused: %s claims machine %s, which has an agent or was revoked",
                    enrolment.describe(facts), found.label)  # fmt: skip
        raise enrolment.claim_refusal(found, revoked=revoked)
    event = enrolment.enrolled(grant, found, facts, digest, replaced=replaced)
    meta = Metadata.new(actor="agent-gateway")
    appended = await eventlog.append(stream_id(subjects.AGENT, found.machine_id), ANY_VERSION,
                                     [NewEvent(event, meta)], conn=conn)  # fmt: skip
    await store.enrolled_at(conn, found.machine_id, appended.position)
    return event


async def authenticate(token: str, *, gateway: Gateway) -> uuid.UUID | None:
    """The machine whose current, unrevoked agent token this is."""
    async with gateway.pool.connection() as conn:
        return await store.machine_for_token(conn, token)


async def frame_received(frame: Frame, *, machine_id: uuid.UUID, presence: Presence, pending: Pending) -> None:
    """One frame from an agent after its hello; FrameError for a kind an agent does not send."""
    if isinstance(frame, Heartbeat):
        presence.heartbeat(machine_id)
    elif isinstance(frame, Addresses):
        await presence.addresses(machine_id, frame.ips)
    elif isinstance(frame, Inventory):
        await presence.inventory(machine_id, frame)
    elif isinstance(frame, CommandResult):
        if (waiting := pending.get(frame.id)) is not None and not waiting.done():
            waiting.set_result(frame)
    else:
        raise agent_protocol.FrameError(f"unexpected {type(frame).__name__}")
