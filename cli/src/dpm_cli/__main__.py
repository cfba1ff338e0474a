"""`dpm`: the operator CLI. Every command but `up` talks to the api over HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dpm_cli import authcmd, boot, images, labcmd, packages, quarantine, rebuild, scenarios, schedules, sources, updates
from dpm_cli.client import forget_token, request, save_token
from dpm_cli.files import command as _command
from dpm_cli.files import files, find_machine
from dpm_cli.output import JsonOpt, table
from dpm_cli.passwords import StdinOpt, read_password
from dpm_cli.usage import run as run_cli

app = typer.Typer(help="dpm: deployment manager for fleets of machines.", no_args_is_help=True)
machines = typer.Typer(help="Managed machines.", no_args_is_help=True)
admin = typer.Typer(help="Administration.", no_args_is_help=True)
groups = typer.Typer(help="Machine groups and their network settings.", no_args_is_help=True)
power = typer.Typer(help="Power actions.", no_args_is_help=True)
app.add_typer(machines, name="machines")
app.add_typer(groups, name="groups")
app.add_typer(power, name="power")
users = typer.Typer(help="Users and roles (admin).", no_args_is_help=True)
app.add_typer(files, name="files")
app.add_typer(users, name="users")
app.add_typer(authcmd.tokens, name="tokens")
app.add_typer(authcmd.app, name="auth")
app.add_typer(admin, name="admin")
admin.add_typer(quarantine.app, name="quarantine")
admin.command("rebuild")(rebuild.admin_rebuild)
for name, sub in (("boot", boot), ("scenarios", scenarios), ("schedules", schedules), ("images", images),
                  ("lab", labcmd), ("packages", packages), ("updates", updates), ("sources", sources)):  # fmt: skip
    app.add_typer(sub.app, name=name)
machines.command("inventory")(packages.machine_inventory)
app.command("run")(scenarios.run)
app.command("executions")(scenarios.executions)
app.command("clear")(scenarios.clear)
app.command("suspend")(scenarios.suspend)


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


@machines.command("show")
def machines_show(machine: str, as_json: JsonOpt = False) -> None:
    """One machine, by id, name or MAC."""
    row = find_machine(machine)
    print(json.dumps(row, indent=2) if as_json else "\n".join(f"{k:16} {v}" for k, v in row.items()))


@machines.command("edit")
def machines_edit(
    machine: str,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    mac: Annotated[list[str] | None, typer.Option("--mac", help="Replace the MACs; repeat for several NICs.")] = None,
    ip: Annotated[str | None, typer.Option(help="IP address.")] = None,
    group: Annotated[str | None, typer.Option(help="Machine group.")] = None,
    os_type: Annotated[str | None, typer.Option("--os-type", help="OS type, e.g. linux, windows 11.")] = None,
) -> None:
    """Change a machine; fields not given keep their value."""
    row = find_machine(machine)
    body = {
        "name": name or row["name"],
        "macs": mac or row["macs"],
        "smbios_uuid": row["smbios_uuid"],
        "ip": ip if ip is not None else row["ip"],
        "group": group or row["group_name"],
        "os_type": os_type if os_type is not None else row["os_type"],
    }
    request("PUT", f"/machines/{row['machine_id']}", json=body)
    print(f"updated {body['name']}")


@machines.command("rm")
def machines_rm(machine: str) -> None:
    """Delete a machine (its history stays in the event log)."""
    row = find_machine(machine)
    request("DELETE", f"/machines/{row['machine_id']}")
    print(f"deleted {row['name']}")


@machines.command("export")
def machines_export(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Every machine as CSV, to a file or stdout."""
    text = request("GET", "/machines/export", raw=True)
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


@machines.command("import")
def machines_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upsert machines from CSV (matched by MAC or SMBIOS UUID); a malformed file changes nothing."""
    result = request(
        "POST",
        "/machines/import",
        params={"dry_run": str(dry_run).lower()},
        content=path.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verb = "would " if dry_run else ""
    for row in result["create"]:
        print(f"{verb}create {row['name']} ({', '.join(row['macs'])})")
    for row in result["update"]:
        changes = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in row["changes"].items())
        print(f"{verb}update {row['name']}: {changes}")
    print(f"{len(result['create'])} to create, {len(result['update'])} to update, {result['unchanged']} unchanged")


@groups.command("list")
def groups_list(as_json: JsonOpt = False) -> None:
    """Groups and where their Wake-on-LAN packets go."""
    rows = request("GET", "/groups")
    print(
        json.dumps(rows, indent=2)
        if as_json
        else table(rows, ["name", "subnet", "gateway", "wol_broadcast", "description"])
    )


@groups.command("add")
def groups_add(
    name: str,
    subnet: Annotated[str | None, typer.Option(help="e.g. 192.168.0.0/24; omit for the server's own segment.")] = None,
    broadcast: Annotated[str | None, typer.Option(help="Directed broadcast; derived from --subnet.")] = None,
    gateway: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a group or replace its settings."""
    row = request(
        "PUT",
        f"/groups/{name}",
        json={"subnet": subnet, "broadcast": broadcast, "gateway": gateway, "description": description},
    )
    print(f"group {row['name']}: WOL to {row['wol_broadcast'] or '255.255.255.255'}")


