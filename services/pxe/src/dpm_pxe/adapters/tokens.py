"""The deploy token of an execution: one per execution, for the machine pxe saw boot (the table and the
event; the token's derivation and who keeps it are ``domain.tokens``).

Every script fetch used to mint a fresh token, so anyone on the boot network who asked for a MAC with
pending work got a credential for its execution. Now only a client at an address pxe saw that MAC
boot from may have it (``sightings``, checked by the route first), and the first such fetch while the
execution waits for its boot wins it: ``DeployTokenIssued`` is appended once (a row keyed by execution
in the same transaction decides), bound to that client's MAC and address. A firmware retry from the
same client gets the same token again -- it is derived from a key (HMAC), so it is never stored -- and
any other client gets none.

The row also keeps the position of the NetbootRequested it was won under: a later request of the same
execution (its netboot cleared and asked for again) may be won afresh, by the address the machine boots
from then. Nothing else has to delete rows when a netboot is cleared -- no reaction, no race with it.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.adapters.state import SCHEMA
from dpm_pxe.domain.tokens import Grant, Holder, derive, regrant, sha256
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import DeployTokenIssued
from dpm_schemas.ids import stream_id

ACTOR = "pxe"

DDL = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.deploy_tokens (execution_id uuid PRIMARY KEY, machine_id uuid NOT NULL,"
    " mac text NOT NULL, client_ip text NOT NULL, token_sha256 text NOT NULL,"
    " issued_at timestamptz NOT NULL DEFAULT now())",
    # the request a token was won under; rows from before it (a consumer deleted them at the clear, so
    # a row left is one of a netboot still pending) take that request's position, once
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'pxe'"
    " AND table_name = 'deploy_tokens' AND column_name = 'request_position') THEN"
    f" ALTER TABLE {SCHEMA}.deploy_tokens ADD COLUMN request_position bigint NOT NULL DEFAULT 0;"
    f" IF to_regclass('{SCHEMA}.netboot') IS NOT NULL THEN UPDATE {SCHEMA}.deploy_tokens t SET request_position"
    f" = n.position FROM {SCHEMA}.netboot n WHERE n.execution_id = t.execution_id; END IF; END IF; END $$",
]


class DeployTokens:
    def __init__(self, pool: AsyncConnectionPool[Conn], eventlog: EventLog, *, key: bytes | None, idle: float) -> None:
        self._pool = pool
        self._log = eventlog
        self._key = key or secrets.token_bytes(32)
        self.idle = idle

    async def grant(
        self, mac: str, machine_id: uuid.UUID, execution_id: uuid.UUID, client_ip: str | None, *, request: int
    ) -> Grant:
        """The token of ``execution_id`` for this client: minted on the first fetch under the netboot
        request at position ``request``, the same one again for the same MAC and address, none for
        anybody else."""
        if client_ip is None:
            return Grant(None, "the request came from no IPv4 address a token could be bound to")
        token = derive(self._key, execution_id, mac, client_ip)
        digest = sha256(token)
        async with self._pool.connection() as conn, conn.transaction():
            won = await (
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.deploy_tokens AS t (execution_id, machine_id, mac, client_ip, token_sha256,"
                    " request_position) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (execution_id) DO UPDATE SET"
                    " machine_id = excluded.machine_id, mac = excluded.mac, client_ip = excluded.client_ip,"
                    " token_sha256 = excluded.token_sha256, request_position = excluded.request_position,"
                    " issued_at = now() WHERE t.request_position < excluded.request_position RETURNING 1",
                    (execution_id, machine_id, mac, client_ip, digest, request),
                )
            ).fetchone()
            if won:
                await self._append(conn, mac, machine_id, execution_id, client_ip, digest)
                return Grant(token)
            row = await (
                await conn.execute(
                    f"SELECT mac, client_ip, token_sha256 FROM {SCHEMA}.deploy_tokens WHERE execution_id = %s",
                    (execution_id,),
                )
            ).fetchone()
        return regrant(Holder(row[0], row[1], row[2]) if row else None, execution_id, mac, client_ip, token)

    async def _append(
        self, conn: Conn, mac: str, machine_id: uuid.UUID, execution_id: uuid.UUID, client_ip: str, digest: str
    ) -> None:
        event = DeployTokenIssued(
            machine_id=machine_id,
            execution_id=execution_id,
            token_sha256=digest,
            expires_at=datetime.now(UTC) + timedelta(seconds=self.idle),
            client_ip=client_ip,
            idle_seconds=self.idle,
        )
        meta = Metadata.new(actor=ACTOR)
        await self._log.append(stream_id(subjects.BOOT, mac), ANY_VERSION, [NewEvent(event, meta)], conn=conn)
