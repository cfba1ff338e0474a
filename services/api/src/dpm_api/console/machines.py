"""The machine pages: the list (paged and searched in SQL), a machine's detail, and the bulk
actions, which call the REST routes' own functions so both behave alike."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import listing, pages
from dpm_api.deps import get_runtime
from dpm_api.projections import COLUMNS, row_from_db
from dpm_api.routes import machines as machine_routes
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/machines"
BULK_ACTIONS = {"power_on": "Power on"}


def _link(q: str, group: str, page: int) -> str:
    params = {k: v for k, v in (("q", q), ("group", group), ("page", str(page) if page > 1 else "")) if v}
    return HOME + ("?" + urlencode(params) if params else "")


@router.get("/console/machines")
async def machines_page(request: Request, q: str = "", group: str = "", page: str | None = None) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
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
        cur = await conn.execute("SELECT name FROM api.groups ORDER BY name LIMIT 1000")
        groups = [r[0] for r in await cur.fetchall()]
    done = request.query_params.get("done")
    count = listing.page_number(request.query_params.get("count"))
    notice = f"{BULK_ACTIONS[done]} requested for {count} machine(s)." if done in BULK_ACTIONS else None
    return pages.render(
        "machines.html",
        visitor=who,
        title="Machines",
        rows=rows,
        page=shown,
        q=q,
        group=group,
        groups=groups,
        actions=BULK_ACTIONS,
        can_act=who.can_act,
        notice=notice,
        previous_url=_link(q, group, shown.previous) if shown.previous else None,
        next_url=_link(q, group, shown.next) if shown.next else None,
    )


@router.get("/console/machines/{machine_id}")
async def machine_page(request: Request, machine_id: str) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        mid = uuid.UUID(machine_id)
    except ValueError:
        return pages.refusal(E.MACHINE_NOT_FOUND(machine_id=machine_id), who)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines WHERE machine_id = %s", (mid,))
        raw = await cur.fetchone()
        cur = await conn.execute(
            "SELECT os, kernel, packages, reported_at FROM api.inventories WHERE machine_id = %s", (mid,)
        )
        inventory = await cur.fetchone()
    if raw is None:
        return pages.refusal(E.MACHINE_NOT_FOUND(machine_id=mid), who)
    machine = machine_routes._out(row_from_db(raw))
    return pages.render("machine.html", visitor=who, title=machine.name, machine=machine, inventory=inventory)


@router.post("/console/machines/bulk")
async def bulk(request: Request) -> Response:
    """One action on the selected machines, through the REST route's own function (power on)."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "POST /console/machines/bulk")
        action = pages.one(fields, "action")
        if action not in BULK_ACTIONS:
            raise E.INVALID_REQUEST(reason=f"no bulk action {action!r}")
        chosen = fields.get("machine", [])
        if not chosen or len(chosen) > pages.MAX_SELECTED:
            raise E.INVALID_REQUEST(reason=f"select between 1 and {pages.MAX_SELECTED} machines")
        try:
            ids = list(dict.fromkeys(uuid.UUID(value) for value in chosen))
        except ValueError:
            raise E.INVALID_REQUEST(reason="a selected machine id is not a UUID") from None
        for mid in ids:
            await machine_routes.power_on(mid, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(f"{HOME}?{urlencode({'done': action, 'count': len(ids)})}")
