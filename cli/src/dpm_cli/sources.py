"""`dpm sources ...`: package sources (Debian-format or RPM repositories the updater syncs and
offers packages of): add (or change), ls, show, rm, sync (now). A proxy's credentials are never given
here: they are the updater's settings (DPM_UPDATER_SOURCE_CREDENTIALS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_USAGE, CliError, request
from dpm_cli.output import JsonOpt, table

app = typer.Typer(help="Package sources (Debian or RPM repositories): add, ls, show, rm, sync.", no_args_is_help=True)


@app.command("add")
def sources_add(
    name: str,
    url: Annotated[
        str, typer.Option(help="http(s) base of the repository (deb: <url>/dists/..., rpm: <url>/repodata/).")
    ],
    include: Annotated[list[str], typer.Option(help="Package name glob to offer (repeat; required).")],
    suite: Annotated[str | None, typer.Option(help="deb only; default stable.")] = None,
    component: Annotated[list[str] | None, typer.Option(help="Component (repeat; deb only); default main.")] = None,
    arch: Annotated[
        list[str] | None, typer.Option(help="Architecture (repeat); deb default amd64, rpm default every one.")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="The repository's public key (gpg --armor --export).")] = None,
    urgency: Annotated[str, typer.Option(help="Of the packages it offers: highest, high, normal, low.")] = "normal",
    interval: Annotated[int, typer.Option(help="Minutes between syncs.")] = 360,
    proxy: Annotated[str | None, typer.Option(help="http://host:port (credentials: the updater's settings).")] = None,
    no_verify_tls: Annotated[bool, typer.Option("--no-verify-tls", help="Do not check https certificates.")] = False,
    as_json: JsonOpt = False,
    kind: Annotated[str, typer.Option(help="deb (a Debian-format repository) or rpm (an RPM repository).")] = "deb",
) -> None:
    """Add a source, or replace the settings of the one of that NAME; the updater syncs it at once."""
    if key is not None and not key.is_file():
        raise CliError(f"{key}: not a readable file", EXIT_USAGE)
    # what is not given (None), the api defaults by kind
    body: dict[str, Any] = {
        "name": name, "kind": kind, "url": url, "suite": suite, "components": component, "architectures": arch,
        "include": include, "urgency": urgency, "interval_minutes": interval, "proxy": proxy,
        "verify_tls": not no_verify_tls, "key": key.read_text() if key else None,
    }  # fmt: skip
    shown = request("POST", "/sources", json=body)
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    signed = "signed" if shown["signed"] else "unsigned"
    print(f"saved source {shown['name']} ({signed}); {shown['kind']}, syncing now")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    last = row.get("last_sync") or {}
    counts = last.get("counts") or {}
    status = "never" if not last else ("ok" if last["ok"] else last["code"])
    return {**row, "kind": row.get("kind", "deb"), "suite": row.get("suite") or "", "status": status,
            "at": last.get("at", ""), "offered": row["offered_total"], "listed": counts.get("listed", "")}  # fmt: skip


@app.command("ls")
def sources_ls(as_json: JsonOpt = False) -> None:
    rows = request("GET", "/sources")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    columns = ["name", "kind", "url", "suite", "urgency", "status", "at", "listed", "offered"]
    print(table([_flat(r) for r in rows], columns))


@app.command("show")
def sources_show(name: str) -> None:
    print(json.dumps(request("GET", f"/sources/{name}"), indent=2))


@app.command("rm")
def sources_rm(name: str) -> None:
    """Remove a source: no more syncs; the packages it offered stay in the catalogue."""
    request("DELETE", f"/sources/{name}")
    print(f"removed source {name}")


@app.command("sync")
def sources_sync(name: str) -> None:
    """Sync now; `dpm sources show NAME` gives the outcome (last_sync) once the updater recorded it."""
    answer = request("POST", f"/sources/{name}/sync")
    print(f"sync of {name} requested ({answer['request_id']})")
