"""Logging in, API tokens, and the audit trail (the event log itself, filtered)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from dpm_api import auth, bootstrap_token, throttle, users
from dpm_api.deps import AdminDep, PrincipalDep, RuntimeDep, ViewerDep, now
from dpm_api.domain.throttle import LoginPolicies, Policy
from dpm_schemas import E
from dpm_schemas.text import Label, Name

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    username: Annotated[Label, Field(max_length=64)]
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    token: str
    username: str
    role: str
    idle_timeout_seconds: float


class TokenIn(BaseModel):
    name: Annotated[Name, Field(max_length=100)]


class TokenOut(BaseModel):
    token_id: uuid.UUID
    name: str
    token: str | None = None  # shown once, when issued
    created_at: datetime | None = None


class AuditEntry(BaseModel):
    position: int
    recorded_at: datetime
    actor: str
    type: str
    stream_id: str


@router.post("/auth/login", response_model=LoginOut)
async def login(body: LoginIn, request: Request, rt: RuntimeDep) -> LoginOut:
    """Open a session; it ends after the configured idle time, or its absolute lifetime. Attempts are
    locked out per user name and source address, throttled per source address, and slowed down per
    user name (DPM-E410, with Retry-After)."""
    at = now(request)
    await check_attempt(request, rt, body.username, at)
    async with rt.pool.connection() as conn:
        stored = await auth.stored_hash(conn, body.username)
    if not await request.app.state.hasher.verify(body.password, stored):  # no connection held meanwhile
        raise E.LOGIN_FAILED()
    async with rt.pool.connection() as conn, conn.transaction():
        role = await auth.user_role(conn, body.username)
        if role is None:
            raise E.LOGIN_FAILED()
        await throttle.succeeded(conn, body.username, source(request))
        token = await auth.open_session(conn, body.username, at)
        await users.logged_in(rt.eventlog, conn, body.username)
    return LoginOut(
        token=token,
        username=body.username,
        role=role.value,
        idle_timeout_seconds=request.app.state.sessions.idle.total_seconds(),
    )


def source(request: Request) -> str:
    """The caller's socket address (never a header a client could set)."""
    return request.client.host if request.client else "unknown"


async def check_attempt(request: Request, rt: RuntimeDep, username: str, at: datetime) -> None:
    """Count a password check against the (user name, address) pair, the address and the user name,
    or refuse it (DPM-E410)."""
    policies: LoginPolicies = request.app.state.login_policies
    address = source(request)
    keys: dict[str, Policy] = {
        throttle.pair_key(username, address): policies.pair,
        throttle.source_key(address): policies.source,
        throttle.user_key(username): policies.user,
    }
    async with rt.pool.connection() as conn:
        await throttle.attempt(conn, keys, at)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, rt: RuntimeDep, _who: PrincipalDep) -> None:
    """End this session."""
    token = request.headers["authorization"].partition(" ")[2]
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM api.sessions WHERE token_sha256 = %s", (auth.sha256(token),))


@router.post("/auth/tokens", status_code=201, response_model=TokenOut)
async def issue_token(body: TokenIn, rt: RuntimeDep, who: PrincipalDep) -> TokenOut:
    """An API token for scripts, with the caller's role; the token is shown only now."""
    if who.username == auth.BOOTSTRAP_USER:
        raise E.INVALID_REQUEST(reason="the bootstrap token cannot issue tokens; create a user first")
    async with rt.pool.connection() as conn, conn.transaction():
        token_id, token, position = await users.issue_token(rt.eventlog, conn, who.username, body.name)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return TokenOut(token_id=token_id, name=body.name, token=token)


@router.get("/auth/tokens", response_model=list[TokenOut])
async def list_tokens(rt: RuntimeDep, who: PrincipalDep) -> list[TokenOut]:
    """The caller's valid API tokens (never the tokens themselves)."""
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT token_id, name, created_at FROM api.api_tokens WHERE username = %s AND NOT"
            " revoked ORDER BY created_at",
            (who.username,),
        )
        return [TokenOut(token_id=r[0], name=r[1], created_at=r[2]) for r in await cur.fetchall()]


@router.delete("/auth/tokens/{token_id}", status_code=202)
async def revoke_token(token_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> dict[str, object]:
    """Revoke one of the caller's tokens (an admin may revoke anyone's)."""
    async with rt.pool.connection() as conn, conn.transaction():
        position = await users.revoke_token(rt.eventlog, conn, token_id, who)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return {"token_id": str(token_id), "position": position}


@router.get("/audit", response_model=list[AuditEntry])
async def audit(
    rt: RuntimeDep,
    _admin: AdminDep,
    actor: str | None = None,
    type: str | None = Query(default=None, description="event type, e.g. MachineRegistered"),
    category: str | None = Query(default=None, description="stream category, e.g. machine, user, group"),
    after: int = Query(default=0, ge=0, description="only events after this position"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[AuditEntry]:
    """Who did what: the event log, which records every change with its actor."""
    where: list[str] = ["position > %s"]
    params: list[object] = [after]
    if actor:
        where.append("metadata->>'actor' = %s")
        params.append(actor)
    if type:
        where.append("type = %s")
        params.append(type)
    if category:
        where.append("stream_id LIKE %s")
        params.append(category.replace("%", "").replace("_", r"\_") + "-%")
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT position, recorded_at, metadata->>'actor', type, stream_id FROM events WHERE {' AND '.join(where)}"
            " ORDER BY position LIMIT %s",
            (*params, limit),
        )
        return [
            AuditEntry(position=r[0], recorded_at=r[1], actor=r[2] or "system", type=r[3], stream_id=r[4])
            for r in await cur.fetchall()
        ]


class BootstrapTokenOut(BaseModel):
    """The bootstrap token's state, never its value: times are None until an api first accepted it."""

    enabled: bool
    revoked: bool
    expired: bool
    max_age_seconds: float | None
    first_used_at: datetime | None
    expires_at: datetime | None


@router.get("/auth/bootstrap-token", response_model=BootstrapTokenOut)
async def bootstrap_token_status(request: Request, rt: RuntimeDep, _admin: AdminDep) -> BootstrapTokenOut:
    """When the bootstrap token (DPM_API_TOKEN) was first accepted and when it expires
    (DPM_API_TOKEN_MAX_AGE later), or that it is revoked or disabled."""
    found = await bootstrap_token.status(rt, request.app.state.bootstrap_token, now(request))
    return BootstrapTokenOut.model_validate(found)


@router.delete("/auth/bootstrap-token", status_code=202)
async def revoke_bootstrap_token(request: Request, rt: RuntimeDep, actor: AdminDep) -> dict[str, object]:
    """Revoke the bootstrap token (DPM_API_TOKEN) for good; create an admin user first. To rotate it,
    set a new DPM_API_TOKEN (`dpm up`: delete var/api-token) and restart the api."""
    async with rt.pool.connection() as conn, conn.transaction():
        position = await bootstrap_token.revoke(rt.eventlog, conn, request.app.state.api_token, actor=actor)
    await rt.projections["revoked_bootstrap_tokens"].wait_for(position, timeout=5)
    return {"revoked": "bootstrap", "position": position}


@router.get("/auth/whoami")
async def whoami(who: ViewerDep) -> dict[str, str]:
    """The caller's user name and role."""
    return {"username": who.username, "role": who.role.value}
