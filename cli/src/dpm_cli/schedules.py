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


@app.command("edit")
def schedules_edit(
    schedule_id: str,
    name: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option(help="run | power-on | power-off")] = None,
    scenario: Annotated[str | None, typer.Option(help="For runs.")] = None,
    on: Annotated[list[str] | None, typer.Option("--on", help="Machine name or id (repeatable; replaces).")] = None,
    group: Annotated[str | None, typer.Option()] = None,
    at: Annotated[str | None, typer.Option(help="One-shot instead, ISO 8601.")] = None,
    cron: Annotated[str | None, typer.Option(help="Recurring instead, five fields.")] = None,
    timezone: Annotated[str | None, typer.Option(help="Time zone of --cron.")] = None,
) -> None:
    """Change a schedule (same id); what is not given stays. Refused (DPM-E184) if it changed meanwhile."""
    cur = request("GET", f"/schedules/{schedule_id}")
    when = (
        {"at": at, "cron": None}
        if at
        else {"at": None, "cron": cron}
        if cron
        else {"at": cur["at"], "cron": cur["cron"]}
    )
    body = {"name": name or cur["name"], "action": action or cur["action"], "scenario": scenario or cur["scenario_id"],
            "machines": on if on is not None else cur["machine_ids"], "group": group or cur["group"], **when,
            "timezone": timezone or cur["timezone"], "enabled": cur["enabled"], "version": cur["version"]}  # fmt: skip
    saved = request("PUT", f"/schedules/{schedule_id}", json=body)
    print(f"schedule {saved['name']} ({saved['schedule_id']}) saved, version {saved['version']}")


@app.command("pause")
def schedules_pause(schedule_id: str) -> None:
    """It does not fire until resumed."""
    saved = request("PATCH", f"/schedules/{schedule_id}", json={"enabled": False})
    print(f"paused schedule {saved['name']}")


@app.command("resume")
def schedules_resume(schedule_id: str) -> None:
    """It fires at its next time (the firings missed while paused are not made up)."""
    saved = request("PATCH", f"/schedules/{schedule_id}", json={"enabled": True})
    print(f"resumed schedule {saved['name']}")
