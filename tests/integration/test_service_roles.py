"""Issue 12, item 12: each service logs into PostgreSQL as its own role and gets only what it needs.

A whole embedded stack (``Stack.start``: every service and the relay as processes, on free ports)
runs with one role per service: each child's environment holds only its own database URL; the real
tables each service created belong to its role; the imager's role can neither write nor read the
api's tables nor append to the api's streams (users, enrolment tokens), while the api's role appends
its own. A stack made with the old single role ``dpm_app`` is taken over on its next start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.dbroles import GROUP_ROLE, LEGACY_ROLE, ROLES, password_variable, role_of
from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.localstack.stack import RELAY, SERVICES, Stack, StackSettings
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.errors import DpmError
from dpm_schemas.events import Probe
from dpm_schemas.ids import stream_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORTS = ("DPM_API_PORT", "DPM_SCHEDULER_PORT", "DPM_PXE_PORT", "DPM_IMAGER_PORT", "DPM_UPDATER_PORT",
         "DPM_AGENT_GATEWAY_PORT", "DPM_PXE_TFTP_PORT", "DPM_PXE_DHCP_PORT", "DPM_PXE_DHCP_PXE_PORT",
         "DPM_SCHEDULER_WOL_PORT")  # fmt: skip
ROLES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy/postgres/10-dpm-roles.sh"
SCHEMAS = {r.schema: r.role for r in ROLES.values() if r.schema}


def settings_in(parent: Path) -> StackSettings:
    return StackSettings(
        var_dir=parent / "var", postgres_port=free_port(), nats_port=free_port(), nats_monitor_port=free_port()
    )


def scratch() -> Path:
    parent = Path(tempfile.mkdtemp(prefix="dpm-test-roles-"))
    parent.chmod(0o755)  # the postgres system user traverses it when the tests run as root
    return parent


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    parent = scratch()
    saved = {name: os.environ.get(name) for name in PORTS}
    os.environ.update({name: str(free_port()) for name in PORTS})
    s = Stack(settings_in(parent), say=lambda _line: None)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(parent, ignore_errors=True)


def owners(stack: Stack) -> dict[str, str]:
    """Owner of every schema and of every relation in the services' schemas (``schema`` / ``schema.name``)."""
    assert stack.postgres is not None
    with psycopg.connect(stack.postgres.url()) as conn:
        rows = conn.execute(
            "SELECT n.nspname, n.nspowner::regrole::text, c.relname, c.relowner::regrole::text"
            " FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'S', 'v')"
            " WHERE n.nspname = ANY(%s)",
            (list(SCHEMAS),),
        ).fetchall()
    found = {schema: owner for schema, owner, _, _ in rows}
    found.update({f"{schema}.{rel}": owner for schema, _, rel, owner in rows if rel is not None})
    return found


def test_each_child_environment_holds_only_its_own_database_url(stack: Stack) -> None:
    assert stack.postgres is not None
    for name, _ in (RELAY, *SERVICES):
        environ = Path(f"/proc/{stack.services[name].pid}/environ").read_bytes().split(b"\0")
        env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
        assert env["DPM_DATABASE_URL"] == stack.postgres.url(user=role_of(name)), name
        assert "DPM_DATABASE_ADMIN_URL" not in env
        others = [stack.postgres.password(r.role) for r in ROLES.values() if r.role != role_of(name)]
        text = b"\0".join(environ).decode()
        assert not [p for p in [*others, stack.postgres.password()] if p in text], f"{name} holds another password"


