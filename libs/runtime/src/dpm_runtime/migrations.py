"""Schema migrations, applied idempotently at start-up by every service (whichever starts first wins).

Migrations are ordered SQL files, each applied once in its own transaction and recorded in
``dpm_schema_migrations``; an advisory lock makes concurrent start-ups wait instead of racing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from dpm_schemas import E

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
        # services without the owner URL read this to wait until the schema is theirs (await_migrated)
        await conn.execute("GRANT SELECT ON dpm_schema_migrations TO dpm_service")
    return applied


async def await_migrated(url: str, extra: list[Migration] | None = None) -> None:
    """Raise (DPM-E025) unless every migration this code knows is applied: a service that holds no
    owner URL checks this, read-only, and waits, while the one process that holds it migrates."""
    wanted = [m.id for m in [*core_migrations(), *(extra or [])]]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        try:
            cur = await conn.execute("SELECT id FROM dpm_schema_migrations WHERE id = ANY(%s)", (wanted,))
            present = {row[0] for row in await cur.fetchall()}
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            present = set()
    if missing := [m for m in wanted if m not in present]:
        raise E.SCHEMA_NOT_MIGRATED(missing=", ".join(missing))
