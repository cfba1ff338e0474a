"""The gateway's read models of the tokens other services issue and revoke: the projection "tokens".

- ``agent_revocations``: the last AgentTokenRevoked of each machine (its log position). An agent token
  is refused while a revocation is newer than the enrolment that set it (``adapters.store``: ``agent_tokens.position``),
  so a revocation older than a bound re-enrolment -- which lifts it -- changes nothing.
- ``issued_enrolment_tokens``: what each EnrolmentTokenIssued allows (hash, expiry, uses, machine).

What enrolment decides inside its own request transaction -- which machine holds which agent token,
how many uses of an enrolment token are spent -- lives in ``adapters.store``'s tables, not here: a rebuild of
this projection replaces only what it derives from events, and never undoes an enrolment.
"""

from __future__ import annotations

from collections.abc import Sequence

from dpm_agent_gateway.adapters.store import SCHEMA
from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import AgentTokenRevoked, EnrolmentTokenIssued


class Tokens:
    name = "tokens"
    schema = SCHEMA
    tables = ("agent_revocations", "issued_enrolment_tokens")
    event_types = (AgentTokenRevoked.wire_name, EnrolmentTokenIssued.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".agent_revocations (machine_id uuid PRIMARY KEY,'
            " position bigint NOT NULL);"
            f'CREATE TABLE IF NOT EXISTS "{schema}".issued_enrolment_tokens (token_sha256 text PRIMARY KEY,'
            " token_id uuid NOT NULL, expires_at timestamptz NOT NULL, uses integer NOT NULL, machine_id uuid,"
            " position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, AgentTokenRevoked):
                await conn.execute(
                    f'INSERT INTO "{schema}".agent_revocations AS r (machine_id, position) VALUES (%s, %s)'
                    " ON CONFLICT (machine_id) DO UPDATE SET position = greatest(r.position, excluded.position)",
                    (e.machine_id, rec.position),
                )
            elif isinstance(e, EnrolmentTokenIssued):
                await conn.execute(
                    f'INSERT INTO "{schema}".issued_enrolment_tokens (token_sha256, token_id, expires_at, uses,'
                    " machine_id, position) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (token_sha256) DO NOTHING",
                    (e.token_sha256, e.token_id, e.expires_at, e.uses, e.machine_id, rec.position),
                )
