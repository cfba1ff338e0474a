"""`dpm admin quarantine`: events a read model could not apply, set aside so it kept advancing."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dpm_cli.client import request
from dpm_cli.output import JsonOpt, table

app = typer.Typer(help="Events a projection set aside (list, retry, skip).", no_args_is_help=True)
ProjectionOpt = Annotated[str | None, typer.Option("--projection", "-p", help="Only this projection.")]


@app.command("list")
def quarantine_list(projection: ProjectionOpt = None, as_json: JsonOpt = False) -> None:
    """Quarantined and skipped events, with the error each met."""
    rows = request("GET", "/admin/quarantine", params={"projection": projection} if projection else {})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    # error texts are printable already (the server escapes control characters before storing them)
    print(table(rows, ["projection", "position", "type", "status", "attempts", "recorded_at", "error"]))


@app.command("retry")
def quarantine_retry(projection: str, position: int) -> None:
    """Apply the event again (after fixing the cause); it leaves the quarantine when it applies."""
    marked = request("POST", f"/admin/quarantine/{projection}/{position}/retry")
    if marked:  # another service's read model: it applies the event within its quarantine poll
        print(f"{projection}: position {position} marked for retry by the service that owns it")
        return
    print(f"{projection}: position {position} applied; no longer quarantined")


@app.command("skip")
def quarantine_skip(projection: str, position: int) -> None:
    """Leave the read model without the event for good (kept on record as skipped)."""
    request("POST", f"/admin/quarantine/{projection}/{position}/skip")
    print(f"{projection}: position {position} skipped")
