"""Machine groups and their network settings (used for Wake-on-LAN to other segments)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, ValidationError

from dpm_api import handlers
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_runtime.service import Runtime
from dpm_schemas import E, text
from dpm_schemas.events import GroupDefined
from dpm_schemas.events.groups import NEW_MACHINES

router = APIRouter(prefix="/groups", tags=["groups"])


class GroupIn(BaseModel):
    subnet: IPv4Network | None = Field(default=None, description="e.g. 192.168.0.0/24; empty: the server's segment")
    broadcast: IPv4Address | None = Field(default=None, description="directed broadcast; derived from subnet if empty")
    gateway: IPv4Address | None = None
    description: Annotated[text.Text, Field(max_length=500)] = ""


class GroupOut(BaseModel):
    name: str
    subnet: str | None
    broadcast: str | None
    gateway: str | None
    wol_broadcast: str | None  # where magic packets for this group go (None: 255.255.255.255)
    description: str


@router.get("", response_model=list[GroupOut])
async def list_groups(rt: RuntimeDep, _who: ViewerDep) -> list[GroupOut]:
    """Every group, the built-in "new-machines" group first."""
    return await group_rows(rt)


async def group_rows(rt: Runtime) -> list[GroupOut]:
    async with rt.pool.connection() as conn:
        cur = await conn.execute("SELECT name, subnet, broadcast, gateway, wol_broadcast, description FROM api.groups")
        rows = [
            GroupOut(name=r[0], subnet=r[1], broadcast=r[2], gateway=r[3], wol_broadcast=r[4], description=r[5])
            for r in await cur.fetchall()
        ]
    builtin = GroupOut(
        name=NEW_MACHINES,
        subnet=None,
        broadcast=None,
        gateway=None,
        wol_broadcast=None,
        description="auto-registered machines land here",
    )
    return [builtin, *sorted((g for g in rows if g.name != NEW_MACHINES), key=lambda g: g.name)]


@router.put("/{name}", response_model=GroupOut)
async def define_group(name: str, body: GroupIn, rt: RuntimeDep, actor: ActorDep) -> GroupOut:
    """Create a group or replace its settings."""
    try:
        event = GroupDefined(
            name=name, subnet=body.subnet, broadcast=body.broadcast, gateway=body.gateway, description=body.description
        )
    except ValidationError as exc:
        if exc.errors()[0]["loc"][:1] != ("name",):  # e.g. a control character in the description
            raise text.refusal(exc.errors(include_input=False), "group") from None
        raise E.INVALID_REQUEST(reason=f"group name {name!r}: letters, digits, space, . _ - (max 100)") from None
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.define_group(rt.eventlog, conn, event, actor=actor)
    await rt.projections["groups"].wait_for(result.position, timeout=5)
    return next(g for g in await group_rows(rt) if g.name == name)


class RenameIn(BaseModel):
    new_name: Annotated[text.Name, Field(max_length=100)]


@router.post("/{name}/rename")
async def rename_group(name: str, body: RenameIn, rt: RuntimeDep, actor: ActorDep) -> GroupOut:
    """Rename a group; its machines and schedules follow."""
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.rename_group(rt.eventlog, conn, name, body.new_name, actor=actor)
    for projection in ("groups", "machines", "schedules"):
        await rt.projections[projection].wait_for(result.position, timeout=5)
    return next(g for g in await group_rows(rt) if g.name == body.new_name)


@router.delete("/{name}", status_code=202)
async def delete_group(name: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, object]:
    """Delete an empty group."""
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.delete_group(rt.eventlog, conn, name, actor=actor)
    await rt.projections["groups"].wait_for(result.position, timeout=5)
    return {"name": name, "position": result.position}
