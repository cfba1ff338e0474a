"""pxe's own state: the boot settings in force, the pending netboots, the leases of full mode and the
recent boots -- kept from events by one consumer, read per packet and per script request.

The settings are also held in memory (``BootState``) because the DHCP listener reads them for every
packet; the consumer updates table and memory together, so switching the mode needs no restart.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.eventlog import Conn
from dpm_schemas import codec
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import BootSettingsChanged, NetbootCleared, NetbootRequested
from dpm_schemas.events.boot import DhcpMode
from dpm_schemas.subjects import durable_name

log = logging.getLogger(__name__)

SCHEMA = "pxe"

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.boot_settings ("
    " id int PRIMARY KEY CHECK (id = 1), payload bytea NOT NULL, position bigint NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.netboot ("
    " machine_id uuid PRIMARY KEY, execution_id uuid NOT NULL, expires_at timestamptz, position bigint NOT NULL)",
    # one row per address in use: offered (short hold), bound (a lease) or declined (in use by someone else)
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.leases ("
    " ip inet PRIMARY KEY, mac text NOT NULL, state text NOT NULL CHECK (state IN ('offered', 'bound', 'declined')),"
    " expires_at timestamptz NOT NULL, hostname text, updated_at timestamptz NOT NULL DEFAULT now())",
    f"CREATE INDEX IF NOT EXISTS leases_mac ON {SCHEMA}.leases (mac)",
    f"CREATE INDEX IF NOT EXISTS machine_directory_ip ON {SCHEMA}.machine_directory (ip)",  # full-mode reservations
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.recent_boots ("
    " id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), mac text NOT NULL, arch text NOT NULL,"
    " client_ip text, stage text NOT NULL, machine_id uuid, decision text NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS recent_boots_mac ON {SCHEMA}.recent_boots (mac, id DESC)",
    # the last netboot request or clear this service has applied: a "boot locally" answer first
    # makes sure it is not behind the log (the scheduler wakes a machine right after requesting)
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.netboot_progress ("
    " id int PRIMARY KEY CHECK (id = 1), position bigint NOT NULL)",
]


@dataclass
class BootState:
    """The boot settings in force. ``default_mode`` applies until an operator saves settings once."""

    default_mode: DhcpMode = DhcpMode.OFF
    settings: BootSettingsChanged | None = None
    position: int = 0
    changed: list[DhcpMode] = field(default_factory=list)  # modes applied, for the log and tests

    @property
    def current(self) -> BootSettingsChanged:
        return self.settings or BootSettingsChanged(mode=self.default_mode)

    def apply(self, settings: BootSettingsChanged, position: int) -> None:
        if position <= self.position:
            return
        if self.settings is None or self.settings.mode != settings.mode:
            log.info("DHCP mode is now %s", settings.mode.value)
        self.settings, self.position = settings, position
        self.changed.append(settings.mode)

    async def load(self, conn: Conn) -> None:
        row = await (await conn.execute(f"SELECT payload, position FROM {SCHEMA}.boot_settings")).fetchone()
        if row is not None:
            event = codec.decode_payload("BootSettingsChanged", 1, bytes(row[0]))
            assert isinstance(event, BootSettingsChanged)
            self.apply(event, int(row[1]))


@dataclass(frozen=True)
class Pending:
    execution_id: uuid.UUID
    expires_at: datetime | None


async def pending_netboot(conn: Conn, machine_id: uuid.UUID) -> Pending | None:
    row = await (
        await conn.execute(
            f"SELECT execution_id, expires_at FROM {SCHEMA}.netboot WHERE machine_id = %s", (machine_id,)
        )
    ).fetchone()
    return Pending(row[0], row[1]) if row else None


async def _progress(conn: Conn, position: int) -> None:
    await conn.execute(
        f"INSERT INTO {SCHEMA}.netboot_progress (id, position) VALUES (1, %s) ON CONFLICT (id) DO UPDATE"
        f" SET position = greatest({SCHEMA}.netboot_progress.position, excluded.position)",
        (position,),
    )


async def netboot_lag(conn: Conn) -> bool:
    """True while the log holds a netboot request or clear this service has not applied yet."""
    row = await (
        await conn.execute(
            "SELECT (SELECT coalesce(max(position), 0) FROM events"
            " WHERE type IN ('NetbootRequested', 'NetbootCleared'))"
            f" > coalesce((SELECT position FROM {SCHEMA}.netboot_progress WHERE id = 1), 0)"
        )
    ).fetchone()
    return bool(row and row[0])


def boot_consumer(state: BootState) -> ConsumerSpec:
    async def settings_changed(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, BootSettingsChanged)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.boot_settings (id, payload, position) VALUES (1, %s, %s) ON CONFLICT (id)"
            f" DO UPDATE SET payload = excluded.payload, position = excluded.position"
            f" WHERE {SCHEMA}.boot_settings.position < excluded.position",
            (codec.encode_payload(e), rec.position),
        )
        state.apply(e, rec.position)

    async def requested(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, NetbootRequested)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.netboot (machine_id, execution_id, expires_at, position) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (machine_id) DO UPDATE SET execution_id = excluded.execution_id,"
            f" expires_at = excluded.expires_at, position = excluded.position"
            f" WHERE {SCHEMA}.netboot.position < excluded.position",
            (e.machine_id, e.execution_id, e.expires_at, rec.position),
        )
        await _progress(conn, rec.position)

    async def cleared(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, NetbootCleared)
        await conn.execute(
            f"DELETE FROM {SCHEMA}.netboot WHERE machine_id = %s AND execution_id = %s AND position < %s",
            (e.machine_id, e.execution_id, rec.position),
        )
        # the execution's deploy token is no longer handed out (the api refuses it from now on too)
        await conn.execute(f"DELETE FROM {SCHEMA}.deploy_tokens WHERE execution_id = %s", (e.execution_id,))
        await _progress(conn, rec.position)

    return ConsumerSpec(
        durable=durable_name("pxe", "boot-state"),
        handlers={BootSettingsChanged: settings_changed, NetbootRequested: requested, NetbootCleared: cleared},
    )
