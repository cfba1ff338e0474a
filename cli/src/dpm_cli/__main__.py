"""`dpm`: the operator CLI. Every command but `up` talks to the api over HTTP."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_USAGE, CliError, request

app = typer.Typer(help="dpm: deployment manager for fleets of machines.", no_args_is_help=True)
machines = typer.Typer(help="Managed machines.", no_args_is_help=True)
admin = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(machines, name="machines")
app.add_typer(admin, name="admin")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


@app.command()
def up() -> None:
    """Run the embedded stack (private PostgreSQL + nats-server under ./var, every service); Ctrl-C stops it."""
    from dpm_runtime.localstack.stack import up as run_stack

    raise typer.Exit(run_stack(say=lambda line: print(line, flush=True)))


@machines.command("list")
def machines_list(as_json: JsonOpt = False) -> None:
    """List machines."""
    rows = request("GET", "/machines")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["macs"] = ",".join(row["macs"])
    print(table(rows, ["name", "macs", "ip", "group_name", "online", "last_boot_at", "machine_id"]))


@machines.command("add")
def machines_add(
    name: str,
    mac: Annotated[list[str], typer.Option("--mac", help="MAC address; repeat for several NICs.")],
    ip: Annotated[str | None, typer.Option(help="IP address.")] = None,
    group: Annotated[str, typer.Option(help="Machine group.")] = "new-machines",
    as_json: JsonOpt = False,
) -> None:
    """Register a machine by hand."""
    body: dict[str, Any] = {"name": name, "macs": mac, "group": group}
    if ip:
        body["ip"] = ip
    result = request("POST", "/machines", json=body)
    print(json.dumps(result) if as_json else f"registered {name} as {result['machine_id']}")


@admin.command("rebuild")
def admin_rebuild(projection: str, as_json: JsonOpt = False) -> None:
    """Replay the event log from position 0 into fresh read-model tables and swap them in."""
    result = request("POST", f"/admin/projections/{projection}/rebuild")
    if as_json:
        print(json.dumps(result))
        return
    print(
        f"rebuilt {result['name']}: {result['events']} events up to position {result['position']} "
        f"in {result['seconds']:.2f} s ({result['events_per_second']:.0f} events/s)"
    )


def main() -> None:
    try:
        app(standalone_mode=False)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.BadParameter, typer.Abort) as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # click usage errors
        from click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(EXIT_USAGE)
        raise


if __name__ == "__main__":
    main()
