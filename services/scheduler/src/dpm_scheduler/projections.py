"""The scheduler's read models, fed from the log in order (``Wiring.projections``); each one is
rebuildable with ``dpm admin rebuild scheduler.<name>``.

- ``presence`` (``dpm_runtime.directory.Presence``): whether each machine's agent is online (a
  power-on of a running machine answers at once; a start picks wake or run).
- ``scenario_directory``: each scenario's last definition (a schedule's run starts its current
  revision), kept as type, version and payload so it decodes correctly after an upcast.

Reactions that read them first call ``require_position`` with the position of the event they
handle, so they never decide on a copy older than that event; the schedules' round waits likewise
until the scenario directory has applied the schedule's definition. Every row keeps the position of
its last event and is guarded by it, so an admin's retry of a quarantined event never overwrites a
newer one.
"""

from __future__ import annotations

from collections.abc import Sequence

from dpm_runtime.eventlog import Conn
from dpm_schemas import codec
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ScenarioDeleted, ScenarioSaved

SCHEMA = "scheduler"
PRESENCE = f"{SCHEMA}.presence"  # full names (the service runs them as "scheduler.<name>"): checkpoints
SCENARIOS = f"{SCHEMA}.scenario_directory"


class ScenarioDirectory:
    """``scheduler.scenario_directory``: each scenario's last ScenarioSaved (type, version, payload)."""

    name = "scenario_directory"
    schema = SCHEMA
    tables = ("scenario_directory",)
    event_types = (ScenarioSaved.wire_name, ScenarioDeleted.wire_name)

    def ddl(self, schema: str) -> str:
        table = f'"{schema}".scenario_directory'
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (scenario_id uuid PRIMARY KEY, type text, version integer,"
            " payload bytea NOT NULL, deleted boolean NOT NULL DEFAULT false, position bigint NOT NULL);"
            # a table from before the version was kept: its rows are rewritten as the projection replays
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS type text;"
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS version integer;"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, ScenarioSaved):
                await conn.execute(
                    f'INSERT INTO "{schema}".scenario_directory (scenario_id, type, version, payload, position)'
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scenario_id) DO UPDATE SET type = excluded.type,"
                    " version = excluded.version, payload = excluded.payload, deleted = false,"
                    f' position = excluded.position WHERE "{schema}".scenario_directory.position < excluded.position',
                    (e.scenario_id, e.wire_name, e.wire_version, codec.encode_payload(e), rec.position),
                )
            elif isinstance(e, ScenarioDeleted):
                await conn.execute(
                    f'UPDATE "{schema}".scenario_directory SET deleted = true, position = %s'
                    " WHERE scenario_id = %s AND position < %s",
                    (rec.position, e.scenario_id, rec.position),
                )
