"""Every registered projection, rebuilt from position 0, equals the live one -- on a log the lab
produced by running every implemented scenario kind (``lab_history``), not on a synthetic one.

A projection's ``apply`` must be deterministic given the log: the rows the live runner folded batch
by batch and the rows a rebuild folds in one pass are the same values, table by table, column by
column. ``PROJECTIONS`` names every projection the services register today; a new projection
without an entry there fails ``test_the_list_is_every_registered_projection``, so it cannot miss
this check."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from dpm_runtime.localstack.nats import NatsServer
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.projection import Projection, ProjectionRunner, checkpoint_name, rebuild
from dpm_runtime.testing.fixtures import Database, migrated_database
from dpm_runtime.testing.services import Running

from .lab_history import Stack, drive, started

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# "<service>.<projection>": every projection the running services register. A new projection is
# added here (the second test below fails until it is).
PROJECTIONS = (
    "agent-gateway.directory",
    "agent-gateway.tokens",
    "api.accounts",
    "api.bootstrap_token_uses",
    "api.deploy_tokens",
    "api.disk_layouts",
    "api.executions",
    "api.groups",
    "api.images",
    "api.inventories",
    "api.machines",
    "api.multicast_sessions",
    "api.netboot_pending",
    "api.packages",
    "api.revoked_bootstrap_tokens",
    "api.scenarios",
    "api.rollouts",
    "api.schedules",
    "api.source_list",
    "api.store_space",
    "api.update_history",
    "imager.directory",
    "imager.stored_images",
    "imager.transfers",
    "pxe.boot_settings",
    "pxe.directory",
    "pxe.netboot",
    "scheduler.directory",
    "scheduler.presence",
    "scheduler.scenario_directory",
    "updater.auto_update_times",
    "updater.deliveries",
    "updater.directory",
    "updater.inventories",
    "updater.package_uploads",
    "updater.packages",
    "updater.presence",
    "updater.rollouts",
    "updater.source_syncs",
)
# empty once every execution ended (a netboot request is cleared with its execution); their events
# are still in the log and replayed, and services/pxe/tests/integration/test_pxe_projections.py
# compares them rebuilt and live while requests are pending
EMPTY_AT_END = frozenset({"api.netboot_pending", "pxe.netboot"})
ATTEMPTS = 3  # a snapshot pair is retaken when the projection's events arrived in between


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One database and nats-server for the module; every service; the lab's history driven once."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    database = await migrated_database(pg_cluster, name)
    root = Path(tempfile.mkdtemp(prefix="dpm-test-nats-"))
    nats = NatsServer(root=root, port=free_port())
    nats.start()
    try:
        async with started(database, nats, tmp_path_factory.mktemp("rebuild")) as s:
            began = time.monotonic()
            await drive(s)
            print(f"lab history: {await s.services['api'].runtime.eventlog.head()} events in "
                  f"{time.monotonic() - began:.1f} s")  # fmt: skip
            yield s
    finally:
        nats.stop()
        shutil.rmtree(root, ignore_errors=True)
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def full_name(service: str, name: str) -> str:
    """The name "<service>.<name>", whether the projection's own name carries its service yet or not."""
    return name if name.startswith(f"{service}.") else f"{service}.{name}"


def registered(services: dict[str, Running]) -> dict[str, tuple[Running, ProjectionRunner]]:
    """What the running services registered, by full name."""
    return {
        full_name(svc, runner.projection.name): (running, runner)
        for svc, running in services.items()
        for runner in running.runtime.projections.values()
    }


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key's columns, for the diff
    rows: tuple[tuple[Any, ...], ...]  # frozen values, sorted


@dataclass(frozen=True)
class Snapshot:
    position: int  # the projection's checkpoint when its tables were read
    tables: dict[str, Table]