@groups.command("rename")
def groups_rename(name: str, new_name: str) -> None:
    """Rename a group; its machines and schedules follow."""
    row = request("POST", f"/groups/{name}/rename", json={"new_name": new_name})
    print(f"group {name} is now {row['name']}")


@groups.command("rm")
def groups_rm(name: str) -> None:
    """Delete an empty group."""
    request("DELETE", f"/groups/{name}")
    print(f"deleted group {name}")


@power.command("on")
def power_on(machine_refs: Annotated[list[str], typer.Argument(metavar="MACHINE...")]) -> None:
    """Power machines on (Wake-on-LAN to their group's broadcast address)."""
    for ref in machine_refs:
        row = find_machine(ref)
        request("POST", f"/machines/{row['machine_id']}/power/on")
        print(f"power-on requested for {row['name']}")


@power.command("off")
def power_off(machine_refs: Annotated[list[str], typer.Argument(metavar="MACHINE...")]) -> None:
    """Shut machines down through their agents."""
    for ref in machine_refs:
        _command(ref, {"action": "shutdown"})
        print(f"shutdown sent to {ref}")


@power.command("reboot")
def power_reboot(machine_refs: Annotated[list[str], typer.Argument(metavar="MACHINE...")]) -> None:
    """Reboot machines through their agents."""
    for ref in machine_refs:
        _command(ref, {"action": "reboot"})
        print(f"reboot sent to {ref}")


@app.command()
def login(username: Annotated[str, typer.Option(prompt=True)], password_stdin: StdinOpt = False) -> None:
    """Log in; the session token is kept in ~/.config/dpm/token (mode 0600). The password comes from
    a prompt, --password-stdin or DPM_PASSWORD -- never from the command line."""
    password = read_password(stdin=password_stdin)
    result = request("POST", "/auth/login", json={"username": username, "password": password}, anonymous=True)
    save_token(result["token"])
    print(f"logged in as {result['username']} ({result['role']})")


@app.command()
def logout() -> None:
    """End the session and forget its token."""
    request("POST", "/auth/logout")
    forget_token()
    print("logged out")


@users.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Users with their roles."""
    rows = request("GET", "/users")
    print(json.dumps(rows, indent=2) if as_json else table(rows, ["username", "role", "disabled", "created_at"]))


@users.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    password_stdin: StdinOpt = False,
) -> None:
    """Create a user; the password comes from a prompt, --password-stdin or DPM_PASSWORD."""
    password = read_password(stdin=password_stdin, confirm=True)
    request("POST", "/users", json={"username": username, "password": password, "role": role})
    print(f"created {username} ({role})")


@users.command("role")
def users_role(username: str, role: str) -> None:
    """Change a user's role."""
    request("PUT", f"/users/{username}/role", json={"role": role})
    print(f"{username} is now {role}")


@users.command("passwd")
def users_passwd(username: str, password_stdin: StdinOpt = False) -> None:
    """Set a password: yours (asks for the current one too: DPM_CURRENT_PASSWORD, or the first line of
    --password-stdin before the new one), or anyone's as admin. Their sessions and API tokens end."""
    body: dict[str, Any] = {}
    if request("GET", "/auth/whoami")["username"] == username:
        current = read_password(stdin=password_stdin, prompt="Current password", env="DPM_CURRENT_PASSWORD")
        body["current_password"] = current
    body["password"] = read_password(stdin=password_stdin, prompt="New password", confirm=True)
    request("PUT", f"/users/{username}/password", json=body)
    print(f"password of {username} changed")


@users.command("rm")
def users_rm(username: str) -> None:
    """Disable a user."""
    request("DELETE", f"/users/{username}")
    print(f"disabled {username}")


agents = typer.Typer(help="Agents.", no_args_is_help=True)
app.add_typer(agents, name="agents")


@agents.command("enrolment-token")
def agents_enrolment_token(
    uses: Annotated[int, typer.Option(help="How many machines may enrol with it.")] = 1,
    expires_in: Annotated[float, typer.Option(help="Seconds until it expires.")] = 86400.0,
    machine: Annotated[
        str | None,
        typer.Option(
            help="Bind it to this machine (id, name or MAC): it enrols only that machine and may replace its "
            "agent's token (re-imaged machine, lost or revoked token)."
        ),
    ] = None,
) -> None:
    """Issue an enrolment token for agents (printed once). Unbound, it enrols only machines whose agent
    has no token yet and was never revoked."""
    body: dict[str, Any] = {"uses": uses, "expires_in": expires_in}
    if machine is not None:
        body["machine"] = find_machine(machine)["machine_id"]
    print(request("POST", "/agents/enrolment-tokens", json=body)["token"])


@agents.command("revoke")
def agents_revoke(machine: str) -> None:
    """Revoke a machine's agent token: its session closes; only a token bound to it re-enrols it."""
    found = find_machine(machine)
    request("POST", f"/machines/{found['machine_id']}/agent/revoke")
    print(f"revoked the agent of {found['name']}")


def main() -> None:
    """The `dpm` entry point (see ``usage``: one line and a stable exit code for every failure)."""
    run_cli(app)


if __name__ == "__main__":
    main()
