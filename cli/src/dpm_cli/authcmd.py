"""`dpm tokens ...` (your API tokens) and `dpm auth ...` (the bootstrap token, DPM_API_TOKEN: when it
expires, and revoking it for good once an admin user exists). Exit codes are the CLI's: 1 when the
api refuses (DPM-E415 while no admin user could take over), 3 when it is not reachable."""

from __future__ import annotations

import json
from typing import Any

import typer

from dpm_cli.client import request
from dpm_cli.output import JsonOpt, table

tokens = typer.Typer(help="Your API tokens.", no_args_is_help=True)
app = typer.Typer(help="The bootstrap token (DPM_API_TOKEN; admin).", no_args_is_help=True)


@tokens.command("create")
def tokens_create(name: str) -> None:
    """Issue an API token with your role; it is printed once."""
    print(request("POST", "/auth/tokens", json={"name": name})["token"])


@tokens.command("list")
def tokens_list() -> None:
    """Your API tokens."""
    print(table(request("GET", "/auth/tokens"), ["token_id", "name", "created_at"]))


@tokens.command("rm")
def tokens_rm(token_id: str) -> None:
    """Revoke one of your API tokens."""
    request("DELETE", f"/auth/tokens/{token_id}")
    print(f"revoked {token_id}")


def describe(state: dict[str, Any]) -> str:
    """One line on the bootstrap token's state (never its value)."""
    if not state["enabled"]:
        return "bootstrap token: not configured or disabled (DPM_API_TOKEN_ENABLED=false)"
    if state["revoked"]:
        return "bootstrap token: revoked"
    if state["expires_at"] is None:
        return f"bootstrap token: not used yet; expires {state['max_age_seconds'] / 3600:g} h after its first use"
    verb = "expired" if state["expired"] else "expires"
    return f"bootstrap token: first used {state['first_used_at']}; {verb} {state['expires_at']}"


@app.command("bootstrap-token")
def bootstrap_token(as_json: JsonOpt = False) -> None:
    """When the bootstrap token was first used and when it expires (DPM_API_TOKEN_MAX_AGE after)."""
    state = request("GET", "/auth/bootstrap-token")
    print(json.dumps(state, indent=2) if as_json else describe(state))


@app.command("revoke-bootstrap-token")
def revoke_bootstrap_token() -> None:
    """Revoke the bootstrap token for good (every api replica refuses it from now on). Create an admin
    user and log in as it first (`dpm users add NAME --role admin`, `dpm login`): the api refuses to
    revoke it while no admin user could take over."""
    result = request("DELETE", "/auth/bootstrap-token")
    print(f"revoked the bootstrap token (position {result['position']}); log in as an admin user from now on")
