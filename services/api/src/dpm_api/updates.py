"""The machines' update history (issue 14): one row per package an agent reported installing, or
failing to install, on a delivery (``PackageInstallReported`` on ``delivery-<execution>``), kept
for the newest ``keep`` reports of each machine (DPM_API_UPDATE_HISTORY_KEEP).

A row is keyed by (execution, package): an agent that sends its final report again (its outbox
resends when the updater's answer was lost) replaces the row, not doubles it, and only with a later
position. The trim runs inside ``apply`` by log position per machine, so a rebuild -- which replays
the log into fresh tables in batches of any size -- keeps exactly the rows the live tables kept.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dpm_api.domain.csvfile import spreadsheet_safe
from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import PackageInstallReported

Result = Literal["ok", "failed"]
COLUMNS = ("machine_id", "execution_id", "package_id", "revision", "ok", "code", "exit_code", "message",
           "output_tail", "reboot_required", "seconds", "reported_at", "position")  # fmt: skip
ROW_KEYS = ("machine_id", "machine", *COLUMNS[1:])  # what ``history`` gives per row
CSV_COLUMNS = ["reported_at", "machine", "machine_id", "package_id", "revision", "result", "code", "exit_code",
               "message", "reboot_required", "seconds", "execution_id", "position"]  # fmt: skip


class UpdateHistory:
    """``api.update_history``; ``keep``: reports kept per machine, the newest by log position."""

    name = "update_history"
    schema = "api"
    tables = ("update_history",)
    event_types = (PackageInstallReported.wire_name,)

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep at least one report per machine")
        self.keep = keep

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".update_history (machine_id uuid NOT NULL,'
            " execution_id uuid NOT NULL, package_id text NOT NULL, revision integer NOT NULL, ok boolean NOT NULL,"
            " code text, exit_code integer, message text NOT NULL, output_tail text NOT NULL,"
            " reboot_required boolean NOT NULL, seconds double precision NOT NULL, reported_at timestamptz NOT NULL,"
            " position bigint NOT NULL, PRIMARY KEY (execution_id, package_id));"
            "CREATE INDEX IF NOT EXISTS update_history_machine"
            f' ON "{schema}".update_history (machine_id, position DESC);'
            f'CREATE INDEX IF NOT EXISTS update_history_position ON "{schema}".update_history (position DESC);'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".update_history'
        touched: list[uuid.UUID] = []
        for rec in events:
            e = rec.event
            if not isinstance(e, PackageInstallReported):
                continue
            o = e.outcome
            await conn.execute(
                f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
                " ON CONFLICT (execution_id, package_id) DO UPDATE SET machine_id = excluded.machine_id,"
                " revision = excluded.revision, ok = excluded.ok, code = excluded.code,"
                " exit_code = excluded.exit_code, message = excluded.message, output_tail = excluded.output_tail,"
                " reboot_required = excluded.reboot_required, seconds = excluded.seconds,"
                f" reported_at = excluded.reported_at, position = excluded.position"
                f" WHERE {t}.position < excluded.position",
                (
                    *(e.machine_id, e.execution_id, o.package_id, o.revision, o.ok, o.code, o.exit_code),
                    *(o.message, o.output_tail, o.reboot_required, o.seconds, rec.occurred_at, rec.position),
                ),
            )
            if e.machine_id not in touched:
                touched.append(e.machine_id)
        for machine_id in touched:
            await self._trim(conn, t, machine_id)

    async def _trim(self, conn: Conn, table: str, machine_id: uuid.UUID) -> None:
        """Drop the machine's rows older than its ``keep``-th newest (none while it has fewer)."""
        await conn.execute(
            f"DELETE FROM {table} WHERE machine_id = %s AND position < (SELECT position FROM {table}"
            " WHERE machine_id = %s ORDER BY position DESC OFFSET %s LIMIT 1)",
            (machine_id, machine_id, self.keep - 1),
        )


@dataclass(frozen=True)
class HistoryFilter:
    """Which reports to list, newest first: one machine (its id), one package, ok or failed only."""

    machine_id: uuid.UUID | None = None
    package: str | None = None
    result: Result | None = None
    limit: int = 200

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters (``TRUE`` when nothing is filtered)."""
        parts: list[str] = []
        params: list[Any] = []
        if self.machine_id is not None:
            parts.append("h.machine_id = %s")
            params.append(self.machine_id)
        if self.package is not None:
            parts.append("h.package_id = %s")
            params.append(self.package)
        if self.result is not None:
            parts.append("h.ok" if self.result == "ok" else "NOT h.ok")
        return (" AND ".join(parts) or "TRUE"), params


async def history(conn: Conn, f: HistoryFilter, *, output: bool = False) -> list[dict[str, Any]]:
    """The reports ``f`` selects with their machine's name (None once the machine is gone);
    ``output_tail`` only with ``output`` (up to 64 KiB each)."""
    where, params = f.where()
    tail = "h.output_tail" if output else "NULL"
    cur = await conn.execute(
        "SELECT h.machine_id, m.name, h.execution_id, h.package_id, h.revision, h.ok, h.code, h.exit_code,"
        f" h.message, {tail}, h.reboot_required, h.seconds, h.reported_at, h.position"
        " FROM api.update_history h LEFT JOIN api.machines m ON m.machine_id = h.machine_id"
        f" WHERE {where} ORDER BY h.position DESC LIMIT %s",
        (*params, f.limit),
    )
    return [dict(zip(ROW_KEYS, r, strict=True)) for r in await cur.fetchall()]


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as CSV (no output tails), every cell made safe against formula injection."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {**row, "result": "ok" if row["ok"] else "failed"}
        cells["reported_at"] = row["reported_at"].isoformat()
        writer.writerow({k: spreadsheet_safe(_text(v)) for k, v in cells.items()})
    return out.getvalue()


def _text(value: object) -> object:
    """UUIDs as their text (so ``spreadsheet_safe`` sees every string cell); the rest as is."""
    return str(value) if isinstance(value, uuid.UUID) else value
