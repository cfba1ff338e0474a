"""pxe's schema and the tables it writes itself -- the leases of full mode and the recent boots --
and the boot settings in memory following their row.

The settings and the netboots are projections of the log (``projections``). The settings are also
held in memory (``domain.bootstate.BootState``) because the DHCP listener reads them for every
packet; memory follows the ``boot_settings`` row (``follow``), whatever wrote it -- the live runner
or a rebuild's swap -- so switching the mode needs no restart and a rebuilt table is what the
listener answers by.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.domain.bootstate import BootState
from dpm_runtime.eventlog import Conn
from dpm_runtime.projection import ProjectionRunner
from dpm_runtime.wake import idle
from dpm_schemas import codec
from dpm_schemas.events import BootSettingsChanged

log = logging.getLogger(__name__)

SCHEMA = "pxe"
FOLLOW_POLL = 1.0  # seconds between re-reads of the settings row when no batch wakes the follower

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    # one row per address in use: offered (short hold), bound (a lease) or declined (in use by someone else)
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.leases ("
    " ip inet PRIMARY KEY, mac text NOT NULL, state text NOT NULL CHECK (state IN ('offered', 'bound', 'declined')),"
    " expires_at timestamptz NOT NULL, hostname text, updated_at timestamptz NOT NULL DEFAULT now())",
    f"CREATE INDEX IF NOT EXISTS leases_mac ON {SCHEMA}.leases (mac)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.recent_boots ("
    " id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), mac text NOT NULL, arch text NOT NULL,"
    " client_ip text, stage text NOT NULL, machine_id uuid, decision text NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS recent_boots_mac ON {SCHEMA}.recent_boots (mac, id DESC)",
    # what the boot consumer kept of its progress; the netboot projection's checkpoint says it now
    f"DROP TABLE IF EXISTS {SCHEMA}.netboot_progress",
]


async def load_settings(conn: Conn) -> tuple[BootSettingsChanged | None, int]:
    """The ``boot_settings`` row (and its position; 0 without one), decoded at the type and version it
    was stored with."""
    cur = await conn.execute(f"SELECT type, version, payload, position FROM {SCHEMA}.boot_settings")
    row = await cur.fetchone()
    if row is None:
        return None, 0
    event = codec.decode_payload(row[0], int(row[1]), bytes(row[2]))
    if not isinstance(event, BootSettingsChanged):
        raise TypeError(f"{SCHEMA}.boot_settings holds a {type(event).__name__}")
    return event, int(row[3])


async def follow(
    state: BootState, pool: AsyncConnectionPool[Conn], runner: ProjectionRunner, stop: asyncio.Event
) -> None:
    """Keep ``state`` equal to the table: re-read after every batch the runner applies, and every
    ``FOLLOW_POLL`` seconds for what no batch of this process announces (a rebuild's swap, another
    replica's runner)."""
    while not stop.is_set():
        seen = runner.position
        try:
            async with pool.connection() as conn:
                state.follow(*await load_settings(conn))
        except Exception as exc:  # the listener keeps the settings it has
            log.warning("boot settings not re-read: %r", exc)
        await runner.wait_for(seen + 1, timeout=FOLLOW_POLL)
        if runner.position == seen:  # woken by another replica's progress (or the poll): breathe
            await idle(0.05, stop)
