"""Operator commands for an agent, over NATS: the api (and the scheduler, for reboot and shutdown
only) requests on ``subjects.agent_command(machine, action)``; the replica holding the machine's
session passes each command to the agent and answers with its result (or a timeout). A session that
was closed stays silent, so the machine's live session (maybe on another replica) answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from fastapi import WebSocketDisconnect
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dpm_agent_gateway.adapters.sessions import Session
from dpm_schemas import E, agent_protocol, subjects
from dpm_schemas.agent_protocol import Command, CommandResult

COMMAND_TIMEOUT = 120.0  # the api's own request timeout is normally shorter

Pending = dict[uuid.UUID, asyncio.Future[CommandResult]]  # command id -> the agent's result, awaited


class CommandRelay:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc

    async def attach(self, session: Session, pending: Pending) -> Subscription:
        """Relay the machine's commands to ``session`` from now on (subscribed and flushed: once the
        agent is welcomed, its commands reach it)."""
        subscription = await self._nc.subscribe(
            subjects.agent_command(session.machine_id, "*"), cb=forwarder(session, pending)
        )
        await self._nc.flush()
        return subscription


def forwarder(session: Session, pending: Pending) -> Callable[[Msg], Awaitable[None]]:
    async def forward(msg: Msg) -> None:
        """A command request from the api: pass it to the agent, answer with its result."""
        if session.ended:
            return
        try:
            cmd = agent_protocol.decode(msg.data)
            if not isinstance(cmd, Command):
                raise agent_protocol.FrameError("not a command")
            if msg.subject.rsplit(".", 1)[-1] != cmd.action.value:  # permissions are per action subject
                raise agent_protocol.FrameError(f"a {cmd.action.value} command on the subject of another action")
        except agent_protocol.FrameError as exc:
            failed = CommandResult(id=uuid.UUID(int=0), ok=False, code=E.INVALID_REQUEST.code, message=str(exc))
            await msg.respond(agent_protocol.encode(failed))
            return
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        pending[cmd.id] = future
        try:
            await session.send(agent_protocol.encode(cmd))
            result = await asyncio.wait_for(future, cmd.timeout or COMMAND_TIMEOUT)  # a large put_file takes longer
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
