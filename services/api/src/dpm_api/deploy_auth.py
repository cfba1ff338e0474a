"""Who holds a deploy token: the check behind every /deploy/v1 call, and its renewal.

A token is bound to the client pxe gave it to and lives while its execution's step runs. It also has
an idle time (pxe's DPM_PXE_DEPLOY_TOKEN_TTL, the scheduler's no-response timeout by default): every
authenticated call renews it -- a step poll as much as a progress report -- so a deploy environment
that waits for its multicast session, or sits in a long phase without progress, keeps it for as long
as the scheduler lets the execution run.

Progress reports renew it through the log (the ``deploy_tokens`` projection); the other calls are not
events (a poll every few seconds must not grow the log), so their last time is kept in
``api.deploy_token_renewals``, one row per execution, outside the projection: a rebuild keeps it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv6Address, ip_address

from fastapi import Request

from dpm_api import deploy_logs
from dpm_api.deps import now
from dpm_runtime.eventlog import Conn
from dpm_runtime.http import required_bearer
from dpm_runtime.service import Runtime
from dpm_schemas import E

DDL = [
    "CREATE TABLE IF NOT EXISTS api.deploy_token_renewals (execution_id uuid PRIMARY KEY,"
    " seen_at timestamptz NOT NULL)",
    *deploy_logs.DDL,  # the deploy logs' storage (deploy_logs.py), created with the token tables
]
ENDED_STATES = ("completed", "failed", "suspended")
LOG_GRACE = timedelta(minutes=10)  # how long after its last call a deploy environment may upload its logs
KEEP = timedelta(days=8)  # longer than any idle time (at most 7 days): older renewals matter to nobody


@dataclass(frozen=True)
class TokenRow:
    machine_id: uuid.UUID
    kind: str
    state: str
    client_ip: str | None
    expires_at: datetime  # as issued, or as the last progress report renewed it
    idle: timedelta | None  # None: expires_at is absolute (tokens from before issue 12)
    seen_at: datetime | None  # the last authenticated call that was no progress report
    ended: str | None  # why its step is over

    def fresh(self, at: datetime) -> bool:
        """Not past its expiry, renewed by the last call."""
        last = self.seen_at + self.idle if self.seen_at is not None and self.idle is not None else None
        return max(self.expires_at, last or self.expires_at) > at

    def refusal(self, caller: str | None, at: datetime) -> str:
        """Why this token is refused for ``caller`` (None: the address is not checked), or ''."""
        if self.ended or self.state in ENDED_STATES:
            return self.ended or f"the execution is {self.state}"
        if caller is not None and self.client_ip is not None and _unmapped(caller) != self.client_ip:
            return f"it was given to {self.client_ip}, not to {caller}"
        if not self.fresh(at):
            return "it expired (no call from its deploy environment within its idle time)"
        return ""

    def log_refusal(self, caller: str | None, at: datetime, grace: timedelta) -> str:
        """Why this token may not upload its deploy logs, or '': as for any call while the step runs,
        and for ``grace`` after the deploy environment's last accepted call once it has ended (the
        upload comes after the final report). Still only from the client it was given to."""
        if caller is not None and self.client_ip is not None and _unmapped(caller) != self.client_ip:
            return f"it was given to {self.client_ip}, not to {caller}"
        if not self.refusal(None, at):
            return ""
        if self.seen_at is not None and at - self.seen_at <= grace:
            return ""
        return f"its step ended and deploy logs are accepted only {int(grace.total_seconds())} s after its last call"


async def deploy_caller(request: Request, rt: Runtime, execution_id: uuid.UUID) -> tuple[uuid.UUID, str]:
    """The machine and step of the deploy environment holding this execution's token, else 401: the
    token must be known (DPM-E401), from the client pxe gave it to, unexpired and its execution's step
    still running (DPM-E134). An accepted call renews it."""
    at = now(request)
    row = await _caller_row(request, rt, execution_id, at)
    why = row.refusal(_caller(request), at)
    if why:
        raise E.DEPLOY_TOKEN_REFUSED(execution_id=execution_id, reason=why)
    async with rt.pool.connection() as conn:
        await renew(conn, execution_id, at)
    return row.machine_id, row.kind


async def deploy_log_caller(request: Request, rt: Runtime, execution_id: uuid.UUID) -> uuid.UUID:
    """The machine whose deploy environment uploads this execution's logs: the same token checks as
    ``deploy_caller`` but also in the grace after its step ended (``LOG_GRACE``, or the app's
    ``deploy_log_grace``), and it renews nothing -- an upload keeps no token and no step alive."""
    at = now(request)
    row = await _caller_row(request, rt, execution_id, at)
    why = row.log_refusal(_caller(request), at, getattr(request.app.state, "deploy_log_grace", LOG_GRACE))
    if why:
        raise E.DEPLOY_TOKEN_REFUSED(execution_id=execution_id, reason=why)
    return row.machine_id


async def _caller_row(request: Request, rt: Runtime, execution_id: uuid.UUID, at: datetime) -> TokenRow:
    token = required_bearer(request.headers)
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = await _token(rt, digest, execution_id)
    if row is None or not row.fresh(at):  # the read models may be a moment behind the deploy environment
        head = await rt.eventlog.head()
        for name in ("deploy_tokens", "executions"):
            await rt.projections[name].wait_for(head, timeout=3)
        row = await _token(rt, digest, execution_id)
    if row is None:  # unknown, or another execution's token: the same answer for both
        raise E.UNAUTHENTICATED()
    return row


def _caller(request: Request) -> str | None:
    """The client's address, or None when the address check is off (DPM_API_DEPLOY_CHECK_ADDRESS)."""
    if not getattr(request.app.state, "deploy_check_address", True):
        return None
    return request.client.host if request.client else None


async def renew(conn: Conn, execution_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO api.deploy_token_renewals (execution_id, seen_at) VALUES (%s, %s) ON CONFLICT (execution_id)"
        " DO UPDATE SET seen_at = greatest(api.deploy_token_renewals.seen_at, excluded.seen_at)",
        (execution_id, at),
    )
    await conn.execute(  # bounded: a few old rows go with each renewal
        "DELETE FROM api.deploy_token_renewals WHERE execution_id IN"
        " (SELECT execution_id FROM api.deploy_token_renewals WHERE seen_at < %s LIMIT 20)",
        (at - KEEP,),
    )


def _unmapped(host: str) -> str:
    try:
        address = ip_address(host)
    except ValueError:
        return host
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


async def _token(rt: Runtime, digest: str, execution_id: uuid.UUID) -> TokenRow | None:
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT t.machine_id, x.kind, x.state, t.client_ip, t.expires_at,"
                " make_interval(secs => t.idle_seconds), r.seen_at, t.ended"
                " FROM api.deploy_tokens t JOIN api.executions x ON x.execution_id = t.execution_id"
                " LEFT JOIN api.deploy_token_renewals r ON r.execution_id = t.execution_id"
                " WHERE t.token_sha256 = %s AND t.execution_id = %s",
                (digest, execution_id),
            )
        ).fetchone()
    return TokenRow(*row) if row else None
