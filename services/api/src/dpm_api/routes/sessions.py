"""Multicast sessions over HTTP: the recent ones, running and finished (``dpm_api.sessions``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dpm_api import sessions
from dpm_api.deps import RuntimeDep, ViewerDep

router = APIRouter(tags=["sessions"])


@router.get("/sessions")
async def list_sessions(
    rt: RuntimeDep, _who: ViewerDep, limit: Annotated[int, Query(ge=1, le=sessions.RECENT)] = sessions.RECENT
) -> list[dict[str, Any]]:
    """The newest multicast sessions first, each with its members' states and its outcome (``running``
    until every member's execution is done; ``ended_at`` is then the last member's end)."""
    async with rt.pool.connection() as conn:
        return await sessions.recent(conn, limit)