def freeze(value: Any) -> Any:
    """Hashable and order-independent of how a driver built it: arrays, json objects and lists."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


async def read_table(conn: psycopg.AsyncConnection[Any], schema: str, table: str) -> Table:
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        (schema, table),
    )
    columns = tuple(r[0] for r in await cur.fetchall())
    assert columns, f"{schema}.{table}: no such table"
    cur = await conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (f'"{schema}"."{table}"',),
    )
    key = tuple(r[0] for r in await cur.fetchall())
    listed = ", ".join(f'"{c}"' for c in columns)
    cur = await conn.execute(f'SELECT {listed} FROM "{schema}"."{table}"'.encode())
    rows = tuple(sorted((freeze(tuple(r)) for r in await cur.fetchall()), key=repr))
    return Table(columns, key, rows)


async def snapshot(database: Database, p: Projection) -> Snapshot:
    """Every table of ``p`` (and its quarantine), read under its checkpoint lock: one position's state."""
    conn = await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True)
    async with conn, conn.transaction():
        sql = "SELECT position FROM dpm_checkpoints WHERE name = %s FOR UPDATE"
        cur = await conn.execute(sql, (checkpoint_name(p),))
        row = await cur.fetchone()
        assert row is not None, f"{p.name}: no checkpoint"
        tables = {t: await read_table(conn, p.schema, t) for t in p.tables}
        cur = await conn.execute(
            "SELECT position, type, status FROM dpm_quarantine WHERE projection = %s ORDER BY position", (p.name,)
        )
        tables["(quarantine)"] = Table(("position", "type", "status"), ("position",), tuple(await cur.fetchall()))
    return Snapshot(int(row[0]), tables)


async def moved(database: Database, p: Projection, after: int, upto: int) -> int:
    """How many of ``p``'s events the log gained between two positions."""
    async with await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM events WHERE position > %s AND position <= %s AND type = ANY(%s)",
            (after, upto, list(p.event_types)),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def diff(live: Snapshot, rebuilt: Snapshot, limit: int = 20) -> str:
    """What differs, table by table: rows keyed by primary key with the columns that changed, else
    the rows only one side has."""
    out: list[str] = []
    for name in sorted(set(live.tables) | set(rebuilt.tables)):
        a, b = live.tables.get(name), rebuilt.tables.get(name)
        if a is None or b is None or a.columns != b.columns:
            out.append(f"{name}: columns {a and a.columns} live, {b and b.columns} rebuilt")
            continue
        only_a, only_b = Counter(a.rows) - Counter(b.rows), Counter(b.rows) - Counter(a.rows)
        if not only_a and not only_b:
            continue
        out.append(f"{name}: {sum(only_a.values())} row(s) only live, {sum(only_b.values())} only rebuilt")
        out.extend(row_diffs(a, list(only_a.elements()), list(only_b.elements()))[:limit])
    return "\n".join(out)


def row_diffs(t: Table, live: list[tuple[Any, ...]], rebuilt: list[tuple[Any, ...]]) -> list[str]:
    at = [t.columns.index(k) for k in t.key]
    key = (lambda r: tuple(r[i] for i in at)) if at else (lambda r: r)
    theirs = {key(r): r for r in rebuilt}
    lines = []
    for r in live:
        other = theirs.pop(key(r), None)
        if other is None:
            lines.append(f"  only live:    {dict(zip(t.columns, r, strict=True))}")
            continue
        changed = {c: (x, y) for c, x, y in zip(t.columns, r, other, strict=True) if x != y}
        lines.append(f"  {dict(zip(t.key, key(r), strict=True))}: (live, rebuilt) {changed}")
    lines += [f"  only rebuilt: {dict(zip(t.columns, r, strict=True))}" for r in theirs.values()]
    return lines


@pytest.mark.parametrize("name", PROJECTIONS)
async def test_rebuilt_equals_live(stack: Stack, name: str) -> None:
    found = registered(stack.services)
    assert name in found, f"{name} is not registered (registered: {sorted(found)})"
    svc, runner = found[name]
    p, rt, database = runner.projection, svc.runtime, stack.database
    for _attempt in range(ATTEMPTS):
        assert await runner.wait_for(await rt.eventlog.head(), timeout=30), f"{name} does not catch up"
        live = await snapshot(database, p)
        result = await rebuild(p, pool=rt.pool, eventlog=rt.eventlog)
        rebuilt = await snapshot(database, p)
        if await moved(database, p, live.position, max(result.position, rebuilt.position)) == 0:
            break  # both sides folded the same events
    else:
        pytest.fail(f"{name}: its events kept arriving; no quiet moment in {ATTEMPTS} attempts")
    assert live.tables == rebuilt.tables, f"{name} rebuilt != live\n{diff(live, rebuilt)}"
    assert await moved(database, p, 0, live.position) > 0, f"{name}: the lab's log has none of its events"
    if name not in EMPTY_AT_END:
        assert any(t.rows for k, t in live.tables.items() if k != "(quarantine)"), f"{name}: empty, the log missed it"


async def test_the_list_is_every_registered_projection(stack: Stack) -> None:
    have = set(registered(stack.services))
    listed = set(PROJECTIONS)
    assert listed == have, f"add to PROJECTIONS: {sorted(have - listed)}; remove: {sorted(listed - have)}"
