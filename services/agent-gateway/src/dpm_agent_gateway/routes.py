"""The agent endpoint: one-time enrolment over HTTP, then one authenticated WebSocket per agent.

Whatever a peer sends on the WebSocket -- a text frame, bytes that are not msgpack, an oversized or
unknown frame, a frame of the wrong kind -- is a protocol error of that session only: it is logged,
answered with a Refused frame (DPM-E127) and closed with CLOSE_PROTOCOL; nothing escapes the handler,
so the gateway keeps serving every other agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError

from dpm_agent_gateway import handlers
from dpm_agent_gateway.adapters.commands import Pending
from dpm_agent_gateway.adapters.sessions import Session
from dpm_agent_gateway.domain.tokens import token_hash
from dpm_agent_gateway.handlers import EnrolRequested, Gateway
from dpm_runtime.http import bearer
from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import Facts, Frame, Hello, Refused, Welcome
from dpm_schemas.version import DPM_VERSION

log = logging.getLogger(__name__)
router = APIRouter(tags=["agents"])
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
    """Exchange an enrolment token for this machine's own token (``handlers.enrol``); see
    ``domain.enrolment`` for which machines a token may enrol."""
    gateway: Gateway | None = request.app.state.gateway
    if gateway is None:
        raise E.NOT_READY(service="agent-gateway", reason="still connecting")
    event, token = await handlers.enrol(EnrolRequested(body.enrolment_token, body.facts), gateway=gateway)
    return EnrolOut(machine_id=event.machine_id, token=token)


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


async def _authenticate(ws: WebSocket, gateway: Gateway) -> Session | None:
    token = bearer(ws.headers)
    machine_id = await handlers.authenticate(token, gateway=gateway) if token else None
    if token is None or machine_id is None:
        err = E.AGENT_TOKEN_REFUSED(detail="")
        await _refuse(ws, agent_protocol.CLOSE_UNAUTHORIZED, Refused(code=err.code, message=err.message))
        return None

    async def hangup(code: int) -> None:
        await ws.close(code=code)

    return Session(machine_id=machine_id, token_sha256=token_hash(token), transmit=ws.send_bytes, hangup=hangup)


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
    gateway: Gateway | None = ws.app.state.gateway
    await ws.accept()
    if gateway is None:
        await ws.close(code=1013)  # try again later
        return
    if (session := await _authenticate(ws, gateway)) is None or (hello := await _hello(ws)) is None:
        return
    try:
        await gateway.sessions.open(session)  # a session of the same token elsewhere is closed: newest wins
        await _serve(ws, gateway, session, hello)
    except Exception:  # this session only; the gateway serves the others
        log.exception("agent session of machine %s failed", session.machine_id)
        await session.end(CLOSE_INTERNAL)
    finally:
        gateway.presence.disconnected(session)


async def _serve(ws: WebSocket, gateway: Gateway, session: Session, hello: Hello) -> None:
    """Welcome the agent, relay its commands, and take its frames until it leaves or errs."""
    presence, subscription = gateway.presence, None
    pending: Pending = {}
    welcome = Welcome(machine_id=session.machine_id, heartbeat_interval=gateway.heartbeat_interval,
                      server_version=DPM_VERSION)  # fmt: skip
    try:
        await presence.hello(session.machine_id, hello)
        subscription = await gateway.commands.attach(session, pending)  # once welcomed, its commands reach it
        await session.send(agent_protocol.encode(welcome))
        while not session.ended:
            frame = await receive_frame(ws, gateway.heartbeat_timeout)
            await handlers.frame_received(frame, machine_id=session.machine_id, presence=presence, pending=pending)
    except (WebSocketDisconnect, TimeoutError, RuntimeError) as exc:  # the presence sweep decides when it is offline
        log.info("agent session of machine %s ended: %r", session.machine_id, exc)
    except (agent_protocol.FrameError, ValidationError) as exc:
        log.warning("agent session of machine %s closed: protocol error: %s", session.machine_id, exc)
        await session.end(agent_protocol.CLOSE_PROTOCOL, _protocol_error(exc))
    finally:
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
