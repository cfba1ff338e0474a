"""The bootstrap token (DPM_API_TOKEN): an admin credential from the environment, for the first
login and for `dpm up` on one host. It can be switched off (DPM_API_TOKEN_ENABLED=false) or revoked
by an admin (BootstrapTokenRevoked, which every replica honours through this projection); rotating
it means setting a new DPM_API_TOKEN and restarting the api -- the revoked value stays refused.

Without the bootstrap token only admin users can administer dpm, so the token is never withdrawn
while no enabled admin user with a password exists: revoking it then is refused (DPM-E415), and an
api started with DPM_API_TOKEN_ENABLED=false and no admin user logs a warning with that code (it
still starts: viewers and operators can keep working, and refusing to start would only crash-loop)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dpm_api import auth
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_runtime.service import Runtime
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import BootstrapTokenRevoked
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)


class RevokedBootstrapTokens:
    """``api.revoked_bootstrap_tokens``: the SHA-256 of every bootstrap token an admin revoked."""

    name = "revoked_bootstrap_tokens"
    schema = "api"
    tables = ("revoked_bootstrap_tokens",)
    event_types = (BootstrapTokenRevoked.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".revoked_bootstrap_tokens (token_sha256 text PRIMARY KEY,'
            " revoked_at timestamptz NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, BootstrapTokenRevoked)
            await conn.execute(
                f'INSERT INTO "{schema}".revoked_bootstrap_tokens (token_sha256, revoked_at) VALUES (%s, %s)'
                " ON CONFLICT DO NOTHING",
                (e.token_sha256, rec.occurred_at),
            )


async def revoke(eventlog: EventLog, conn: Conn, token: str | None, *, actor: str) -> int:
    """Revoke the bootstrap token this api was started with; its position, to wait for."""
    if token is None:
        raise E.INVALID_REQUEST(reason="this api has no bootstrap token (DPM_API_TOKEN unset or disabled)")
    if not await admin_exists(conn):
        raise E.NO_ADMIN_USER(action="revoking the bootstrap token")
    event = BootstrapTokenRevoked(token_sha256=auth.sha256(token))
    result = await eventlog.append(
        stream_id(subjects.USER, auth.BOOTSTRAP_USER),
        ANY_VERSION,
        [NewEvent(event, command_metadata(actor))],
        conn=conn,
    )
    return result.position


async def admin_exists(conn: Conn) -> bool:
    """Whether some enabled admin user can log in (has a password)."""
    cur = await conn.execute(
        "SELECT 1 FROM api.users u JOIN api.credentials c USING (username)"
        " WHERE u.role = 'admin' AND NOT u.disabled LIMIT 1"
    )
    return await cur.fetchone() is not None


async def warn_without_admin(rt: Runtime) -> None:
    """At start, with the bootstrap token disabled: once the accounts read model has caught up
    with the log, warn (DPM-E415) when no one could administer dpm."""
    try:
        await rt.projections["accounts"].wait_for(await rt.eventlog.head(), timeout=60)
        async with rt.pool.connection() as conn:
            if await admin_exists(conn):
                return
    except Exception as exc:  # a start-up check: it must never stop the api
        log.warning("could not check for an admin user: %r", exc)
        return
    err = E.NO_ADMIN_USER(action="DPM_API_TOKEN_ENABLED=false")
    log.warning("%s: %s %s", err.code, err.message, err.remedy)
