"""Asking a machine's agent to act (reboot, shut down) from the scheduler: a NATS request to the
gateway replica that holds the agent's connection, as the api does for operators' commands."""

from __future__ import annotations

import uuid

import nats.errors
from nats.aio.client import Client as NATS

from dpm_schemas import E, agent_protocol, subjects
from dpm_schemas.agent_protocol import Action, Command


async def agent_action(nc: NATS, machine_id: uuid.UUID, action: Action, *, timeout: float) -> tuple[str, str] | None:
    """None when the agent did it; else (error code, message): offline (DPM-E120), no answer in
    ``timeout`` (DPM-E121), or refused (its code, else DPM-E122)."""
    cmd = Command(id=uuid.uuid4(), action=action)
    try:
        subject = subjects.agent_command(machine_id, action)
        reply = await nc.request(subject, agent_protocol.encode(cmd), timeout=timeout)
    except nats.errors.NoRespondersError:
        err = E.AGENT_OFFLINE(machine_id=machine_id)
        return err.code, err.message
    except nats.errors.TimeoutError:
        err = E.AGENT_TIMEOUT(machine_id=machine_id, action=action.value, timeout=timeout)
        return err.code, err.message
    result = agent_protocol.decode(reply.data)
    if getattr(result, "ok", False):
        return None
    return getattr(result, "code", None) or E.AGENT_REFUSED.code, getattr(result, "message", f"{action} refused")
