"""One PostgreSQL login role per service (issue 12, item 12): each owns its schema and nothing else.

Every service logs in as its own role, a member of the NOLOGIN group ``dpm_service`` that the
migrations grant the shared runtime tables to (the event log to read, ``dpm_append`` to call, the
checkpoints and tracking rows). Its read-model schema belongs to it alone, so no other service can
write it (nor read it: no service reads another's schema, DESIGN.md section 3); ``dpm_append``
refuses a stream whose category another service owns (``dpm_stream_owners``, migration 0004).

``prepare`` runs at every start in the process that holds the owner URL (``dpm up`` itself, the
relay under compose). Before the migrations it creates each service's schema owned by its role, so
no other role can take the name first, and moves to that role whatever an older dpm left owned by
the single role ``dpm_app`` (schemas, tables, sequences, views, functions, types), then retires it;
after them it adds to ``dpm_stream_owners`` any category of ``ROLES`` the table lacks, so a category
given to a service here reaches existing databases without a migration of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from dpm_runtime.migrations import migrate
from dpm_schemas import E, subjects

GROUP_ROLE = "dpm_service"
LEGACY_ROLE = "dpm_app"  # the one role every service shared before issue 12


@dataclass(frozen=True, slots=True)
class ServiceRole:
    """A service's login role, the schema it owns, and the stream categories it appends to."""

    service: str
    role: str
    schema: str | None
    categories: tuple[str, ...] = ()


_S = subjects
ROLES: dict[str, ServiceRole] = {
    r.service: r
    for r in (
        ServiceRole(
            "api",
            "dpm_api",
            "api",
            (
                _S.MACHINE,
                _S.GROUP,
                _S.USER,
                _S.ENROLMENT,
                _S.COMMAND,
                _S.SCENARIO,
                _S.CATALOG,
                _S.DISKS,
                _S.ASSIGNMENT,
                _S.SCHEDULE,
                _S.STEP,
                _S.SETTING,
                _S.IDENTITY,
                _S.PACKAGE,
                _S.UPLOAD,
                _S.NOTIFY,
                _S.ROLLOUT,
                _S.SOURCE,
            ),
        ),
        ServiceRole("scheduler", "dpm_scheduler", "scheduler", (_S.EXECUTION, _S.POWER, _S.FIRING, _S.SESSION)),
        ServiceRole("pxe", "dpm_pxe", "pxe", (_S.BOOT,)),
        ServiceRole("imager", "dpm_imager", "imager", (_S.IMAGE,)),
        ServiceRole("updater", "dpm_updater", "updater", (_S.CONTENT, _S.DELIVERY, _S.RING, _S.SYNC)),
        ServiceRole("agent-gateway", "dpm_agent_gateway", "agent_gateway", (_S.AGENT,)),
        ServiceRole("relay", "dpm_relay", None),  # reads the log, writes its checkpoint; appends nothing
    )
}


# Categories no service's role appends to; every other one of subjects.CATEGORIES has one writer above
# (libs/runtime/tests/unit/test_dbroles.py holds the two tables to that).
UNOWNED = {
    subjects.TEST: "reserved for the test suites and benchmarks (their roles get '*')",
}


def role_of(service: str) -> str:
    """The login role of ``service`` (a name of ``ROLES``: "api", ..., "relay")."""
    return ROLES[service].role


def password_variable(service: str) -> str:
    """The environment variable holding the role's password under compose (``DPM_DB_API_PASSWORD``)."""
    return f"DPM_DB_{service.upper().replace('-', '_')}_PASSWORD"


def ensure_roles(conn: psycopg.Connection, passwords: dict[str, str]) -> None:
    """The group role and every service's login role, with its password (set at every start: the secret
    file is the truth). ``passwords`` maps role -> password; ``conn`` is a superuser's, autocommit."""
    conn.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dpm_service') THEN"
        " CREATE ROLE dpm_service NOLOGIN; END IF; END $$"
    )
    for role, password in passwords.items():
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE dpm_service").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )


# Moves every object of one schema (and of its rebuild staging schemas) to the schema's role.
# Sequences that belong to a table column move with the table (ALTER SEQUENCE refuses them).
_TAKE_OVER = """
DO $$
DECLARE
  target regrole := to_regrole({role});
  ns record;
  obj record;
BEGIN
  EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', {schema}, {role});
  FOR ns IN SELECT n.oid, n.nspname, n.nspowner FROM pg_namespace n
            WHERE n.nspname = {schema} OR n.nspname LIKE replace({schema}, '_', '\\_') || '\\_rebuild\\_%' LOOP
    IF ns.nspowner <> target THEN
      EXECUTE format('ALTER SCHEMA %I OWNER TO %I', ns.nspname, {role});
    END IF;
    FOR obj IN SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                 WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind
               FROM pg_class c
               WHERE c.relnamespace = ns.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> target
                 AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    LOOP
      EXECUTE format('ALTER %s %I.%I OWNER TO %I', obj.kind, ns.nspname, obj.relname, {role});
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS sig FROM pg_proc p WHERE p.pronamespace = ns.oid AND p.proowner <> target
    LOOP
      EXECUTE format('ALTER ROUTINE %s OWNER TO %I', obj.sig, {role});
    END LOOP;
    FOR obj IN SELECT t.typname FROM pg_type t WHERE t.typnamespace = ns.oid AND t.typtype IN ('e', 'd', 'r')
                 AND t.typowner <> target LOOP
      EXECUTE format('ALTER TYPE %I.%I OWNER TO %I', ns.nspname, obj.typname, {role});
    END LOOP;
  END LOOP;
END $$
"""


async def secure(admin_url: str) -> list[str]:
    """Each service's schema created or taken over by its role, the legacy role retired; the schemas
    whose ownership changed. Raises DPM-E421 when a role is missing (compose: 10-dpm-roles.sh)."""
    wanted = [r.role for r in ROLES.values()]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (wanted,))
        present = {row[0] for row in await cur.fetchall()}
        if missing := [r for r in wanted if r not in present]:
            raise E.SERVICE_ROLE_MISSING(roles=", ".join(missing))
        owners = "SELECT nspname, nspowner::regrole::text FROM pg_namespace"
        before: dict[str, str] = dict(await (await conn.execute(owners)).fetchall())
        for r in ROLES.values():
            if r.schema is not None:
                statement = sql.SQL(_TAKE_OVER).format(schema=sql.Literal(r.schema), role=sql.Literal(r.role))
                await conn.execute(statement)
        after: dict[str, str] = dict(await (await conn.execute(owners)).fetchall())
        if await (await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LEGACY_ROLE,))).fetchone():
            await conn.execute(f"REVOKE {GROUP_ROLE} FROM {LEGACY_ROLE}".encode())
            await conn.execute(f"ALTER ROLE {LEGACY_ROLE} NOLOGIN PASSWORD NULL".encode())
    return sorted(name for name, owner in after.items() if name in before and before[name] != owner)


async def claim_streams(admin_url: str) -> None:
    """Every (category, role) of ``ROLES`` in ``dpm_stream_owners`` (the migrations made the table)."""
    rows = [(c, r.role) for r in ROLES.values() for c in r.categories]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dpm_stream_owners (category, role) VALUES (%s, %s) ON CONFLICT DO NOTHING", rows
        )


async def prepare(admin_url: str) -> tuple[list[str], list[str]]:
    """``secure``, the migrations, ``claim_streams``: what the owner does at start. Returns the schemas
    that changed owner and the migrations applied."""
    moved = await secure(admin_url)
    applied = await migrate(admin_url)
    await claim_streams(admin_url)
    return moved, applied
