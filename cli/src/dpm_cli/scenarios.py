"""`dpm scenarios ...`, `dpm run`, `dpm executions` (and `dpm executions logs ID`), `dpm clear`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_API_ERROR, EXIT_USAGE, CliError, reconnecting_events, request
from dpm_cli.deploylogs import LogPart, execution_logs
from dpm_cli.output import JsonOpt, table

app = typer.Typer(
    help="Scenarios: what runs on machines (backup, restore, OS install, updates...).", no_args_is_help=True
)

LOGS_USAGE = "logs EXECUTION_ID [--part console|dmesg|client] [-o FILE]"
EXECUTION_COLUMNS = ["machine", "scenario", "revision", "state", "percent", "code", "queued_at", "ended_at"]


def spec_from(
    kind: str,
    reboot_at_start: bool,
    power_off_at_end: bool,
    timeout: int,
    multicast: str | None,
    max_targets: int | None,
    max_wait: int | None,
    params: list[str],
    deploy_end: str | None = None,
) -> dict[str, Any]:
    pairs = {}
    for p in params:
        key, sep, value = p.partition("=")
        if not sep:
            raise CliError(f"--param {p!r}: expected KEY=VALUE", EXIT_USAGE)
        pairs[key] = value
    spec: dict[str, Any] = {
        "kind": kind,
        "reboot_at_start": reboot_at_start,
        "power_off_at_end": power_off_at_end,
        "timeout_seconds": timeout,
        "params": pairs,
    }
    if deploy_end:
        spec["deploy_end"] = deploy_end
    if multicast:
        spec["multicast"] = {"group": multicast, "max_targets": max_targets, "max_wait_seconds": max_wait}
    return spec


@app.command("list")
def scenarios_list(as_json: JsonOpt = False) -> None:
    """Scenarios with their kind and revision."""
    rows = request("GET", "/scenarios")
    for r in rows:
        r["kind"] = r["spec"]["kind"]
    print(json.dumps(rows, indent=2) if as_json else table(rows, ["name", "kind", "revision", "scenario_id"]))


@app.command("save")
def scenarios_save(
    name: str,
    kind: Annotated[
        str, typer.Option(help="backup | restore | disk-check | os-install | remote-update | firmware | simulated")
    ],
    reboot_at_start: Annotated[bool, typer.Option(help="Reboot a powered-on machine into the network boot.")] = False,
    power_off_at_end: Annotated[bool, typer.Option()] = False,
    deploy_end: Annotated[
        str | None,
        typer.Option(help="After a netboot step: reboot (into the disk; the default) | power-off | stay (debug)."),
    ] = None,
    timeout: Annotated[int, typer.Option(help="Execution timeout, seconds.")] = 3600,
    multicast: Annotated[
        str | None, typer.Option(help="Multicast group (restore, remote update); else unicast.")
    ] = None,
    max_targets: Annotated[int | None, typer.Option()] = None,
    max_wait: Annotated[int | None, typer.Option(help="Seconds.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, kind-specific (e.g. seconds=5).")] = None,
) -> None:
    """Create a scenario, or save a new revision of an existing one (by name)."""
    body = {
        "name": name,
        "spec": spec_from(
            kind, reboot_at_start, power_off_at_end, timeout, multicast, max_targets, max_wait, param or [], deploy_end
        ),
    }
    existing = {r["name"] for r in request("GET", "/scenarios")}
    saved = (
        request("PUT", f"/scenarios/{name}", json=body)
        if name in existing
        else request("POST", "/scenarios", json=body)
    )
    print(f"scenario {saved['name']} revision {saved['revision']} ({saved['scenario_id']})")


@app.command("rm")
def scenarios_rm(name: str) -> None:
    """Delete a scenario (runs in flight keep their revision)."""
    request("DELETE", f"/scenarios/{name}")
    print(f"deleted scenario {name}")


def run(
    scenario: str,
    on: Annotated[list[str] | None, typer.Option("--on", help="Machine name or id (repeatable).")] = None,
    group: Annotated[str | None, typer.Option(help="Every machine of this group.")] = None,
    at: Annotated[str | None, typer.Option(help="Not before this time, ISO 8601 (e.g. 2026-11-24T22:00:00Z).")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until every execution ends.")] = False,
    reconnect_timeout: Annotated[
        float, typer.Option(min=0, help="With --wait: how long to keep reconnecting to a lost API, seconds.")
    ] = 300.0,
    dry_run: Annotated[bool, typer.Option(help="Show machines, steps, conflicts and waits; run nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a scenario on machines now (or at a time); --wait shows progress and exits 1 if any failed."""
    body = {"machines": on or [], "group": group, "at": at}
    if dry_run:
        p = request("POST", f"/scenarios/{scenario}/runs", params={"dry_run": "true"}, json=body)
        if as_json:
            print(json.dumps(p, indent=2))
            return
        print(f"{p['scenario']} revision {p['revision']} ({p['kind']}), {p['executions_ahead']} execution(s) ahead")
        if p["multicast"]:
            print(f"multicast: {p['multicast']}")
        print(table(p["machines"], ["machine", "online", "start", "waits_for", "problem"]))
        print("would run" if p["would_run"] else "would be refused: " + "; ".join(p["conflicts"]))
        return
    started = request("POST", f"/scenarios/{scenario}/runs", json=body)
    if not wait:
        print(
            json.dumps(started, indent=2)
            if as_json
            else f"run {started['run_id']}: {len(started['machines'])} machine(s)"
        )
        return
    follow(started["run_id"], len(started["machines"]), reconnect_for=reconnect_timeout)
    rows = request("GET", "/executions", params={"run_id": started["run_id"]})
    print(json.dumps(rows, indent=2) if as_json else table(rows, EXECUTION_COLUMNS))
    if any(r["state"] == "failed" for r in rows):
        raise CliError("some executions failed; see the codes above (`dpm clear MACHINE` after fixing)", EXIT_API_ERROR)


