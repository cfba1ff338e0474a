"""`dpm files put|rm|ls`: file distribution to machines' agents, and the machine lookup and command
call the other machine commands share. A file larger than a command frame goes by the updater:
uploaded first (resumable), then fetched by the agent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dpm_cli import packages
from dpm_cli.client import EXIT_USAGE, CliError, request
from dpm_cli.output import JsonOpt, table
from dpm_schemas.agent_protocol import MAX_FILE

files = typer.Typer(help="File distribution to machines' agents.", no_args_is_help=True)


def find_machine(ref: str) -> dict[str, Any]:
    """A machine by id, name or MAC; an ambiguous or unknown reference is a usage error."""
    rows = request("GET", "/machines")
    wanted = ref.lower().replace("-", ":")
    hits = [m for m in rows if ref in (m["machine_id"], m["name"]) or wanted in m["macs"]]
    if len(hits) != 1:
        raise CliError(f"{'no' if not hits else 'several'} machine(s) match {ref!r}; use the machine id", EXIT_USAGE)
    found: dict[str, Any] = hits[0]
    return found


def command(ref: str, body: dict[str, Any]) -> dict[str, Any]:
    row = find_machine(ref)
    result: dict[str, Any] = request("POST", f"/machines/{row['machine_id']}/commands", json=body)
    return result


@files.command("put")
def files_put(
    local: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    machine: str,
    path: str,
    mode: Annotated[str, typer.Option(help="Octal permissions.")] = "644",
) -> None:
    """Copy LOCAL to PATH on MACHINE (inside the agent's allowed directories); one larger than a
    command frame goes by the updater, uploaded first (resumable), and the agent fetches it."""
    body: dict[str, Any] = {"action": "put_file", "path": path, "mode": int(mode, 8)}
    if local.stat().st_size > MAX_FILE:
        body |= {"upload_id": packages.stage(local), "timeout": 3600}
    else:
        body["content_base64"] = base64.b64encode(local.read_bytes()).decode()
    command(machine, body)
    print(f"{local} -> {machine}:{path}")


@files.command("rm")
def files_rm(machine: str, path: str) -> None:
    """Delete PATH on MACHINE."""
    command(machine, {"action": "delete_file", "path": path})
    print(f"deleted {machine}:{path}")


@files.command("ls")
def files_ls(machine: str, path: str, as_json: JsonOpt = False) -> None:
    """List the directory PATH on MACHINE."""
    entries = command(machine, {"action": "list_dir", "path": path})["entries"]
    print(json.dumps(entries, indent=2) if as_json else table(entries, ["type", "size", "name"]))
