"""`dpm updates ...`: what remote updates did on the machines -- `history` (a table, JSON or a CSV
file) of the packages each agent reported installing or failing to install. `notify` goes here later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_USAGE, CliError, request
from dpm_cli.output import JsonOpt, table

app = typer.Typer(help="Remote updates: history, notify now.", no_args_is_help=True)

HISTORY_COLUMNS = ["reported_at", "machine", "package_id", "revision", "result", "code", "exit_code", "reboot",
                   "seconds", "message"]  # fmt: skip
MESSAGE_WIDTH = 60  # characters of a failure's message in the table (--json has it whole)


def history_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's reports as table rows: ok/failed, the reboot flag, a short one-line message."""
    shown = []
    for r in rows:
        first = (r["message"] or "").splitlines()[0] if r["message"] else ""
        message = first if len(first) <= MESSAGE_WIDTH else first[: MESSAGE_WIDTH - 1] + "…"
        shown.append({**r, "machine": r["machine"] or r["machine_id"], "result": "ok" if r["ok"] else "failed",
                      "reboot": "yes" if r["reboot_required"] else "", "seconds": f"{r['seconds']:.1f}",
                      "message": message or None})  # fmt: skip
    return shown


@app.command("history")
def updates_history(
    machine: Annotated[str | None, typer.Option(help="Only this machine (name or id).")] = None,
    package: Annotated[str | None, typer.Option(help="Only this package ID.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed installs.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the history as CSV to this file (no installer output).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Packages installed (or not) on the machines, newest first."""
    params: dict[str, Any] = {k: v for k, v in {"machine": machine, "package": package}.items() if v}
    if failed:
        params["result"] = "failed"
    if csv_file is not None:
        csv_file.write_text(request("GET", "/updates/history/export", params={**params, "limit": limit}, raw=True))
        print(f"wrote {csv_file}")
        return
    rows = request("GET", "/updates/history", params={**params, "limit": limit})
    print(json.dumps(rows, indent=2) if as_json else table(history_rows(rows), HISTORY_COLUMNS))


@app.command("notify")
def updates_notify(
    machines: Annotated[
        list[str] | None, typer.Argument(metavar="[MACHINE...]", help="Names or ids; none: all.")
    ] = None,
) -> None:
    """Notify now: push every applicable high and highest urgency package to these (or all) online
    machines at once, also those an automatic delivery failed on."""
    result = request("POST", "/updates/notify", json={"machines": machines or []})
    print(f"notified {len(result['machines']) or 'every online'} machine(s) (request {result['request_id']})")


@app.command("schedule")
def updates_schedule(
    machine: str,
    at: Annotated[str | None, typer.Option(help="HH:MM (24 h) in --timezone: high urgency comes due then.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA zone, e.g. Europe/Berlin.")] = "UTC",
    off: Annotated[bool, typer.Option("--off", help="No auto-update time: high urgency waits for notify.")] = False,
) -> None:
    """Set MACHINE's auto-update time: high-urgency packages registered before it are pushed then (or
    when the machine next comes online)."""
    if (at is None) != off:
        raise CliError("give --at HH:MM or --off", EXIT_USAGE)
    request("PUT", f"/machines/{machine}/auto-update", json={"at": at, "timezone": timezone})
    print(f"{machine}: auto-update {'off' if off else f'at {at} {timezone}'}")


@app.command("rollout")
def updates_rollout(
    package: str,
    ring: Annotated[list[str], typer.Option("--ring", help="A machine group; repeat, canary first.")],
    max_failure_rate: Annotated[float, typer.Option(min=0, max=1, help="A ring failing more halts.")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Roll PACKAGE out ring by ring: each group gets it once the one before ended within the failure rate."""
    started = request(
        "POST", "/rollouts", json={"package": package, "rings": ring, "max_failure_rate": max_failure_rate}
    )
    print(
        json.dumps(started, indent=2)
        if as_json
        else f"rollout {started['rollout_id']} of {package}: {started['state']}"
    )


@app.command("rollouts")
def updates_rollouts(as_json: JsonOpt = False) -> None:
    """Staged rollouts, newest first: the ring under way and how each ended."""
    rows = request("GET", "/rollouts")
    for r in rows:
        r["rings"] = " > ".join(f"{x['group']}({x['machines']})" for x in r["rings"])
    columns = ["rollout_id", "package_id", "revision", "rings", "ring", "state", "message"]
    print(json.dumps(rows, indent=2) if as_json else table(rows, columns))
