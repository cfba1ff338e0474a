"""Commands to a machine's agent: recorded (issued, completed) in the log, carried by a NATS request to
the gateway replica that holds the agent's connection. No responder means the machine is offline."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import nats.errors

from dpm_api import packages
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.service import Runtime
from dpm_schemas import E, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import Command, CommandResult, FileFetch
from dpm_schemas.events import AgentCommandCompleted, AgentCommandIssued, FileTransferGranted
from dpm_schemas.ids import stream_id


async def require_machine(rt: Runtime, machine_id: uuid.UUID) -> None:
    async with rt.pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM api.machines WHERE machine_id = %s", (machine_id,))
        if await cur.fetchone() is None:
            raise E.MACHINE_NOT_FOUND(machine_id=machine_id)


async def send(rt: Runtime, machine_id: uuid.UUID, cmd: Command, *, timeout: float, actor: str) -> CommandResult:
    await require_machine(rt, machine_id)
    sid = stream_id(subjects.COMMAND, machine_id)
    meta = command_metadata(actor)  # the request's conversation, for both events
    issued = AgentCommandIssued(
        command_id=cmd.id,
        machine_id=machine_id,
        action=cmd.action.value,
        path=cmd.path,
        size=cmd.fetch.size if cmd.fetch else len(cmd.content or b""),
    )
    await rt.eventlog.append(sid, ANY_VERSION, [NewEvent(issued, meta)])
    try:
        subject = subjects.agent_command(machine_id, cmd.action)
        reply = await rt.nc.request(subject, agent_protocol.encode(cmd), timeout=timeout)
        result = agent_protocol.decode(reply.data)
        assert isinstance(result, CommandResult)
    except nats.errors.NoRespondersError:
        result = CommandResult(id=cmd.id, ok=False, code=E.AGENT_OFFLINE.code, message="no agent connected")
    except nats.errors.TimeoutError:
        result = CommandResult(id=cmd.id, ok=False, code=E.AGENT_TIMEOUT.code, message=f"no answer in {timeout} s")
    done = AgentCommandCompleted(
        command_id=cmd.id, machine_id=machine_id, ok=result.ok, code=result.code, message=result.message[:500]
    )
    await rt.eventlog.append(sid, ANY_VERSION, [NewEvent(done, meta)])
    if not result.ok:
        if result.code == E.AGENT_OFFLINE.code:
            raise E.AGENT_OFFLINE(machine_id=machine_id)
        if result.code == E.AGENT_TIMEOUT.code:
            raise E.AGENT_TIMEOUT(machine_id=machine_id, action=cmd.action.value, timeout=timeout)
        raise E.AGENT_REFUSED(action=cmd.action.value, path=cmd.path or "-", reason=result.message)
    return result


FETCH_TTL = 3600.0  # seconds a large put_file's token lives (it ends with the command anyway)


async def file_fetch(rt: Runtime, machine_id: uuid.UUID, command_id: uuid.UUID, upload_id: uuid.UUID,
                     updater: str, *, actor: str) -> FileFetch:  # fmt: skip
    """A put_file's content by way of the updater, for files too large for a frame: the completed
    upload's content (DPM-E275 otherwise), and a token for it alone, recorded as FileTransferGranted
    before the agent is told (the updater checks its copy of the grant)."""
    await require_machine(rt, machine_id)
    token = secrets.token_urlsafe(32)
    async with rt.pool.connection() as conn, conn.transaction():
        stored = await packages.stored_content(rt.eventlog, conn, upload_id)
        granted = FileTransferGranted(
            command_id=command_id,
            machine_id=machine_id,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            sha256=stored.sha256,
            expires_at=datetime.now(UTC) + timedelta(seconds=FETCH_TTL),
        )
        await rt.eventlog.append(
            stream_id(subjects.COMMAND, machine_id),
            ANY_VERSION,
            [NewEvent(granted, command_metadata(actor))],
            conn=conn,
        )
    return FileFetch(url=f"{updater}/v1/content/{stored.sha256}", token=token, sha256=stored.sha256, size=stored.size)
