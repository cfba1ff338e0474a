"""Gateway reactions to other services' events."""

from __future__ import annotations

import contextlib

from dpm_agent_gateway import store
from dpm_agent_gateway.presence import Presence
from dpm_runtime.eventlog import Conn
from dpm_schemas import RecordedEvent
from dpm_schemas.events import AgentTokenRevoked, EnrolmentTokenIssued


async def token_revoked(rec: RecordedEvent, conn: Conn, *, presence: Presence) -> None:
    """Refuse the token from now on and drop the live connection, if this replica holds it."""
    event = rec.event
    assert isinstance(event, AgentTokenRevoked)
    await store.revoke(conn, event.machine_id)
    if close := presence.connections.pop(event.machine_id, None):
        with contextlib.suppress(Exception):
            await close()


async def enrolment_token_issued(rec: RecordedEvent, conn: Conn) -> None:
    event = rec.event
    assert isinstance(event, EnrolmentTokenIssued)
    await store.save_enrolment_token(conn, event.token_id, event.token_sha256, event.expires_at, event.uses)
