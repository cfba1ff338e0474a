"""The agent endpoint: one-time enrolment over HTTP, then one authenticated WebSocket per agent."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import uuid

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from nats.aio.msg import Msg
from pydantic import BaseModel

from dpm_agent_gateway import store
from dpm_agent_gateway.presence import Presence
from dpm_runtime.eventlog import ANY_VERSION, Conn
from dpm_runtime.service import Runtime
from dpm_schemas import E, Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import (
    Addresses,
    Command,
    CommandResult,
    Facts,
    Heartbeat,
    Hello,
    Inventory,
    Refused,
    Welcome,
)
from dpm_schemas.events import AgentEnrolled
from dpm_schemas.ids import machine_key, stream_id
from dpm_schemas.version import DPM_VERSION

log = logging.getLogger(__name__)
router = APIRouter(tags=["agents"])
COMMAND_TIMEOUT = 120.0  # the api's own request timeout is normally shorter


class EnrolIn(BaseModel):
    enrolment_token: str
    facts: Facts


class EnrolOut(BaseModel):
    machine_id: uuid.UUID
    token: str


async def resolve_machine(conn: Conn, facts: Facts) -> tuple[uuid.UUID, bool]:
    """The registered machine owning any of these MACs or this SMBIOS UUID (True); else the natural
    key the api will register it under (False)."""
    cur = await conn.execute(
        f"SELECT machine_id FROM {store.SCHEMA}.machine_directory WHERE NOT deleted AND"
        " (macs && %s OR (smbios_uuid IS NOT NULL AND smbios_uuid = %s)) ORDER BY position LIMIT 1",
        (list(facts.macs), facts.smbios_uuid),
    )
    row = await cur.fetchone()
    if row:
        return row[0], True
    return machine_key(mac=facts.macs[0], smbios_uuid=facts.smbios_uuid), False


@router.post(agent_protocol.ENROL_PATH, response_model=EnrolOut)
async def enrol(body: EnrolIn, request: Request) -> EnrolOut:
    """Exchange an enrolment token -- one issued by an admin (single-use by default) or the gateway's shared
    secret -- for this machine's own token; only its hash is kept."""
    rt: Runtime | None = request.app.state.runtime
    expected: str | None = request.app.state.enrolment_token
    if rt is None:
        raise E.NOT_READY(service="agent-gateway", reason="still connecting")
    shared = expected is not None and hmac.compare_digest(body.enrolment_token.encode(), expected.encode())
    token = secrets.token_urlsafe(32)
    async with rt.pool.connection() as conn, conn.transaction():
        if not shared and not await store.use_enrolment_token(conn, body.enrolment_token):
            raise E.ENROLMENT_REFUSED()
        machine_id, registered = await resolve_machine(conn, body.facts)
        digest = store.token_hash(token)
        await store.save_token(conn, machine_id, digest)
        event = AgentEnrolled(
            machine_id=machine_id,
            token_sha256=digest,
            hostname=body.facts.hostname,
            macs=body.facts.macs,
            smbios_uuid=body.facts.smbios_uuid,
            registered=registered,
        )
        await rt.eventlog.append(
            stream_id(subjects.AGENT, machine_id),
            ANY_VERSION,
            [NewEvent(event, Metadata.new(actor="agent-gateway"))],
            conn=conn,
        )
    log.info("agent enrolled for machine %s (%s)", machine_id, body.facts.hostname)
    return EnrolOut(machine_id=machine_id, token=token)


async def _refuse(ws: WebSocket, code: int, refused: Refused) -> None:
    with contextlib.suppress(Exception):
        await ws.send_bytes(agent_protocol.encode(refused))
        await ws.close(code=code)


@router.websocket(agent_protocol.AGENT_PATH)
async def agent_socket(ws: WebSocket) -> None:
    rt: Runtime | None = ws.app.state.runtime
    presence: Presence | None = ws.app.state.presence
    await ws.accept()
    if rt is None or presence is None:
        await ws.close(code=1013)  # try again later
        return
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    async with rt.pool.connection() as conn:
        machine_id = await store.machine_for_token(conn, token) if scheme.lower() == "bearer" and token else None
    if machine_id is None:
        err = E.AGENT_TOKEN_REFUSED(detail="")
        await _refuse(ws, agent_protocol.CLOSE_UNAUTHORIZED, Refused(code=err.code, message=err.message))
        return
    settings = ws.app.state.gateway_settings
    try:
        async with asyncio.timeout(10):
            hello = agent_protocol.decode(await ws.receive_bytes())
        if not isinstance(hello, Hello) or hello.protocol != agent_protocol.PROTOCOL_VERSION:
            raise agent_protocol.FrameError(f"expected hello of protocol {agent_protocol.PROTOCOL_VERSION}")
    except (TimeoutError, agent_protocol.FrameError, WebSocketDisconnect, KeyError) as exc:
        await _refuse(ws, agent_protocol.CLOSE_PROTOCOL, Refused(code="DPM-E100", message=f"bad hello: {exc}"))
        return

    async def close() -> None:
        await ws.close(code=agent_protocol.CLOSE_UNAUTHORIZED)

    await presence.hello(machine_id, hello, close)
    pending: dict[uuid.UUID, asyncio.Future[CommandResult]] = {}
    send_lock = asyncio.Lock()

    async def forward(msg: Msg) -> None:
        """A command request from the api: pass it to the agent, answer with its result."""
        try:
            cmd = agent_protocol.decode(msg.data)
            if not isinstance(cmd, Command):
                raise agent_protocol.FrameError("not a command")
        except agent_protocol.FrameError as exc:
            await msg.respond(
                agent_protocol.encode(CommandResult(id=uuid.UUID(int=0), ok=False, code="DPM-E100", message=str(exc)))
            )
            return
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        pending[cmd.id] = future
        try:
            async with send_lock:
                await ws.send_bytes(agent_protocol.encode(cmd))
            result = await asyncio.wait_for(future, COMMAND_TIMEOUT)
        except (TimeoutError, RuntimeError, WebSocketDisconnect) as exc:
            result = CommandResult(id=cmd.id, ok=False, code="DPM-E121", message=f"agent did not answer: {exc!r}")
        finally:
            pending.pop(cmd.id, None)
        await msg.respond(agent_protocol.encode(result))

    subscription = await rt.nc.subscribe(subjects.agent_command(machine_id), cb=forward)
    await ws.send_bytes(
        agent_protocol.encode(
            Welcome(
                machine_id=machine_id,
                heartbeat_interval=settings.agent_gateway_heartbeat_interval,
                server_version=DPM_VERSION,
            )
        )
    )
    try:
        while True:
            async with asyncio.timeout(settings.agent_gateway_heartbeat_timeout):
                frame = agent_protocol.decode(await ws.receive_bytes())
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
    except (WebSocketDisconnect, TimeoutError, RuntimeError):
        pass  # gone or silent: the presence sweep decides when it is offline
    except agent_protocol.FrameError as exc:
        await _refuse(ws, agent_protocol.CLOSE_PROTOCOL, Refused(code="DPM-E100", message=str(exc)))
    finally:
        presence.disconnected(machine_id, close)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
