"""`dpm packages ...`: register packages (uploading their file to the updater, resumable), list,
show and remove them, and explain what applies to a machine; `dpm machines inventory M`.

An upload goes in pieces (``PATCH`` from the offset the updater holds); when a piece fails on the
way -- a cut connection, a restarting updater, a 5xx -- the CLI asks where the updater's copy ends
(``HEAD``) and goes on from there, a bounded number of times with backoff, so a large file over a
poor link is never sent twice.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from dpm_cli.client import EXIT_API_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, CliError, request
from dpm_cli.output import JsonOpt, table
from dpm_schemas import E

app = typer.Typer(help="Software packages: add, ls, show, rm, explain.", no_args_is_help=True)

PIECE = 8 << 20  # bytes per PATCH
ATTEMPTS = 8  # failed pieces in a row before giving up
OCTETS = "application/offset+octet-stream"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _refusal(r: httpx.Response) -> CliError:
    try:
        err = r.json()["error"]
        return CliError(f"{err['code']} {err['message']}\n  remedy: {err['remedy']}", EXIT_API_ERROR)
    except (ValueError, KeyError, TypeError):
        return CliError(f"updater answered HTTP {r.status_code}: {r.text[:300]}", EXIT_API_ERROR)


def upload(path: Path, grant: dict[str, Any], *, quiet: bool = False) -> str:
    """Send ``path`` under ``grant`` (from ``POST /packages/uploads``); the SHA-256 the updater kept."""
    url = f"{grant['updater_url']}/v1/uploads/{grant['upload_id']}"
    auth = {"Authorization": f"Bearer {grant['token']}"}
    size, failures = int(grant["size"]), 0
    with httpx.Client(timeout=300) as http, path.open("rb") as f:
        offset = 0
        while True:
            try:
                if failures:
                    offset = _held(http, url, auth)
                f.seek(offset)
                piece = f.read(PIECE)
                headers = {**auth, "Content-Type": OCTETS, "Upload-Offset": str(offset)}
                r = http.patch(url, content=piece, headers=headers)
            except httpx.HTTPError as exc:
                failures = _failed(failures, f"{type(exc).__name__}: {exc}")
                continue
            if r.status_code >= 500 or _elsewhere(r):  # a 5xx, or the updater holds another offset
                failures = _failed(failures, f"HTTP {r.status_code}")
                continue
            if r.status_code >= 400:
                raise _refusal(r)
            failures, offset = 0, int(r.headers["Upload-Offset"])
            if not quiet:
                print(f"\r  {offset * 100 // max(size, 1):3d}% of {size} bytes", end="", file=sys.stderr, flush=True)
            if r.status_code == 200:
                if not quiet:
                    print(file=sys.stderr)
                return str(r.json()["sha256"])


def _elsewhere(r: httpx.Response) -> bool:
    """DPM-E270: the updater's copy ends elsewhere than this piece started (an earlier piece's answer
    was lost on the way): ask where, and go on from there."""
    return r.status_code == 409 and E.PACKAGE_UPLOAD_OFFSET.code in r.text


def _held(http: httpx.Client, url: str, auth: dict[str, str]) -> int:
    r = http.head(url, headers=auth)
    if r.status_code >= 400:
        raise httpx.HTTPStatusError(f"HEAD answered {r.status_code}", request=r.request, response=r)
    return int(r.headers["Upload-Offset"])


def _failed(failures: int, why: str) -> int:
    """Count a failed piece; wait before the next try, or give up after ``ATTEMPTS`` in a row."""
    if failures + 1 >= ATTEMPTS:
        raise CliError(f"upload failed {ATTEMPTS} times in a row ({why}); run the command again", EXIT_UNREACHABLE)
    print(f"\n  upload interrupted ({why}); resuming", file=sys.stderr)
    time.sleep(min(30.0, 0.2 * 2**failures))
    return failures + 1


def _definition(definition: Path | None, fields: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(definition.read_text()) if definition else {}
    raw.update({k: v for k, v in fields.items() if v not in (None, "", False)})
    if "id" not in raw or "type" not in raw:
        raise CliError("a package needs --id and --type (or both in --definition)", EXIT_USAGE)
    return raw


def stage(file: Path, *, quiet: bool = False) -> str:
    """Upload ``file`` to the updater (resumable); the upload id a package or a put_file names."""
    wanted = {"size": file.stat().st_size, "sha256": _digest(file), "file_name": file.name}
    grant = request("POST", "/packages/uploads", json=wanted)
    upload(file, grant, quiet=quiet)
    return str(grant["upload_id"])


@app.command("add")
def packages_add(
    file: Annotated[Path | None, typer.Argument(help="The file it installs (a .deb, an rpm, a script).")] = None,
    package_id: Annotated[str | None, typer.Option("--id", help="Package ID: A-Z a-z 0-9 - _, at most 63.")] = None,
    kind: Annotated[str | None, typer.Option("--type", help="deb, rpm, script, linux-patch, hotfix, ...")] = None,
    definition: Annotated[Path | None, typer.Option(help="JSON with every field of the package.")] = None,
    urgency: Annotated[str | None, typer.Option(help="highest, high, normal (default), low.")] = None,
    system_package: Annotated[str | None, typer.Option(help="deb/rpm: the name dpkg or rpm knows.")] = None,
    system_version: Annotated[str | None, typer.Option(help="deb/rpm: the version it installs.")] = None,
    summary: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a package, uploading FILE first (resumable); again with the same --id: a new revision."""
    fields = {"id": package_id, "type": kind, "urgency": urgency, "summary": summary}
    fields |= {"system_package": system_package, "system_version": system_version}
    body: dict[str, Any] = {"definition": _definition(definition, fields)}
    if file is not None:
        if not file.is_file():
            raise CliError(f"{file}: not a readable file", EXIT_USAGE)
        body |= {"upload_id": stage(file, quiet=as_json), "file_name": file.name}
    shown = request("POST", "/packages", json=body)
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    p = shown["package"]
    content = f" ({shown['content']['sha256'][:12]})" if shown["content"] else ""
    print(f"registered {p['id']} revision {p['revision']}{content}")


