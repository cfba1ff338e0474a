"""The deploy token of an execution: one per execution, for the machine pxe saw boot.

Every script fetch used to mint a fresh token, so anyone on the boot network who asked for a MAC with
pending work got a credential for its execution. Now only a client at an address pxe saw that MAC
boot from may have it (``sightings``, checked by the route first), and the first such fetch while the
execution waits for its boot wins it: ``DeployTokenIssued`` is appended once (a row keyed by execution
in the same transaction decides), bound to that client's MAC and address. A firmware retry from the
same client gets the same token again -- it is derived from a key (HMAC), so it is never stored -- and
any other client gets none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.state import SCHEMA
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import DeployTokenIssued
from dpm_schemas.ids import stream_id

ACTOR = "pxe"

DDL = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.deploy_tokens (execution_id uuid PRIMARY KEY, machine_id uuid NOT NULL,"
    " mac text NOT NULL, client_ip text NOT NULL, token_sha256 text NOT NULL,"
    " issued_at timestamptz NOT NULL DEFAULT now())",
]


@dataclass(frozen=True)
class Grant:
    """The answer for one script fetch: a token, or why there is none."""

    token: str | None
    refused: str = ""


def derive(key: bytes, execution_id: uuid.UUID, mac: str, client_ip: str) -> str:
    digest = hmac.new(key, f"{execution_id}|{mac}|{client_ip}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeployTokens:
    def __init__(self, pool: AsyncConnectionPool[Conn], eventlog: EventLog, *, key: bytes | None, idle: float) -> None:
        self._pool = pool
        self._log = eventlog
        self._key = key or secrets.token_bytes(32)
        self.idle = idle

    async def grant(self, mac: str, machine_id: uuid.UUID, execution_id: uuid.UUID, client_ip: str | None) -> Grant:
        """The token of ``execution_id`` for this client: minted on the first fetch, the same one again
        for the same MAC and address, none for anybody else."""
        if client_ip is None:
            return Grant(None, "the request came from no IPv4 address a token could be bound to")
        token = derive(self._key, execution_id, mac, client_ip)
        digest = sha256(token)
        async with self._pool.connection() as conn, conn.transaction():
            won = await (
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.deploy_tokens (execution_id, machine_id, mac, client_ip, token_sha256)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (execution_id) DO NOTHING RETURNING 1",
                    (execution_id, machine_id, mac, client_ip, digest),
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
        if row is not None and (row[0], row[1]) == (mac, client_ip) and hmac.compare_digest(row[2], digest):
            return Grant(token)  # the same client again (a firmware retry): the same token
        if row is not None and (row[0], row[1]) == (mac, client_ip):
            return Grant(None, f"execution {execution_id}'s token was issued under another key (pxe restarted?)")
        return Grant(None, f"execution {execution_id}'s deploy environment was handed to another client")

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
