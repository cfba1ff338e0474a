"""`dpm schedules ...`: one-shot or cron schedules of scenario runs and power actions."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dpm_cli.client import request
from dpm_cli.output import JsonOpt, table

app = typer.Typer(help="Schedules: run scenarios or power machines on/off, once or recurring.", no_args_is_help=True)


@app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    rows = request("GET", "/schedules")
    for r in rows:
        r["when"] = f"cron {r['cron']} {r['timezone']}" if r["cron"] else f"at {r['at']}"
        r["targets"] = ",".join([*(m[:8] for m in r["machine_ids"]), *([f"group:{r['group']}"] if r["group"] else [])])
    print(json.dumps(rows, indent=2) if as_json else table(rows, ["name", "action", "when", "targets", "enabled"]))


@app.command("add")
def schedules_add(
    name: str,
    action: Annotated[str, typer.Option(help="run | power-on | power-off")],
    scenario: Annotated[str | None, typer.Option(help="For runs.")] = None,
    on: Annotated[list[str] | None, typer.Option("--on", help="Machine name or id (repeatable).")] = None,
    group: Annotated[str | None, typer.Option()] = None,
    at: Annotated[str | None, typer.Option(help="One-shot, ISO 8601 (e.g. 2026-11-24T22:00:00Z).")] = None,
    cron: Annotated[str | None, typer.Option(help="Recurring, five fields (e.g. '0 22 * * 1-5').")] = None,
    timezone: Annotated[str, typer.Option(help="Time zone of --cron.")] = "UTC",
) -> None:
    """Add a schedule. Machines that run a scenario when it fires are skipped (and the skip recorded)."""
    body = {"name": name, "action": action, "scenario": scenario, "machines": on or [], "group": group,
            "at": at, "cron": cron, "timezone": timezone}  # fmt: skip
    saved = request("POST", "/schedules", json=body)
    print(f"schedule {saved['name']} ({saved['schedule_id']})")


@app.command("rm")
def schedules_rm(schedule_id: str) -> None:
    request("DELETE", f"/schedules/{schedule_id}")
    print(f"deleted schedule {schedule_id}")
