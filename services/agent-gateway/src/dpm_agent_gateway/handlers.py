"""Gateway reactions to other services' events, on the gateway's router (bound in bootstrap.py)."""

from __future__ import annotations

from dpm_agent_gateway import store
from dpm_agent_gateway.sessions import Sessions
from dpm_runtime.handlers import Ctx, Router
from dpm_schemas.events import AgentTokenRevoked, EnrolmentTokenIssued

router = Router(service="agent-gateway")


@router.handles(AgentTokenRevoked, durable="tokens")
async def token_revoked(e: AgentTokenRevoked, ctx: Ctx, *, sessions: Sessions) -> None:
    """Refuse the token from now on (and unbound enrolments of the machine) unless a bound enrolment
    came later. Once that committed, drop the live connection if this replica holds it and its token
    is now revoked, and hint the other replicas to check theirs (their periodic check backs it up):
    closing a WebSocket is I/O and never runs inside the transaction."""
    await store.revoke(ctx.conn, e.machine_id, ctx.position)

    async def close_sessions() -> None:
        await sessions.check([e.machine_id])
        await sessions.hint(e.machine_id)

    ctx.after_commit(close_sessions)


@router.handles(EnrolmentTokenIssued, durable="tokens")
async def enrolment_token_issued(e: EnrolmentTokenIssued, ctx: Ctx) -> None:
    await store.save_enrolment_token(ctx.conn, e.token_id, e.token_sha256, e.expires_at, e.uses, e.machine_id)
