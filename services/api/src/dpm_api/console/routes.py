"""The console's entry: log in and out, its static files, and every page module's router. Each
request finds its user afresh from its own session cookie (``auth.resolve``, with the api's idle and
absolute session timeouts); a form that changes anything must carry its session's CSRF token and
come from our own origin, and its role is checked exactly as the REST route's (``pages.posted``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from dpm_api import auth
from dpm_api.console import (
    admin,
    dashboard,
    executions,
    machines,
    pages,
    resources,
    scenarios,
    security,
    stream,
)
from dpm_api.deps import get_runtime
from dpm_api.routes import auth as auth_routes
from dpm_schemas import E
from dpm_schemas.errors import DpmError

router = APIRouter(include_in_schema=False)  # pages, not API: kept out of the OpenAPI document
HOME = machines.HOME  # where a login lands
_REASONS = {
    "expired": "Your session ended (idle too long, or past its lifetime). Please log in again.",
    "logged-out": "You are logged out.",
}


@router.get("/")
async def home() -> Response:
    return pages.redirect(HOME)


@router.get("/console/static/{name}")
async def static(name: str) -> Response:
    """The console's own stylesheets and scripts (a fixed set of files shipped in the package)."""
    found = pages.static_file(name)
    if found is None:
        return pages.refusal(E.CONSOLE_PAGE_NOT_FOUND(what=f"file {name!r}"))
    body, media_type = found
    response = Response(body, media_type=media_type)
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


for _pages in (machines, scenarios, executions, resources, admin, dashboard, stream):
    router.include_router(_pages.router)


@router.get("/console/{rest:path}")  # registered last: only what no page module serves
async def unknown(request: Request, rest: str) -> Response:
    """An unknown console address: the console's own 404 page (DPM-E432), or the login to a stranger."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    return pages.refusal(E.CONSOLE_PAGE_NOT_FOUND(what=f"page /console/{rest[:100]}"), who)
