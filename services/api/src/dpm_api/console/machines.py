"""The machine pages: the list (paged and searched in SQL, the group tree beside it, each machine's
current execution at a glance) and a machine's detail (inventory, disks drawn to scale, addresses,
history). The list's rows refresh by push: ``/console/machines/rows`` renders its count, pagers and
table from the same query as the page, and console.js swaps that part in whenever the dashboard's
stream (``dash_stream``: machines' or executions' positions moved) says so, keeping the boxes the
operator checked. Bulk actions, the forms and the CSV import live in their own modules
(machine_*.py), whose routes are included here before ``/console/machines/{machine_id}`` so their
fixed paths win."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import (
    dashboard,
    listing,
    machine_bulk,
    machine_data,
    machine_disks,
    machine_forms,
    machine_import,
    pages,
)
from dpm_api.deps import get_runtime
from dpm_api.projections import COLUMNS, row_from_db
from dpm_api.routes import machines as machine_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E

router = APIRouter(include_in_schema=False)
HOME = "/console/machines"
ROWS = "/console/machines/rows"  # the list's live fragment (machines_rows.html)
for _module in (machine_bulk, machine_forms, machine_import):
    router.include_router(_module.router)


def _link(q: str, group: str, page: int, base: str = HOME) -> str:
    params = {k: v for k, v in (("q", q), ("group", group), ("page", str(page) if page > 1 else "")) if v}
    return base + ("?" + urlencode(params) if params else "")


async def _listing(rt: Runtime, who: pages.Visitor, q: str, group: str, page: str | None) -> dict[str, Any]:
    """What the list shows for this query, the page and its live fragment alike (one query, one code)."""
    clause, params = listing.where(q, group)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM api.machines{clause}", params)
        total = (await cur.fetchone() or (0,))[0]
        shown = listing.clamp(listing.page_number(page), listing.PAGE_SIZE, total)
        cur = await conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM api.machines{clause} ORDER BY name, machine_id LIMIT %s OFFSET %s",
            (*params, shown.size, shown.offset),
        )
        rows = [machine_routes._out(row_from_db(raw)) for raw in await cur.fetchall()]
        current = await machine_data.current(conn, [r.machine_id for r in rows])
    return {
        "rows": rows,
        "current": current,
        "page": shown,
        "q": q,
        "group": group,
        "can_act": who.can_act,
        "rows_url": _link(q, group, shown.number, ROWS),
        "stream_url": dashboard.STREAM,
        "previous_url": _link(q, group, shown.previous) if shown.previous else None,
        "next_url": _link(q, group, shown.next) if shown.next else None,
    }


@router.get(HOME)
async def machines_page(request: Request, q: str = "", group: str = "", page: str | None = None) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    shown = await _listing(rt, who, q, group, page)
    async with rt.pool.connection() as conn:
        tree = await machine_data.group_tree(conn)
        scenarios = await machine_data.scenario_names(conn) if who.can_act else []
    return pages.render(
        "machines.html", visitor=who, title="Machines", nav="machines", tree=tree, scenarios=scenarios,
        actions=machine_bulk.BULK_ACTIONS,
        notice=machine_bulk.notice(request.query_params.get("done"), request.query_params.get("count")),
        **shown,
    )  # fmt: skip


@router.get(ROWS)
async def machines_rows(request: Request, q: str = "", group: str = "", page: str | None = None) -> Response:
    """The list's rows alone (its count, pagers and table), for console.js to swap in whenever the
    dashboard's stream says machines or executions moved. Without a session it answers 401 (a
    redirect would be followed by fetch, and the login page swapped into the list)."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.refusal(E.UNAUTHENTICATED())
    response = pages.render("machines_rows.html", visitor=who, **await _listing(rt, who, q, group, page))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/console/machines/{machine_id}")
async def machine_page(request: Request, machine_id: str) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        mid = uuid.UUID(machine_id)
    except ValueError:
        return pages.refusal(E.MACHINE_NOT_FOUND(machine_id=machine_id[:100]), who)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines WHERE machine_id = %s", (mid,))
        raw = await cur.fetchone()
        facts = await machine_data.detail(conn, mid) if raw is not None else {}
    if raw is None:
        return pages.refusal(E.MACHINE_NOT_FOUND(machine_id=mid), who)
    machine = machine_routes._out(row_from_db(raw))
    disks = facts["disks"]
    return pages.render(
        "machine.html",
        visitor=who,
        title=machine.name,
        nav="machines",
        machine=machine,
        inventory=facts["inventory"],
        disks=machine_disks.drawings(disks["disks"]) if disks else [],
        disks_checked=disks["checked_at"] if disks else None,
        human=machine_disks.human,
        width=machine_disks.WIDTH,
        history=facts["history"],
        can_act=who.can_act,
        notice=machine_forms.notice(request.query_params.get("done")),
    )
