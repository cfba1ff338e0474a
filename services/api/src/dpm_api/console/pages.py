"""What every console page shares: who the visitor is (from this request's own session cookie only),
rendering with the security headers, refusals as pages, and reading a form that changes something
(after authentication; our origin, then the session's CSRF token)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dpm_api import auth
from dpm_api.auth import Principal
from dpm_api.console import security
from dpm_api.deps import now
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role
from dpm_schemas.version import DPM_VERSION

MAX_FORM = 64 * 1024  # a bulk form of a thousand machine ids is ~40 KiB
MAX_SELECTED = 1000


@dataclass(frozen=True, slots=True)
class Visitor:
    """The logged-in user of one request, and its session's CSRF token."""

    principal: Principal
    token: str

    @property
    def csrf(self) -> str:
        return security.csrf_token(self.token)

    @property
    def can_act(self) -> bool:
        return self.principal.role.rank >= Role.OPERATOR.rank


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    """Built on first use (no I/O at import); autoescape on for every template, undefined is an error."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("dpm_api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}\.(css|js)")


@lru_cache(maxsize=64)
def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the package's own static files and its media type, or None: only a plain name that
    matches ``STATIC_NAME`` is looked up, so no path can leave the folder."""
    if not STATIC_NAME.fullmatch(name):
        return None
    found = resources.files("dpm_api.console").joinpath("static", name)
    if not found.is_file():
        return None
    return found.read_bytes(), STATIC_TYPES[name[name.rindex(".") :]]


def _headers(response: Response) -> Response:
    response.headers.update(security.HEADERS)
    return response


def render(name: str, *, status: int = 200, visitor: Visitor | None = None, **context: Any) -> Response:
    user = {"username": visitor.principal.username, "role": visitor.principal.role.value} if visitor else None
    html = (
        templates()
        .get_template(name)
        .render(user=user, csrf=visitor.csrf if visitor else "", version=DPM_VERSION, **context)
    )
    return _headers(HTMLResponse(html, status_code=status))


def redirect(url: str) -> Response:
    return _headers(RedirectResponse(url, status_code=303))


def to_login(request: Request) -> Response:
    """Where a page sends a visitor without a live session (a cookie whose session ended says so)."""
    stale = request.cookies.get(security.SESSION_COOKIE)
    return redirect("/console/login?reason=expired" if stale else "/console/login")


def refusal(err: DpmError, visitor: Visitor | None = None) -> Response:
    """A refused request as a page: the code, message and remedy, with the error's HTTP status."""
    status, title = err.error.http_status, err.error.title
    return render("error.html", status=status, visitor=visitor, error=err.to_dict(), title=title)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


async def visitor(request: Request, rt: Runtime) -> Visitor | None:
    """This request's user from its own session cookie, or None (no cookie, unknown, idle or too old:
    an expired session is deleted by ``auth.resolve``). A bearer header counts for nothing here."""
    token = request.cookies.get(security.SESSION_COOKIE)
    if not token or not token.startswith(auth.SESSION_PREFIX):
        return None
    try:
        async with rt.pool.connection() as conn:
            principal = await auth.resolve(conn, token, sessions=request.app.state.sessions, now=now(request))
    except DpmError:
        return None
    return Visitor(principal, token)


async def form(request: Request) -> dict[str, list[str]]:
    """A urlencoded form body, read only after the caller was authenticated (and at most MAX_FORM)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise E.BODY_TOO_LARGE(limit=MAX_FORM, route=request.url.path)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_SELECTED + 10)
    except (UnicodeDecodeError, ValueError):
        return {}


def one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


Reader = Callable[[Request], Awaitable[dict[str, list[str]]]]  # a form body's fields (``form``'s shape)


async def checked_form(request: Request, who: Visitor, read: Reader | None = None) -> dict[str, list[str]]:
    """The form of a state-changing post, or DPM-E431: our origin, then this session's CSRF token.
    ``read`` parses the body (``form``, urlencoded, unless the page posts another kind)."""
    if not security.same_origin(request.headers, origin(request)):
        raise E.CONSOLE_FORM_REFUSED(reason="it did not come from this console's own pages")
    fields = await (read or form)(request)
    if not security.csrf_ok(who.token, one(fields, "csrf")):
        raise E.CONSOLE_FORM_REFUSED(reason="its CSRF token is missing or not this session's")
    return fields


async def posted(
    request: Request, rt: Runtime, role: Role, route: str, read: Reader | None = None
) -> tuple[Visitor, dict[str, list[str]]]:
    """A state-changing post's visitor and form, or a DpmError to show as a refusal page: logged in
    (DPM-E401), our origin and this session's CSRF token (DPM-E431), then the role the REST route
    ``route`` requires (DPM-E404), all before anything is read or done."""
    who = await visitor(request, rt)
    if who is None:
        raise E.UNAUTHENTICATED()
    fields = await checked_form(request, who, read)
    who.principal.require(role, route)
    return who, fields
