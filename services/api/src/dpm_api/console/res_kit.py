"""What the resource and admin pages share: opening a page for a role (the login page for a visitor
without a session, the API's own DPM-E404 page for a role too low), reading a state-changing form
through ``pages.posted`` (a refusal page otherwise), and the server-rendered confirmation step every
destructive action goes through (no script dialog: the tests assert that none ever opens)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from dpm_api.console import pages
from dpm_api.console.pages import Visitor
from dpm_api.deps import get_runtime
from dpm_runtime.service import Runtime
from dpm_schemas import E, text
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

Fields = dict[str, list[str]]
M = TypeVar("M", bound=BaseModel)
CONFIRM = "yes"  # the value of the hidden ``confirm`` field only the confirmation page's form carries


async def opened(request: Request, role: Role, route: str) -> tuple[Runtime, Visitor] | Response:
    """The runtime and visitor of a page that needs ``role`` (as the REST route ``route`` does), or
    the response to send instead: the login page, or the refusal with the API's DPM-E404."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(role, route)
    except DpmError as err:
        return pages.refusal(err, who)
    return rt, who


async def posted(request: Request, role: Role, route: str) -> tuple[Runtime, Visitor, Fields] | Response:
    """A state-changing form, through ``pages.posted`` (session, origin, CSRF token, then ``role``),
    or its refusal page (with the visitor's menu when the session itself was fine)."""
    rt = get_runtime(request)
    try:
        who, fields = await pages.posted(request, rt, role, route)
    except DpmError as err:
        return pages.refusal(err, await pages.visitor(request, rt))
    return rt, who, fields


def field(fields: Mapping[str, list[str]], name: str, default: str = "") -> str:
    """A form field's first value, stripped (absent: ``default``)."""
    value = pages.one(dict(fields), name)
    return default if value is None else value.strip()


def confirmed(fields: Mapping[str, list[str]], action: str) -> None:
    """DPM-E440 unless the form came from the confirmation page (a bare post of the action does not)."""
    if field(fields, "confirm") != CONFIRM:
        raise E.CONSOLE_NOT_CONFIRMED(action=action)


def confirmation(
    who: Visitor,
    *,
    nav: str,
    title: str,
    question: str,
    action: str,
    hidden: Mapping[str, str],
    back: str,
    changes: Sequence[Mapping[str, str]] = (),
    danger: bool = True,
) -> Response:
    """The confirmation page of a destructive action or a change: the question, what changes (rows of
    field, old and new), and a form posting ``hidden`` with the confirmation to ``action``;
    "Cancel" goes ``back``. ``danger``: the button is styled as destructive (a revoke, disable or
    delete, the default); a harmless change such as saving settings passes False."""
    return pages.render(
        "settings_confirm.html",
        visitor=who,
        title=title,
        nav=nav,
        question=question,
        action=action,
        hidden=dict(hidden),
        confirm=CONFIRM,
        back=back,
        changes=[dict(c) for c in changes],
        danger=danger,
    )


def problem(err: DpmError) -> dict[str, Any]:
    """An error as the pages show it inline: code, title, message and remedy, as text."""
    return err.to_dict()


def body(model: type[M], data: Mapping[str, Any]) -> M:
    """A REST route's body model from form values, refused exactly as the API refuses a JSON body
    (``text.refusal``: DPM-E005 for bad text, else DPM-E100 naming the field)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise text.refusal(exc.errors()) from None
