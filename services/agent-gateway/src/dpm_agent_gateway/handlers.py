"""Gateway reactions to other services' events."""

from __future__ import annotations

from dpm_agent_gateway import store
from dpm_agent_gateway.sessions import Sessions
from dpm_runtime.eventlog import Conn
from dpm_schemas import RecordedEvent
from dpm_schemas.events import AgentTokenRevoked, EnrolmentTokenIssued


async def token_revoked(rec: RecordedEvent, conn: Conn, *, sessions: Sessions) -> None:
    """Refuse the token from now on (and unbound enrolments of the machine) unless a bound enrolment
    came later, and drop the live connection if this replica holds it and its token is now revoked;
    the other replicas' periodic session check drops theirs."""
    event = rec.event
    assert isinstance(event, AgentTokenRevoked)
    await store.revoke(conn, event.machine_id, rec.position)
    await sessions.check_in(conn, [event.machine_id])


async def enrolment_token_issued(rec: RecordedEvent, conn: Conn) -> None:
    event = rec.event
    assert isinstance(event, EnrolmentTokenIssued)
    await store.save_enrolment_token(
        conn, event.token_id, event.token_sha256, event.expires_at, event.uses, event.machine_id
    )
