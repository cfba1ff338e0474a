"""pytest plugin: a session PostgreSQL cluster, a fresh migrated database per test, and a private
nats-server with JetStream per test, all on free ports. Enabled by the root conftest.py.

Tests reach the database as ``TEST_USER``: a member of ``dpm_service`` like every service's role (no
UPDATE/DELETE on events, no owner rights), which may append to any stream category (the row
``('*', 'dpm_test')`` in ``dpm_stream_owners``, written only here), so one test can seed the events of
several services. tests/integration/test_service_roles.py checks the services' own roles."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import psycopg
import pytest
from nats.aio.client import Client as NATS
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.bus import ensure_events_stream
from dpm_runtime.dbroles import ensure_roles
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.localstack.nats import NatsServer
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.migrations import migrate

TEST_USER = "dpm_test"


def _scratch(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the postgres system user must reach it when tests run as root
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    root = _scratch("dpm-test-pg-")
    cluster = PostgresCluster(root=root, port=free_port(), fast_unsafe=True)
    cluster.init()
    cluster.start()
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        ensure_roles(conn, {TEST_USER: cluster.password(TEST_USER)})
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Database:
    cluster: PostgresCluster
    name: str

    @property
    def admin_url(self) -> str:
        return self.cluster.url(self.name)

    @property
    def service_url(self) -> str:
        return self.cluster.url(self.name, user=TEST_USER)


async def migrated_database(pg_cluster: PostgresCluster, name: str) -> Database:
    """A migrated database whose test role may append to every stream category (tests seed the
    events of several services); the only place that grants ``'*'``."""
    pg_cluster.create_database(name)
    db = Database(pg_cluster, name)
    await migrate(db.admin_url)
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dpm_stream_owners (category, role) VALUES ('*', %s)", (TEST_USER,))
    return db


@pytest.fixture
async def database(pg_cluster: PostgresCluster) -> AsyncIterator[Database]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    db = await migrated_database(pg_cluster, name)
    yield db
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
async def pool(database: Database) -> AsyncIterator[AsyncConnectionPool[Conn]]:
    p: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        database.service_url, min_size=2, max_size=20, open=False, kwargs={"autocommit": True}
    )
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
def eventlog(pool: AsyncConnectionPool[Conn]) -> EventLog:
    return EventLog(pool)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    root = _scratch("dpm-test-nats-")
    server = NatsServer(root=root, port=free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url)
    await ensure_events_stream(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def service_env(database: Database, nats_server: NatsServer) -> dict[str, str]:
    """Environment for running a service as a subprocess against the test stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
    env.update(
        DPM_DATABASE_URL=database.service_url,
        DPM_DATABASE_ADMIN_URL=database.admin_url,
        DPM_NATS_URL=nats_server.url,
        DPM_LOG_LEVEL="INFO",
    )
    return env
