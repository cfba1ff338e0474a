"""Administration: projection positions and rebuilds."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from dpm_api.deps import AdminDep, RuntimeDep, ViewerDep
from dpm_runtime.projection import rebuild
from dpm_schemas import E

router = APIRouter(prefix="/admin", tags=["admin"])


class ProjectionOut(BaseModel):
    name: str
    position: int


class RebuildOut(BaseModel):
    name: str
    events: int
    position: int
    seconds: float
    events_per_second: float


@router.get("/projections", response_model=list[ProjectionOut])
async def list_projections(rt: RuntimeDep, _who: ViewerDep) -> list[ProjectionOut]:
    """Projections of this service and the position each has reached."""
    return [ProjectionOut(name=name, position=runner.position) for name, runner in sorted(rt.projections.items())]


@router.post("/projections/{name}/rebuild", response_model=RebuildOut)
async def rebuild_projection(name: str, rt: RuntimeDep, _admin: AdminDep) -> RebuildOut:
    """Replay the log from position 0 into fresh tables and swap them in."""
    runner = rt.projections.get(name)
    if runner is None:
        raise E.UNKNOWN_PROJECTION(name=name, known=", ".join(sorted(rt.projections)))
    result = await rebuild(runner.projection, pool=rt.pool, eventlog=rt.eventlog)
    return RebuildOut(
        name=result.name,
        events=result.events,
        position=result.position,
        seconds=result.seconds,
        events_per_second=result.rate,
    )
