"""`dpm schedules edit|pause|resume`: an edit sends the whole definition back with the version it
read (so the API refuses it, DPM-E184, if the schedule changed meanwhile), keeping what is not given;
--cron replaces a one-shot time; pause and resume send only ``enabled``."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from dpm_cli import schedules

CURRENT = {
    "schedule_id": "s-1", "name": "nightly", "action": "run", "scenario_id": "sc-1", "machine_ids": ["m-1"],
    "group": None, "at": "2030-01-01T22:00:00Z", "cron": None, "timezone": "UTC", "enabled": True, "version": 3,
}  # fmt: skip


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    made: list[tuple[str, str, Any]] = []

    def request(method: str, path: str, **kwargs: Any) -> Any:
        made.append((method, path, kwargs.get("json")))
        return CURRENT if method == "GET" else {**CURRENT, **(kwargs.get("json") or {})}

    monkeypatch.setattr(schedules, "request", request)
    return made


def test_edit_keeps_what_is_not_given_and_names_the_version(calls: list[tuple[str, str, Any]]) -> None:
    done = CliRunner().invoke(schedules.app, ["edit", "s-1", "--cron", "0 3 * * *", "--on", "pc-2"])
    assert done.exit_code == 0, done.output
    assert [c[:2] for c in calls] == [("GET", "/schedules/s-1"), ("PUT", "/schedules/s-1")]
    body = calls[1][2]
    assert body["cron"] == "0 3 * * *" and body["at"] is None and body["machines"] == ["pc-2"]
    assert body["name"] == "nightly" and body["scenario"] == "sc-1" and body["version"] == 3
    assert "version 3" in done.output


@pytest.mark.parametrize(("command", "enabled"), [("pause", False), ("resume", True)])
def test_pause_and_resume(calls: list[tuple[str, str, Any]], command: str, enabled: bool) -> None:
    done = CliRunner().invoke(schedules.app, [command, "s-1"])
    assert done.exit_code == 0, done.output
    assert calls == [("PATCH", "/schedules/s-1", {"enabled": enabled})]
