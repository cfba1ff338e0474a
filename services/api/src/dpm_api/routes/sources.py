"""Package sources (Debian-format or RPM repositories) over HTTP: save (``POST /sources``: a new
name adds one, a known name replaces its settings), list, show, remove, and "sync now". Reads need
the viewer role, changes the operator's. A sync's outcome is in ``last_sync`` of
``GET /sources/{name}`` once the updater recorded it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpm_api import sources
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_schemas.events.sources import ArmoredKey
from dpm_schemas.packages import Urgency
from dpm_schemas.text import Label, Text

router = APIRouter(tags=["sources"])
Names = Annotated[list[Label], Field(max_length=100)]


class SourceIn(BaseModel):
    name: Label
    kind: Label = Field(default="deb", description="deb (a Debian-format repository) or rpm (an RPM repository)")
    url: Text = Field(description="http(s) base of the repository (deb: <url>/dists/<suite>/...; rpm: <url>/repodata/)")
    suite: Label | None = Field(default=None, description="deb only; default stable")
    components: Names | None = Field(default=None, description="deb only; default main")
    architectures: Names | None = Field(default=None, description="deb default amd64; rpm: a filter, none = every one")
    key: ArmoredKey | None = Field(
        default=None, description="the repository's ASCII-armoured OpenPGP public key; none: signatures not checked"
    )
    include: Names = Field(description="name globs of the packages to offer (required: a mirror is not a catalogue)")
    urgency: Urgency = Urgency.NORMAL
    interval_minutes: int = Field(default=360, ge=5, le=7 * 24 * 60)
    proxy: Text | None = Field(default=None, description="http://host:port; credentials are the updater's settings")
    verify_tls: bool = True


@router.post("/sources", status_code=201)
async def save_source(body: SourceIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    saved = sources.saved_of(body.model_dump())
    async with rt.pool.connection() as conn, conn.transaction():
        position = await sources.save(rt.eventlog, conn, saved, actor=actor)
    await rt.projections["source_list"].wait_for(position, timeout=5)
    async with rt.pool.connection() as conn:
        return await sources.get_source(conn, body.name)


@router.get("/sources")
async def list_sources(rt: RuntimeDep, _who: ViewerDep) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        return await sources.list_sources(conn)


@router.get("/sources/{name}")
async def show_source(name: str, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn:
        return await sources.get_source(conn, name)


@router.delete("/sources/{name}")
async def remove_source(name: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        position = await sources.remove(rt.eventlog, conn, name, actor=actor)
    await rt.projections["source_list"].wait_for(position, timeout=5)
    return {"removed": name}


@router.post("/sources/{name}/sync", status_code=202)
async def sync_source(name: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """ "Sync now": the updater syncs the source at once (its outcome: ``last_sync``)."""
    async with rt.pool.connection() as conn, conn.transaction():
        request_id = await sources.request_sync(rt.eventlog, conn, name, actor=actor)
    return {"source": name, "request_id": str(request_id)}
