"""User administration (admin role)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError

from dpm_api import auth, throttle, users
from dpm_api.deps import AdminDep, PrincipalDep, RuntimeDep, now
from dpm_api.routes.auth import check_attempt
from dpm_schemas import E
from dpm_schemas.events import UserCreated
from dpm_schemas.events.users import Role

router = APIRouter(prefix="/users", tags=["users"])


class UserIn(BaseModel):
    username: str
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.VIEWER


class RoleIn(BaseModel):
    role: Role


class PasswordIn(BaseModel):
    password: str = Field(min_length=8, max_length=1024)
    current_password: str | None = Field(
        default=None, max_length=1024, description="required when changing your own password"
    )


class UserOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: datetime


@router.get("", response_model=list[UserOut])
async def list_users(rt: RuntimeDep, _admin: AdminDep) -> list[UserOut]:
    """Every user with its role."""
    async with rt.pool.connection() as conn:
        cur = await conn.execute("SELECT username, role, disabled, created_at FROM api.users ORDER BY username")
        return [UserOut(username=r[0], role=Role(r[1]), disabled=r[2], created_at=r[3]) for r in await cur.fetchall()]


@router.post("", status_code=201, response_model=UserOut)
async def create_user(body: UserIn, request: Request, rt: RuntimeDep, actor: AdminDep) -> UserOut:
    """Create a user with a role (viewer, operator, admin)."""
    try:
        UserCreated(username=body.username, role=body.role)
    except ValidationError:
        raise E.INVALID_REQUEST(
            reason="username: lower-case letters, digits, . _ - (max 64), starting with a letter"
        ) from None
    if body.username == auth.BOOTSTRAP_USER:
        raise E.INVALID_REQUEST(reason=f"username: {auth.BOOTSTRAP_USER!r} names the bootstrap token")
    password_hash = await request.app.state.hasher.hash(body.password)
    async with rt.pool.connection() as conn, conn.transaction():
        position = await users.create(rt.eventlog, conn, body.username, password_hash, body.role, actor=actor)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return next(u for u in await list_users(rt, actor) if u.username == body.username)


@router.put("/{username}/role", status_code=202)
async def change_role(username: str, body: RoleIn, rt: RuntimeDep, actor: AdminDep) -> dict[str, object]:
    """Change a user's role."""
    async with rt.pool.connection() as conn, conn.transaction():
        position = await users.change_role(rt.eventlog, conn, username, body.role, actor=actor)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return {"username": username, "role": body.role.value}


@router.put("/{username}/password", status_code=202)
async def change_password(
    username: str, body: PasswordIn, request: Request, rt: RuntimeDep, who: PrincipalDep
) -> dict[str, str]:
    """Set a password: your own with your current one (DPM-E411 without it), or anyone's as admin.
    The user's sessions end and API tokens are revoked."""
    if who.username != username:
        who.require(Role.ADMIN, "changing another user's password")
    else:
        await check_attempt(request, rt, username, now(request))  # a stolen session must not guess freely
        async with rt.pool.connection() as conn:
            stored = await auth.stored_hash(conn, username)
        if body.current_password is None or not await request.app.state.hasher.verify(body.current_password, stored):
            raise E.CURRENT_PASSWORD_WRONG()
    password_hash = await request.app.state.hasher.hash(body.password)
    async with rt.pool.connection() as conn, conn.transaction():
        position = await users.change_password(rt.eventlog, conn, username, password_hash, actor=who.username)
        await throttle.password_changed(conn, username)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return {"username": username}


@router.delete("/{username}", status_code=202)
async def disable_user(username: str, rt: RuntimeDep, actor: AdminDep) -> dict[str, str]:
    """Disable a user: sessions end, tokens stop working (history stays in the log)."""
    async with rt.pool.connection() as conn, conn.transaction():
        position = await users.disable(rt.eventlog, conn, username, actor=actor)
    await rt.projections["accounts"].wait_for(position, timeout=5)
    return {"username": username}