def test_every_service_schema_and_table_belongs_to_its_role(stack: Stack) -> None:
    found = owners(stack)
    assert {s: found[s] for s in SCHEMAS} == SCHEMAS
    tables = {name: owner for name, owner in found.items() if "." in name}
    assert any(t.startswith("api.") for t in tables) and any(t.startswith("imager.") for t in tables)
    assert all(owner == SCHEMAS[name.split(".")[0]] for name, owner in tables.items()), tables
    assert stack.postgres is not None
    with psycopg.connect(stack.postgres.url()) as conn:
        rows = conn.execute("SELECT category, role FROM dpm_stream_owners").fetchall()
        legacy = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LEGACY_ROLE,)).fetchone()
    assert sorted(rows) == sorted((c, r.role) for r in ROLES.values() for c in r.categories)
    assert legacy is None  # a new stack never makes the single role


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE api.users SET role = 'admin'",
        "INSERT INTO api.users (username, role) VALUES ('mallory', 'admin')",
        "DELETE FROM api.api_tokens",
        "SELECT * FROM api.credentials",
        "CREATE TABLE api.planted (x int)",
    ],
)
def test_the_imager_role_cannot_touch_the_apis_tables(stack: Stack, statement: str) -> None:
    assert stack.postgres is not None
    with (
        psycopg.connect(stack.postgres.url(user=role_of("imager"))) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def probe(text: str = "x") -> list[NewEvent]:
    return [NewEvent(Probe(writer=0, seq=0, note=text), Metadata.new(actor="test"))]


async def log_as(stack: Stack, service: str) -> tuple[AsyncConnectionPool, EventLog]:
    assert stack.postgres is not None
    pool: AsyncConnectionPool = AsyncConnectionPool(
        stack.postgres.url(user=role_of(service)), min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    return pool, EventLog(pool)


async def test_the_imager_role_cannot_append_to_the_apis_streams_and_the_api_can(stack: Stack) -> None:
    imager_pool, imager = await log_as(stack, "imager")
    api_pool, api = await log_as(stack, "api")
    try:
        for category in (subjects.USER, subjects.ENROLMENT, subjects.MACHINE):
            with pytest.raises(DpmError) as refused:
                await imager.append(stream_id(category, uuid.uuid4()), ANY_VERSION, probe())
            assert refused.value.code == "DPM-E420"
            assert role_of("imager") in refused.value.message and category in refused.value.message
        with pytest.raises(DpmError):  # the array form refuses the same
            await imager.append(stream_id(subjects.USER, "mallory"), ANY_VERSION, probe() + probe("y"))
        assert (await imager.append(stream_id(subjects.IMAGE, uuid.uuid4()), ANY_VERSION, probe())).position
        assert (await api.append(stream_id(subjects.USER, f"u{uuid.uuid4().hex[:8]}"), 0, probe())).position
        with pytest.raises(DpmError):  # and the api, nobody's else
            await api.append(stream_id(subjects.EXECUTION, uuid.uuid4()), ANY_VERSION, probe())
    finally:
        await imager_pool.close()
        await api_pool.close()
    assert stack.postgres is not None
    with (  # nor change who owns what
        psycopg.connect(stack.postgres.url(user=role_of("imager"))) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("INSERT INTO dpm_stream_owners VALUES ('user', 'dpm_imager')")


def make_it_old(stack: Stack) -> None:
    """What a stack of the single role looked like: everything of the services owned by ``dpm_app``
    (a table with a serial column, a rebuild's staging schema left behind), and no per-service role."""
    assert stack.postgres is not None
    roles = [r.role for r in ROLES.values()]
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        password = stack.postgres.password(LEGACY_ROLE)
        conn.execute(f"CREATE ROLE {LEGACY_ROLE} LOGIN PASSWORD '{password}' IN ROLE {GROUP_ROLE}".encode())
        conn.execute(f"REASSIGN OWNED BY {', '.join(roles)} TO {LEGACY_ROLE}".encode())
        conn.execute(f"DROP OWNED BY {', '.join(roles)}".encode())
        conn.execute(f"DROP ROLE {', '.join(roles)}".encode())
        conn.execute(f"SET ROLE {LEGACY_ROLE}")
        conn.execute("CREATE TABLE api.users (username text PRIMARY KEY, role text)")
        conn.execute("CREATE TABLE imager.numbered (id bigserial PRIMARY KEY, note text)")
        conn.execute("CREATE SCHEMA api_rebuild_machines")
        conn.execute("CREATE TABLE api_rebuild_machines.machines (id int)")
        conn.execute("CREATE VIEW scheduler.overview AS SELECT 1 AS one")


def test_a_stack_made_with_the_single_role_is_taken_over_on_its_next_start() -> None:
    parent = scratch()
    settings = settings_in(parent)
    first = Stack(settings, say=lambda _line: None)
    try:
        first.start_infrastructure()
        make_it_old(first)
        assert set(owners(first).values()) == {LEGACY_ROLE}
    finally:
        first.stop()
    said: list[str] = []
    again = Stack(settings, say=said.append)
    try:
        again.start_infrastructure()
        found = owners(again)
        assert all(owner == SCHEMAS[name.split(".")[0]] for name, owner in found.items()), found
        assert {"api.users", "imager.numbered", "imager.numbered_id_seq", "scheduler.overview"} <= set(found)
        assert any("schemas now owned" in line for line in said)
        assert again.postgres is not None
        with psycopg.connect(again.postgres.url()) as conn:
            staging = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace"
                                   " WHERE nspname = 'api_rebuild_machines'").fetchone()  # fmt: skip
            legacy = conn.execute(
                "SELECT rolcanlogin, pg_has_role(oid, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
                (GROUP_ROLE, LEGACY_ROLE),
            ).fetchone()
        assert staging == (role_of("api"),)  # the api can drop it at its next rebuild
        assert legacy == (False, False)  # retired: no login, no rights of the services
        assert not (again.postgres.secrets / LEGACY_ROLE).exists()
        with psycopg.connect(again.postgres.url(user=role_of("imager")), autocommit=True) as conn:
            conn.execute("INSERT INTO imager.numbered (note) VALUES ('the sequence moved with its table')")
        with psycopg.connect(again.postgres.url(user=role_of("api")), autocommit=True) as conn:
            conn.execute("INSERT INTO api.users VALUES ('someone', 'viewer')")
            conn.execute("DROP SCHEMA api_rebuild_machines CASCADE")
        again.stop()
        again.start_infrastructure()  # idempotent: nothing more to move
        assert owners(again) == found
    finally:
        again.stop()
        shutil.rmtree(parent, ignore_errors=True)


def run_roles_script(cluster: PostgresCluster, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PGHOST": cluster.host, "PGPORT": str(cluster.port),
           "PGPASSWORD": cluster.password(), "POSTGRES_USER": "dpm", "POSTGRES_DB": "dpm", **passwords}  # fmt: skip
    return subprocess.run(["sh", str(ROLES_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_the_compose_roles_script_creates_every_role_and_rotates_its_password() -> None:
    parent = scratch()
    cluster = PostgresCluster(root=parent / "pg", port=free_port(), fast_unsafe=True)
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:  # what compose's image has
            conn.execute(f"DROP ROLE {', '.join(r.role for r in ROLES.values())}".encode())
        for round_ in ("one", "two"):  # a fresh volume, then a rotation (or an older volume) by running it again
            passwords = {password_variable(s): f"{round_}-{s}-{uuid.uuid4().hex}" for s in ROLES}
            done = run_roles_script(cluster, passwords)
            assert done.returncode == 0, done.stderr
            for service, r in ROLES.items():
                url = f"postgresql://{r.role}:{passwords[password_variable(service)]}@{cluster.host}:{cluster.port}/dpm"
                with psycopg.connect(url) as conn:
                    assert conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (GROUP_ROLE,)).fetchone()
        passwords.pop(password_variable("relay"))
        refused = run_roles_script(cluster, passwords)
        assert refused.returncode != 0 and "DPM_DB_RELAY_PASSWORD" in refused.stderr
    finally:
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)