def follow(run_id: str, total: int, *, reconnect_for: float = 300.0) -> None:
    """Live progress from the API's event stream: state changes, and image transfers with their
    rate and time left (at most one line per machine every few seconds). A lost connection is
    made again (``reconnect_for``); what a new one repeats is not shown twice."""
    states: dict[str, str] = {}
    seen: dict[str, tuple[Any, ...]] = {}
    shown: dict[str, float] = {}
    events = reconnecting_events("/executions/stream", {"run_id": run_id}, reconnect_for=reconnect_for, say=_note)
    for event, data in events:
        if event == "execution":
            key = (data["state"], data.get("percent"), data.get("code"))
            if seen.get(data["execution_id"]) == key:
                continue  # a new connection's repeat of the current state
            seen[data["execution_id"]] = key
            states[data["execution_id"]] = data["state"]
            done = sum(s in ("completed", "failed") for s in states.values())
            code = f" {data['code']}" if data.get("code") else ""
            print(f"[{done}/{total}] {data['machine']}: {data['state']}{code}", flush=True)
        elif event == "transfer" and time.monotonic() - shown.get(data["execution_id"], 0) >= 3:
            shown[data["execution_id"]] = time.monotonic()
            eta = f", {data['eta_seconds']:.0f} s left" if data.get("eta_seconds") is not None else ""
            print(f"      {data['direction']} {data['image']}: {data['bytes_done'] >> 20} of "
                  f"{data['bytes_total'] >> 20} MiB, {data['rate_bps'] / 1e6:.0f} MB/s{eta}", flush=True)  # fmt: skip
        elif event == "end":
            return


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def executions(
    words: Annotated[
        list[str] | None,
        typer.Argument(metavar="[logs EXECUTION_ID]", help="`logs ID`: that execution's deploy logs instead."),
    ] = None,
    machine: Annotated[str | None, typer.Option()] = None,
    scenario: Annotated[str | None, typer.Option()] = None,
    state: Annotated[
        str | None, typer.Option(help="queued | powering-on | rebooting | running | completed | failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with error codes and remedies.")] = False,
    as_json: JsonOpt = False,
    part: Annotated[LogPart | None, typer.Option(help="logs: one log as text; without it the tar.gz bundle.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="logs: write to this file.")] = None,
) -> None:
    """Execution history, newest first. `dpm executions logs ID [--part console|dmesg|client] [-o FILE]`:
    the deploy environment's logs of that execution (its machine's latest run only)."""
    if words:
        if len(words) != 2 or words[0] != "logs":
            raise CliError(f"usage: dpm executions {LOGS_USAGE}", EXIT_USAGE)
        execution_logs(words[1], part, output)
        return
    params = {k: v for k, v in {"machine": machine, "scenario": scenario, "state": state}.items() if v}
    if as_csv:
        print(request("GET", "/executions/export", params={**params, "limit": limit}, raw=True), end="")
        return
    rows = request("GET", "/executions", params={**params, "limit": limit})
    print(json.dumps(rows, indent=2) if as_json else table(rows, EXECUTION_COLUMNS))


def clear(
    machines: Annotated[list[str] | None, typer.Argument(metavar="[MACHINE...]")] = None,
    state: Annotated[str | None, typer.Option(help="Bulk clear: failed | power-on-error")] = None,
) -> None:
    """Error clear: the machines (or every machine in --state) may take a scenario again."""
    if not machines and not state:
        raise CliError("name machines or --state", EXIT_USAGE)
    result = request("POST", "/clear", json={"machines": machines or [], "state": state})
    print(f"cleared {result['cleared']} machine(s)")


@app.command("start-now")
def scenarios_start_now(name: str) -> None:
    """Start the gathering multicast session of a restore with the machines that are ready."""
    request("POST", f"/scenarios/{name}/start-now")
    print(f"start now requested for {name}")


def suspend(
    execution: Annotated[str | None, typer.Argument(help="Execution id.")] = None,
    machine: Annotated[str | None, typer.Option(help="Interrupt this machine's latest execution.")] = None,
) -> None:
    """Interrupt an execution; `dpm clear MACHINE` releases the machine afterwards."""
    if execution is None:
        if machine is None:
            raise CliError("name an execution or --machine", EXIT_USAGE)
        rows = request("GET", "/executions", params={"machine": machine, "limit": 1})
        if not rows:
            raise CliError(f"{machine} has no execution", EXIT_API_ERROR)
        execution = rows[0]["execution_id"]
    request("POST", f"/executions/{execution}/suspend")
    print(f"interrupting {execution}")
