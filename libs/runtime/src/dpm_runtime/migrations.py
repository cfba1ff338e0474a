"""Schema migrations, applied idempotently at start-up by every service (whichever starts first wins).

Migrations are ordered SQL files, each applied once in its own transaction and recorded in
``dpm_schema_migrations``; an advisory lock makes concurrent start-ups wait instead of racing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK = 7291000


@dataclass(frozen=True, slots=True)
class Migration:
    id: str
    sql: str


def core_migrations() -> list[Migration]:
    files = sorted(
        (f for f in resources.files("dpm_runtime.sql").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    return [Migration(id=f"runtime/{f.name}", sql=f.read_text()) for f in files]


async def migrate(admin_url: str, extra: list[Migration] | None = None) -> list[str]:
    """Apply what is missing; return the ids applied now (empty when up to date)."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS dpm_schema_migrations ("
            " id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in [*core_migrations(), *(extra or [])]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                cur = await conn.execute("SELECT 1 FROM dpm_schema_migrations WHERE id = %s", (migration.id,))
                if await cur.fetchone():
                    continue
                await conn.execute(migration.sql.encode())
                await conn.execute("INSERT INTO dpm_schema_migrations (id) VALUES (%s)", (migration.id,))
                applied.append(migration.id)
                log.info("migration applied", extra={"migration": migration.id})
    return applied
