"""The update history's pure parts: which SQL condition a filter gives, the CSV (safe against
formula injection, no installer output), and the projection's refusal to keep nothing."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from dpm_api.domain.csvfile import unquote
from dpm_api.updates import CSV_COLUMNS, HistoryFilter, UpdateHistory, render_csv

MACHINE = uuid.UUID("00000000-0000-0000-0000-0000000000a1")


def report(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "machine_id": MACHINE,
        "machine": "web-01",
        "execution_id": uuid.UUID("00000000-0000-0000-0000-0000000000e1"),
        "package_id": "hello",
        "revision": 2,
        "ok": False,
        "code": "DPM-E234",
        "exit_code": 3,
        "message": "the install script failed",
        "output_tail": "secret installer output",
        "reboot_required": False,
        "seconds": 1.5,
        "reported_at": datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        "position": 42,
    }
    return {**row, **overrides}


@pytest.mark.parametrize(
    ("f", "where", "params"),
    [
        (HistoryFilter(), "TRUE", []),
        (HistoryFilter(machine_id=MACHINE), "h.machine_id = %s", [MACHINE]),
        (HistoryFilter(package="hello", result="ok"), "h.package_id = %s AND h.ok", ["hello"]),
        (
            HistoryFilter(machine_id=MACHINE, package="hello", result="failed"),
            "h.machine_id = %s AND h.package_id = %s AND NOT h.ok",
            [MACHINE, "hello"],
        ),
    ],
)
def test_a_filter_gives_its_condition_with_parameters_never_values_in_the_sql(
    f: HistoryFilter, where: str, params: list[Any]
) -> None:
    assert f.where() == (where, params)


def test_the_csv_has_no_output_and_every_hostile_cell_is_made_safe() -> None:
    hostile = "=cmd|' /C calc'!A0"
    text = render_csv([report(message=hostile, machine="+web"), report(ok=True, code=None, exit_code=0, message="")])
    assert "secret installer output" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["message"] == "'" + hostile and unquote(rows[0]["message"]) == hostile
    assert rows[0]["machine"] == "'+web"
    assert (rows[0]["result"], rows[0]["code"], rows[0]["exit_code"]) == ("failed", "DPM-E234", "3")
    assert (rows[1]["result"], rows[1]["code"], rows[1]["message"]) == ("ok", "", "")
    assert rows[1]["reported_at"] == "2026-12-01T08:00:00+00:00" and rows[1]["machine_id"] == str(MACHINE)


def test_a_history_keeps_at_least_one_report_per_machine() -> None:
    assert UpdateHistory(1).keep == 1
    with pytest.raises(ValueError, match="at least one"):
        UpdateHistory(0)
