"""`dpm boot ...`: the boot settings, what a MAC would boot and why, recent boots, DHCP leases."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_USAGE, CliError, request
from dpm_cli.output import JsonOpt, table

app = typer.Typer(help="Network boot: DHCP mode, ranges, per-machine boot decisions.", no_args_is_help=True)

RANGE_HELP = "START-END/CIDR[,router=IP][,dns=IP+IP][,lease=SECONDS], e.g. 10.0.0.100-10.0.0.199/24,router=10.0.0.1"


def parse_range(text: str) -> dict[str, Any]:
    """``10.0.0.100-10.0.0.199/24,router=10.0.0.1,dns=10.0.0.1+1.1.1.1,lease=3600`` -> a range body."""
    head, *extras = text.split(",")
    try:
        span, prefix = head.rsplit("/", 1)
        start, end = span.split("-", 1)
    except ValueError:
        raise CliError(f"--range {text!r}: expected {RANGE_HELP}", EXIT_USAGE) from None
    body: dict[str, Any] = {"start": start, "end": end, "subnet": f"{start}/{prefix}"}
    for extra in extras:
        key, _, value = extra.partition("=")
        if key == "router":
            body["router"] = value
        elif key == "dns":
            body["dns"] = [d for d in value.split("+") if d]
        elif key == "lease" and value.isdigit():
            body["lease_seconds"] = int(value)
        else:
            raise CliError(f"--range {text!r}: unknown part {extra!r}; expected {RANGE_HELP}", EXIT_USAGE)
    return body


def show_settings(s: dict[str, Any]) -> str:
    lines = [
        f"mode:       {s['mode']}{'' if s['saved'] else ' (default; never saved)'}",
        f"server ip:  {s['server_ip'] or '(the pxe service setting or its interface address)'}",
        f"deploy:     {s['deploy_kernel']} + {s['deploy_initrd']}  [{s['deploy_cmdline']}]",
    ]
    for r in s["ranges"]:
        extra = f" router {r['router']}" if r["router"] else ""
        extra += f" dns {','.join(r['dns'])}" if r["dns"] else ""
        lines.append(f"range:      {r['start']}-{r['end']} in {r['subnet']}{extra}, lease {r['lease_seconds']} s")
    return "\n".join(lines)


@app.command("settings")
def settings(as_json: JsonOpt = False) -> None:
    """Show the boot settings in force."""
    s = request("GET", "/boot/settings")
    print(json.dumps(s, indent=2) if as_json else show_settings(s))


@app.command("set")
def set_settings(
    mode: Annotated[str | None, typer.Option(help="proxy | full | off")] = None,
    server_ip: Annotated[str | None, typer.Option(help="Our address on the boot network.")] = None,
    ranges: Annotated[list[str] | None, typer.Option("--range", help=RANGE_HELP)] = None,
    clear_ranges: Annotated[bool, typer.Option(help="Remove every full-mode range.")] = False,
    deploy_kernel: Annotated[str | None, typer.Option(help="Path under the boot root.")] = None,
    deploy_initrd: Annotated[str | None, typer.Option(help="Path under the boot root.")] = None,
    deploy_cmdline: Annotated[str | None, typer.Option(help="Extra kernel parameters.")] = None,
    force: Annotated[bool, typer.Option(help="Change the mode even while machines wait to network-boot.")] = False,
) -> None:
    """Change boot settings; what is not given stays as it is. pxe applies them without a restart."""
    current = request("GET", "/boot/settings")
    body = {k: current[k] for k in ("mode", "server_ip", "ranges", "deploy_kernel", "deploy_initrd", "deploy_cmdline")}
    given = {
        "mode": mode,
        "server_ip": server_ip,
        "deploy_kernel": deploy_kernel,
        "deploy_initrd": deploy_initrd,
        "deploy_cmdline": deploy_cmdline,
    }
    body.update({k: v for k, v in given.items() if v is not None})
    if clear_ranges:
        body["ranges"] = []
    if ranges:
        body["ranges"] = [parse_range(r) for r in ranges]
    print(show_settings(request("PUT", "/boot/settings", json={**body, "force": force})))


@app.command("explain")
def explain(mac: str, as_json: JsonOpt = False) -> None:
    """What MAC would boot if it network-booted now, and why."""
    d = request("GET", f"/boot/machines/{mac}")
    if as_json:
        print(json.dumps(d, indent=2))
        return
    who = f"{d['machine']} ({d['machine_id']})" if d["machine"] else "unknown machine"
    print(f"{d['mac']}: {who}\n  boots: {d['action']}\n  why:   {d['reason']}\n  dhcp:  {d['dhcp_mode']}")


@app.command("recent")
def recent(
    mac: Annotated[str | None, typer.Option(help="Only this MAC.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest network boots, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"mac": mac} if mac else {})}
    rows = request("GET", "/boot/recent", params=params)
    print(
        json.dumps(rows, indent=2) if as_json else table(rows, ["at", "mac", "stage", "arch", "client_ip", "decision"])
    )


@app.command("leases")
def leases(as_json: JsonOpt = False) -> None:
    """Addresses handed out in full mode."""
    rows = request("GET", "/dhcp/leases")
    print(json.dumps(rows, indent=2) if as_json else table(rows, ["ip", "mac", "state", "expires_at"]))
