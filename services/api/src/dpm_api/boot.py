"""Network boot on the api side: the boot settings (one stream, setting-boot), the machines waiting to
network-boot (the projection ``NetbootPending``, so a mode change cannot strand them), and automatic
registration of machines discovered by their network boot or by their agent's enrolment (reactions:
they append events, so they stay on the router).

A discovered MAC becomes a machine in new-machines named after its MAC; if the PXE client's UUID
(option 97) is already a machine's SMBIOS UUID, the MAC is added to that machine instead -- one record
however many NICs it has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dpm_api import handlers
from dpm_api.discovered import AGENT_ACTOR, DISCOVERY_ACTOR
from dpm_api.domain.csvfile import MachineSpec
from dpm_api.domain.rules import check_boot_ranges, check_machine_name
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, AppendResult, Conn, EventLog
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.projection import checkpoint_key, require_position
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.errors import DpmError
from dpm_schemas.events import (
    AgentEnrolled,
    BootSettingsChanged,
    DeployTokenIssued,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    MachineDiscovered,
    NetbootCleared,
    NetbootRequested,
    StepReported,
)
from dpm_schemas.events.boot import SETTINGS_KEY
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)

SETTINGS_STREAM = stream_id(subjects.SETTING, SETTINGS_KEY)

DDL = ["CREATE SCHEMA IF NOT EXISTS api"]
MACHINES = "api.machines"  # the projection discovery looks machines up in


async def current_settings(log_: EventLog, conn: Conn) -> tuple[BootSettingsChanged | None, int]:
    history = await log_.read_stream(SETTINGS_STREAM, conn=conn)
    if not history:
        return None, NO_STREAM
    last = history[-1]
    assert isinstance(last.event, BootSettingsChanged)
    return last.event, last.stream_version


async def change_settings(
    log_: EventLog, conn: Conn, settings: BootSettingsChanged, *, actor: str, force: bool = False
) -> AppendResult:
    """Validate and append new boot settings. Changing the mode while machines wait to network-boot is
    refused (DPM-E131) unless forced: the original lost those runs silently."""
    check_boot_ranges(settings.ranges)
    previous, version = await current_settings(log_, conn)
    if not force and (previous is None or previous.mode != settings.mode):
        row = await (await conn.execute("SELECT count(*) FROM api.netboot_pending")).fetchone()
        if row and row[0]:
            raise E.BOOT_SETTINGS_BUSY(count=row[0])
    return await log_.append(SETTINGS_STREAM, version, [NewEvent(settings, command_metadata(actor))], conn=conn)


def discovery_name(mac: str) -> str:
    """A host name for a discovered machine: RFC 1123 and NetBIOS-safe (15 characters)."""
    return "new-" + mac.replace(":", "")[-11:]


async def _new_machines_full(conn: Conn, cap: int) -> bool:
    """Auto-registration stops at ``cap`` machines in new-machines: pxe bounds discoveries per time,
    this bounds them in all (an operator sorts machines out of new-machines, or raises the cap). The
    machine list may be a batch behind this consumer, so discovery's registrations the list has not
    applied yet (this transaction's own included) count too."""
    row = await (
        await conn.execute(
            "SELECT (SELECT count(*) FROM api.machines WHERE group_name = %s)"
            " + (SELECT count(*) FROM events WHERE type = 'MachineRegistered' AND metadata->>'actor' = %s"
            "    AND position > coalesce((SELECT position FROM dpm_checkpoints WHERE name = %s), 0))",
            (NEW_MACHINES, DISCOVERY_ACTOR, checkpoint_key(MACHINES)),
        )
    ).fetchone()
    return bool(row and row[0] >= cap)


router = Router(service="api")


@router.handles(MachineDiscovered, durable="boot")
async def discovered(e: MachineDiscovered, ctx: Ctx, *, eventlog: EventLog, max_discovered: int) -> None:
    """Register a MAC pxe discovered into new-machines, or add it to the machine whose SMBIOS UUID the
    PXE client gave; at most ``max_discovered`` machines in new-machines. Looked up once the machine
    list has applied every event up to this discovery (an older registration of its UUID included)."""
    await require_position(ctx.conn, MACHINES, ctx.position)
    conn = ctx.conn
    try:
        async with conn.transaction():  # a savepoint: a refused registration leaves the batch intact
            if e.client_uuid is not None:
                cur = await conn.execute(
                    "SELECT machine_id, name, macs, smbios_uuid, ip, group_name, os_type FROM api.machines"
                    " WHERE smbios_uuid = %s",
                    (e.client_uuid,),
                )
                row = await cur.fetchone()
                if row is not None:
                    if e.mac not in row[2]:
                        spec = MachineSpec(row[1], (*row[2], e.mac), row[3], row[4], row[5], row[6])
                        await handlers.edit(eventlog, conn, row[0], spec, actor=DISCOVERY_ACTOR)
                    return
            if await _new_machines_full(conn, max_discovered):
                log.warning("discovered %s not registered: %s holds %d machines", e.mac, NEW_MACHINES, max_discovered)
                return
            spec = MachineSpec(discovery_name(e.mac), (e.mac,), e.client_uuid, group=NEW_MACHINES)
            await handlers.register(eventlog, conn, spec, actor=DISCOVERY_ACTOR)
    except DpmError as exc:  # already registered (a repeated discovery), or its UUID/MAC is taken
        log.info("discovered %s not registered: %s", e.mac, exc.message)


@router.handles(AgentEnrolled, durable="boot")
async def agent_enrolled(e: AgentEnrolled, ctx: Ctx, *, eventlog: EventLog) -> None:
    """An agent of an unregistered machine enrolled: register it into new-machines under the id the
    gateway gave it (its natural key), named after its host name when that is a valid name."""
    if e.registered or not e.macs:
        return
    name = e.hostname.split(".")[0][:63]
    try:
        check_machine_name(name)
    except DpmError:
        name = discovery_name(e.macs[0])
    for candidate in dict.fromkeys((name, discovery_name(e.macs[0]))):  # names are unique: fall back
        try:
            async with ctx.conn.transaction():
                spec = MachineSpec(candidate, tuple(e.macs), e.smbios_uuid, group=NEW_MACHINES)
                await handlers.register(eventlog, ctx.conn, spec, actor=AGENT_ACTOR)
            return
        except DpmError as exc:  # registered meanwhile (by hand, or by its network boot)
            log.info("enrolled agent %s not registered as %s: %s", e.hostname, candidate, exc.message)
            if exc.code != E.MACHINE_NAME_TAKEN.code:
                return


class NetbootPending:
    """``api.netboot_pending``: the machines whose execution waits for their network boot (a boot
    settings change that would strand them is refused, DPM-E131). Fed from the log in order, so
    ``dpm admin rebuild api.netboot_pending`` replays it like every other read model."""

    name = "netboot_pending"
    schema = "api"
    tables = ("netboot_pending",)
    event_types = (NetbootRequested.wire_name, NetbootCleared.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".netboot_pending ('
            " machine_id uuid PRIMARY KEY, execution_id uuid NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".netboot_pending'
        for rec in events:
            e = rec.event
            if isinstance(e, NetbootRequested):
                await conn.execute(
                    f"INSERT INTO {table} AS p (machine_id, execution_id, position) VALUES (%s, %s, %s)"
                    " ON CONFLICT (machine_id) DO UPDATE SET execution_id = excluded.execution_id,"
                    " position = excluded.position WHERE p.position < excluded.position",
                    (e.machine_id, e.execution_id, rec.position),
                )
            elif isinstance(e, NetbootCleared):
                await conn.execute(  # guarded: a retried clear must not end a later request
                    f"DELETE FROM {table} WHERE machine_id = %s AND execution_id = %s AND position < %s",
                    (e.machine_id, e.execution_id, rec.position),
                )


class DeployTokens:
    """``api.deploy_tokens``: the SHA-256 of each token pxe gave a deploy environment, what /deploy/v1
    authenticates against, with the client it is bound to. A projection (read from the log) so the
    route can wait for it to catch up when a fast deploy environment reports right after its boot.

    Every progress report renews a token (``expires_at`` moves to the report's time plus its idle
    seconds; the other calls renew it in ``deploy_auth``), so a backup of hours keeps it; a final
    report or the end of the execution ends it for good (``ended``)."""

    name = "deploy_tokens"
    schema = "api"
    tables = ("deploy_tokens",)
    event_types = tuple(
        cls.wire_name
        for cls in (DeployTokenIssued, StepReported, ExecutionCompleted, ExecutionFailed, ExecutionSuspended)
    )

    def ddl(self, schema: str) -> str:
        table = f'"{schema}".deploy_tokens'
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (token_sha256 text PRIMARY KEY,"
            " execution_id uuid NOT NULL, machine_id uuid NOT NULL, expires_at timestamptz NOT NULL);"
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS client_ip text;"
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS idle_seconds double precision;"
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS ended text;"
            f"CREATE INDEX IF NOT EXISTS deploy_tokens_execution ON {table} (execution_id);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".deploy_tokens'
        for rec in events:
            e = rec.event
            if isinstance(e, DeployTokenIssued):
                await conn.execute(
                    f"INSERT INTO {table} (token_sha256, execution_id, machine_id, expires_at, client_ip, idle_seconds)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (token_sha256) DO NOTHING",
                    (e.token_sha256, e.execution_id, e.machine_id, e.expires_at, e.client_ip, e.idle_seconds),
                )
            elif isinstance(e, StepReported) and e.status is StepStatus.PROGRESS:
                await conn.execute(
                    f"UPDATE {table} SET expires_at = greatest(expires_at, %s + make_interval(secs => idle_seconds))"
                    " WHERE execution_id = %s AND idle_seconds IS NOT NULL AND ended IS NULL",
                    (rec.occurred_at, e.execution_id),
                )
            elif isinstance(e, StepReported):
                await self._end(conn, table, e.execution_id, f"its step reported {e.status.value}")
            elif isinstance(e, ExecutionCompleted | ExecutionFailed | ExecutionSuspended):
                await self._end(conn, table, e.execution_id, f"the execution {ENDED[type(e)]}")

    @staticmethod
    async def _end(conn: Conn, table: str, execution_id: object, why: str) -> None:
        await conn.execute(
            f"UPDATE {table} SET ended = %s WHERE execution_id = %s AND ended IS NULL", (why, execution_id)
        )


ENDED = {ExecutionCompleted: "completed", ExecutionFailed: "failed", ExecutionSuspended: "was suspended"}
