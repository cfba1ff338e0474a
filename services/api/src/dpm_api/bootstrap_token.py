"""The bootstrap token (DPM_API_TOKEN): an admin credential from the environment, for the first
login and for `dpm up` on one host. It can be switched off (DPM_API_TOKEN_ENABLED=false) or revoked
by an admin (BootstrapTokenRevoked, which every replica honours through this projection); rotating
it means setting a new DPM_API_TOKEN and restarting the api -- the revoked value stays refused."""

from __future__ import annotations

from collections.abc import Sequence

from dpm_api import auth
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import BootstrapTokenRevoked
from dpm_schemas.ids import stream_id


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
    event = BootstrapTokenRevoked(token_sha256=auth.sha256(token))
    result = await eventlog.append(
        stream_id(subjects.USER, auth.BOOTSTRAP_USER),
        ANY_VERSION,
        [NewEvent(event, Metadata.new(actor=actor))],
        conn=conn,
    )
    return result.position
