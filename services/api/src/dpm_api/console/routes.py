"""The console's pages: log in and out, the machine list (paged and searched in SQL), a machine's
detail, and one bulk action. Each request finds its user afresh from its own session cookie
(``auth.resolve``, with the api's idle and absolute session timeouts); a form that changes anything
must carry its session's CSRF token and come from our own origin, and its role is checked exactly as
the REST route's. The bulk action calls the REST route's own function, so both behave alike."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from dpm_api import auth
from dpm_api.console import listing, pages, security
from dpm_api.deps import get_runtime
from dpm_api.projections import COLUMNS, row_from_db
from dpm_api.routes import auth as auth_routes
from dpm_api.routes import machines as machine_routes
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)  # pages, not API: kept out of the OpenAPI document
HOME = "/console/machines"
BULK_ACTIONS = {"power_on": "Power on"}
_REASONS = {
    "expired": "Your session ended (idle too long, or past its lifetime). Please log in again.",
    "logged-out": "You are logged out.",
}


@router.get("/")
async def home() -> Response:
    return pages.redirect(HOME)


@router.get("/console/static/console.css")
async def css() -> Response:
    response = Response(pages.stylesheet(), media_type="text/css; charset=utf-8")
    response.headers.update(security.HEADERS)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@router.get("/console/login")
async def login_page(request: Request, reason: str | None = None) -> Response:
    rt = get_runtime(request)
    if await pages.visitor(request, rt) is not None:
        return pages.redirect(HOME)
    return _login_form(request, notice=_REASONS.get(reason or ""))


def _login_form(
    request: Request, *, status: int = 200, error: str | None = None, notice: str | None = None
) -> Response:
    """The login form with a fresh double-submit token, in its field and in a cookie."""
    nonce = security.login_nonce()
    response = pages.render("login.html", status=status, nonce=nonce, error=error, notice=notice, title="Log in")
    security.set_cookie(response, security.LOGIN_COOKIE, nonce, secure=pages.secure(request), max_age=None)
    return response


@router.post("/console/login")
async def login(request: Request) -> Response:
    """The REST login (its throttling, password check and LoggedIn event), its session put in a cookie."""
    rt = get_runtime(request)
    if not security.same_origin(request.headers, pages.origin(request)):
        return pages.refusal(E.CONSOLE_FORM_REFUSED(reason="it did not come from this console's own pages"))
    fields = await pages.form(request)
    if not security.nonce_ok(request.cookies.get(security.LOGIN_COOKIE), pages.one(fields, "csrf")):
        return pages.refusal(E.CONSOLE_FORM_REFUSED(reason="its CSRF token is missing or not this form's"))
    try:
        name, password = pages.one(fields, "username") or "", pages.one(fields, "password") or ""
        body = auth_routes.LoginIn(username=name, password=password)
        out = await auth_routes.login(body, request, rt)
    except ValidationError:
        return _login_form(request, status=401, error=E.LOGIN_FAILED().message)
    except DpmError as err:
        return _login_form(request, status=err.error.http_status, error=f"{err.message} ({err.code})")
    response = pages.redirect(HOME)
    policy: auth.SessionPolicy = request.app.state.sessions
    https = pages.secure(request)
    security.set_cookie(response, security.SESSION_COOKIE, out.token, secure=https, max_age=policy.max_age)
    security.clear_cookie(response, security.LOGIN_COOKIE, secure=https)
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.redirect("/console/login?reason=expired")
    try:
        await pages.checked_form(request, who)
    except DpmError as err:
        return pages.refusal(err, who)
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM api.sessions WHERE token_sha256 = %s", (auth.sha256(who.token),))
    response = pages.redirect("/console/login?reason=logged-out")
    security.clear_cookie(response, security.SESSION_COOKIE, secure=pages.secure(request))
    return response


def _link(q: str, group: str, page: int) -> str:
    params = {k: v for k, v in (("q", q), ("group", group), ("page", str(page) if page > 1 else "")) if v}
    return HOME + ("?" + urlencode(params) if params else "")


@router.get("/console/machines")
async def machines_page(request: Request, q: str = "", group: str = "", page: str | None = None) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        stale = request.cookies.get(security.SESSION_COOKIE)  # a cookie whose session ended: say so
        return pages.redirect("/console/login?reason=expired" if stale else "/console/login")
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
        return pages.redirect("/console/login")
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
    if (who := await pages.visitor(request, rt)) is None:
        return pages.refusal(E.UNAUTHENTICATED())
    try:
        fields = await pages.checked_form(request, who)
        who.principal.require(Role.OPERATOR, "POST /console/machines/bulk")
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
