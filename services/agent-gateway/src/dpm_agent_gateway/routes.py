"""The agent endpoint: one-time enrolment over HTTP, then one authenticated WebSocket per agent.

Whatever a peer sends on the WebSocket -- a text frame, bytes that are not msgpack, an oversized or
unknown frame, a frame of the wrong kind -- is a protocol error of that session only: it is logged,
answered with a Refused frame (DPM-E127) and closed with CLOSE_PROTOCOL; nothing escapes the handler,
so the gateway keeps serving every other agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from nats.aio.msg import Msg
from pydantic import BaseModel, Field, ValidationError

from dpm_agent_gateway import enrolment, store
from dpm_agent_gateway.presence import Presence
from dpm_agent_gateway.sessions import Session, Sessions
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime
from dpm_schemas import E, agent_protocol, subjects
from dpm_schemas.agent_protocol import (
    Addresses,
    Command,
    CommandResult,
    Facts,
    Frame,
    Heartbeat,
    Hello,
    Inventory,
    Refused,
    Welcome,
)
from dpm_schemas.version import DPM_VERSION

log = logging.getLogger(__name__)
router = APIRouter(tags=["agents"])
COMMAND_TIMEOUT = 120.0  # the api's own request timeout is normally shorter
HELLO_TIMEOUT = 10.0
CLOSE_INTERNAL = 1011  # WebSocket "internal error": this session only


class EnrolIn(BaseModel):
    enrolment_token: str = Field(max_length=256)
    facts: Facts


class EnrolOut(BaseModel):
    machine_id: uuid.UUID
    token: str


@router.post(agent_protocol.ENROL_PATH, response_model=EnrolOut)
async def enrol(body: EnrolIn, request: Request) -> EnrolOut:
    """Exchange an enrolment token -- one issued by an admin (single-use by default, maybe bound to a
    machine) or the gateway's shared secret -- for this machine's own token; only its hash is kept.
    See ``enrolment`` for which machines a token may enrol."""
    rt: Runtime | None = request.app.state.runtime
    sessions: Sessions | None = request.app.state.sessions
    expected: str | None = request.app.state.enrolment_token
    if rt is None or sessions is None:
        raise E.NOT_READY(service="agent-gateway", reason="still connecting")
    shared = expected is not None and hmac.compare_digest(body.enrolment_token.encode(), expected.encode())
    token = secrets.token_urlsafe(32)
    async with rt.pool.connection() as conn, conn.transaction():
        grant = enrolment.Grant() if shared else await _grant(conn, body.enrolment_token)
        event = await enrolment.bind(conn, rt.eventlog, grant, body.facts, store.token_hash(token))
    if grant.machine_id is not None:
        await sessions.hint(event.machine_id)  # the old token's sessions close, wherever they are
    log.info("agent enrolled for machine %s (%s)%s", event.machine_id, body.facts.hostname,
             ", replacing its token" if event.replaced else "")  # fmt: skip
    return EnrolOut(machine_id=event.machine_id, token=token)


async def _grant(conn: Conn, presented: str) -> enrolment.Grant:
    used = await store.use_enrolment_token(conn, presented)
    if used is None:
        raise E.ENROLMENT_REFUSED()
    return enrolment.Grant(token_id=used[0], machine_id=used[1])


async def _refuse(ws: WebSocket, code: int, refused: Refused) -> None:
    with contextlib.suppress(Exception):
        await ws.send_bytes(agent_protocol.encode(refused))
        await ws.close(code=code)


def _protocol_error(reason: object) -> Refused:
    err = E.AGENT_PROTOCOL_ERROR(reason=str(reason)[:300])
    return Refused(code=err.code, message=err.message)


async def receive_frame(ws: WebSocket, timeout: float) -> Frame:
    """The next frame; FrameError for anything but a binary frame of this protocol."""
    async with asyncio.timeout(timeout):
        message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data = message.get("bytes")
    if data is None:
        raise agent_protocol.FrameError("a text frame; frames are binary (msgpack)")
    return agent_protocol.decode(data)


async def _authenticate(ws: WebSocket, rt: Runtime) -> Session | None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    async with rt.pool.connection() as conn:
        machine_id = await store.machine_for_token(conn, token) if scheme.lower() == "bearer" and token else None
    if machine_id is None:
        err = E.AGENT_TOKEN_REFUSED(detail="")
        await _refuse(ws, agent_protocol.CLOSE_UNAUTHORIZED, Refused(code=err.code, message=err.message))
        return None

    async def hangup(code: int) -> None:
        await ws.close(code=code)

    return Session(machine_id=machine_id, token_sha256=store.token_hash(token), transmit=ws.send_bytes, hangup=hangup)


async def _hello(ws: WebSocket) -> Hello | None:
    try:
        hello = await receive_frame(ws, HELLO_TIMEOUT)
        if not isinstance(hello, Hello) or hello.protocol != agent_protocol.PROTOCOL_VERSION:
            raise agent_protocol.FrameError(f"expected hello of protocol {agent_protocol.PROTOCOL_VERSION}")
    except (TimeoutError, agent_protocol.FrameError, WebSocketDisconnect, RuntimeError) as exc:
        log.warning("agent refused before hello: %s", exc or type(exc).__name__)
        await _refuse(ws, agent_protocol.CLOSE_PROTOCOL, _protocol_error(f"bad hello: {exc!r}"))
        return None
    return hello


@router.websocket(agent_protocol.AGENT_PATH)
async def agent_socket(ws: WebSocket) -> None:
    rt: Runtime | None = ws.app.state.runtime
    presence: Presence | None = ws.app.state.presence
    sessions: Sessions | None = ws.app.state.sessions
    await ws.accept()
    if rt is None or presence is None or sessions is None:
        await ws.close(code=1013)  # try again later
        return
    if (session := await _authenticate(ws, rt)) is None or (hello := await _hello(ws)) is None:
        return
    try:
        await sessions.open(session)  # a session of the same token elsewhere is closed: newest wins
        await _serve(ws, rt, presence, session, hello)
    except Exception:  # this session only; the gateway serves the others
        log.exception("agent session of machine %s failed", session.machine_id)
        await session.end(CLOSE_INTERNAL)
    finally:
        presence.disconnected(session)


async def _serve(ws: WebSocket, rt: Runtime, presence: Presence, session: Session, hello: Hello) -> None:
    """Welcome the agent, relay its commands, and take its frames until it leaves or errs."""
    settings = ws.app.state.gateway_settings
    pending: dict[uuid.UUID, asyncio.Future[CommandResult]] = {}
    subscription = None
    welcome = Welcome(machine_id=session.machine_id, heartbeat_interval=settings.agent_gateway_heartbeat_interval,
                      server_version=DPM_VERSION)  # fmt: skip
    try:
        await presence.hello(session.machine_id, hello)
        forward = _forwarder(session, pending)
        subscription = await rt.nc.subscribe(subjects.agent_command(session.machine_id), cb=forward)
        await rt.nc.flush()  # once welcomed, the agent's commands reach it
        await session.send(agent_protocol.encode(welcome))
        while not session.ended:
            frame = await receive_frame(ws, settings.agent_gateway_heartbeat_timeout)
            await _take(presence, session.machine_id, frame, pending)
    except (WebSocketDisconnect, TimeoutError, RuntimeError) as exc:  # the presence sweep decides when it is offline
        log.info("agent session of machine %s ended: %r", session.machine_id, exc)
    except (agent_protocol.FrameError, ValidationError) as exc:
        log.warning("agent session of machine %s closed: protocol error: %s", session.machine_id, exc)
        await session.end(agent_protocol.CLOSE_PROTOCOL, _protocol_error(exc))
    finally:
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def _take(
    presence: Presence, machine_id: uuid.UUID, frame: Frame, pending: dict[uuid.UUID, asyncio.Future[CommandResult]]
) -> None:
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


def _forwarder(
    session: Session, pending: dict[uuid.UUID, asyncio.Future[CommandResult]]
) -> Callable[[Msg], Awaitable[None]]:
    async def forward(msg: Msg) -> None:
        """A command request from the api: pass it to the agent, answer with its result. A session
        that was closed stays silent, so the machine's live session (maybe on another replica) answers."""
        if session.ended:
            return
        try:
            cmd = agent_protocol.decode(msg.data)
            if not isinstance(cmd, Command):
                raise agent_protocol.FrameError("not a command")
        except agent_protocol.FrameError as exc:
            failed = CommandResult(id=uuid.UUID(int=0), ok=False, code=E.INVALID_REQUEST.code, message=str(exc))
            await msg.respond(agent_protocol.encode(failed))
            return
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        pending[cmd.id] = future
        try:
            await session.send(agent_protocol.encode(cmd))
            result = await asyncio.wait_for(future, COMMAND_TIMEOUT)
        except (TimeoutError, RuntimeError, WebSocketDisconnect) as exc:
            if session.ended:
                return
            result = CommandResult(
                id=cmd.id, ok=False, code=E.AGENT_TIMEOUT.code, message=f"agent did not answer: {exc!r}"
            )
        finally:
            pending.pop(cmd.id, None)
        await msg.respond(agent_protocol.encode(result))

    return forward