@app.command("ls")
def packages_ls(as_json: JsonOpt = False) -> None:
    rows = request("GET", "/packages")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    flat = [{**r["package"], "size": (r["content"] or {}).get("size"), "at": r["registered_at"]} for r in rows]
    print(table(flat, ["id", "type", "urgency", "revision", "system_version", "size", "at"]))


@app.command("show")
def packages_show(package_id: str) -> None:
    print(json.dumps(request("GET", f"/packages/{package_id}"), indent=2))


@app.command("rm")
def packages_rm(package_id: str) -> None:
    request("DELETE", f"/packages/{package_id}")
    print(f"removed package {package_id}")


@app.command("explain")
def packages_explain(
    machine: Annotated[str, typer.Option(help="Machine name or id.")],
    package: Annotated[list[str] | None, typer.Option(help="Only these package IDs (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What applies to the machine, judged against its last inventory, and why (or why not)."""
    answer = request("GET", f"/machines/{machine}/packages", params={"package": package or []})
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    rows = [{**a, "why": "; ".join(r["text"] for r in a["reasons"])} for a in answer["packages"]]
    print(table(rows, ["package_id", "verdict", "why"]))
    if answer["install_order"]:
        print("install order: " + ", ".join(answer["install_order"]))


def machine_inventory(machine: str, as_json: JsonOpt = False) -> None:
    """What the machine's agent last reported: OS, kernel, installed packages."""
    inv = request("GET", f"/machines/{machine}/inventory")
    if as_json:
        print(json.dumps(inv, indent=2))
        return
    print(f"{inv['machine']}: {inv['os']} (kernel {inv['kernel']}), reported {inv['reported_at']}")
    for entry in inv["packages"]:
        print(f"  {entry}")
