"""Register, edit and delete a machine from the console: the forms build the REST body
(``MachineIn``) and call the REST routes' own functions, so a refusal has the API's code and
message; a refused form is shown again with what was typed. Deleting asks on a page of its own
first (the confirmation's field is checked: DPM-E440 without it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from dpm_api.console import machine_data, pages
from dpm_api.deps import get_runtime
from dpm_api.projections import COLUMNS, row_from_db
from dpm_api.routes import machines as machine_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E, text
from dpm_schemas.errors import DpmError
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/machines"
FIELDS = ("name", "macs", "smbios_uuid", "ip", "group", "os_type")
_NOTICES = {"registered": "Machine registered.", "edited": "Changes saved."}


def notice(done: str | None) -> str | None:
    return _NOTICES.get(done or "")


def typed(fields: dict[str, list[str]]) -> dict[str, str]:
    """The form's values as typed (shown again when refused)."""
    return {k: (pages.one(fields, k) or "").strip() for k in FIELDS}


def body(values: dict[str, str]) -> machine_routes.MachineIn:
    """The REST body from the form, refused as the API refuses a JSON body (DPM-E005 / DPM-E100)."""
    data: dict[str, Any] = {
        "name": values["name"],
        "macs": values["macs"].replace(",", " ").replace(";", " ").split(),
        "smbios_uuid": values["smbios_uuid"] or None,
        "ip": values["ip"] or None,
        "group": values["group"] or NEW_MACHINES,
        "os_type": values["os_type"] or None,
    }
    try:
        return machine_routes.MachineIn.model_validate(data)
    except ValidationError as exc:
        raise text.refusal([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]) from None


async def _row(rt: Runtime, mid: uuid.UUID) -> machine_routes.MachineOut:
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines WHERE machine_id = %s", (mid,))
        raw = await cur.fetchone()
    if raw is None:
        raise E.MACHINE_NOT_FOUND(machine_id=mid)
    return machine_routes._out(row_from_db(raw))


def _values(m: machine_routes.MachineOut) -> dict[str, str]:
    return {
        "name": m.name,
        "macs": " ".join(m.macs),
        "smbios_uuid": str(m.smbios_uuid or ""),
        "ip": m.ip or "",
        "group": m.group_name,
        "os_type": m.os_type or "",
    }


async def _form(
    rt: Runtime, who: pages.Visitor, values: dict[str, str], machine: Any, error: DpmError | None
) -> Response:
    async with rt.pool.connection() as conn:
        groups = await machine_data.group_names(conn)
    title = f"Edit {machine.name}" if machine else "Register a machine"
    status = error.error.http_status if error else 200
    shown = error.to_dict() if error else None
    return pages.render(
        "machine_form.html", status=status, visitor=who, title=title, nav="machines",
        values=values, machine=machine, groups=groups, error=shown,
    )  # fmt: skip


def _id(machine_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(machine_id)
    except ValueError:
        raise E.MACHINE_NOT_FOUND(machine_id=machine_id[:100]) from None


async def _opened(
    request: Request, route: str, machine_id: str | None
) -> Response | tuple[Runtime, pages.Visitor, Any]:
    """A form page's runtime and visitor, with the role ``route`` requires, and the machine it is
    about (None for a new one); else the login or the refusal to show instead."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(Role.OPERATOR, route)
        machine = await _row(rt, _id(machine_id)) if machine_id is not None else None
    except DpmError as err:
        return pages.refusal(err, who)
    return rt, who, machine


@router.get("/console/machines/new")
async def new_page(request: Request) -> Response:
    if isinstance(opened := await _opened(request, "POST /machines", None), Response):
        return opened
    rt, who, _ = opened
    return await _form(rt, who, dict.fromkeys(FIELDS, ""), None, None)


Save = Callable[[Runtime, str, machine_routes.MachineIn, Any], Awaitable[uuid.UUID]]


async def _submitted(request: Request, route: str, machine_id: str | None, save: Save) -> Response:
    """A posted register or edit form: checked as ``route`` is (``pages.posted``), the machine edited
    looked up, then ``save`` (the REST function) with the body; a refused body shows the form again."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, route)
        machine = await _row(rt, _id(machine_id)) if machine_id is not None else None
    except DpmError as err:
        return pages.refusal(err, who)
    values = typed(fields)
    try:
        mid = await save(rt, who.principal.username, body(values), machine)
    except DpmError as err:
        return await _form(rt, who, values, machine, err)
    return pages.redirect(f"{HOME}/{mid}?done={'edited' if machine else 'registered'}")


async def _register(rt: Runtime, actor: str, made: machine_routes.MachineIn, _machine: None) -> uuid.UUID:
    return (await machine_routes.register_machine(made, rt, actor, Response())).machine_id


async def _edit(rt: Runtime, actor: str, made: machine_routes.MachineIn, machine: Any) -> uuid.UUID:
    await machine_routes.edit_machine(machine.machine_id, made, rt, actor)
    mid: uuid.UUID = machine.machine_id
    return mid


@router.post("/console/machines/new")
async def register(request: Request) -> Response:
    return await _submitted(request, "POST /machines", None, _register)


@router.get("/console/machines/{machine_id}/edit")
async def edit_page(request: Request, machine_id: str) -> Response:
    if isinstance(opened := await _opened(request, "PUT /machines/{machine_id}", machine_id), Response):
        return opened
    rt, who, machine = opened
    return await _form(rt, who, _values(machine), machine, None)


@router.post("/console/machines/{machine_id}/edit")
async def edit(request: Request, machine_id: str) -> Response:
    return await _submitted(request, "PUT /machines/{machine_id}", machine_id, _edit)


@router.get("/console/machines/{machine_id}/delete")
async def delete_page(request: Request, machine_id: str) -> Response:
    """The confirmation page: what will be deleted, and the one button that does it."""
    if isinstance(opened := await _opened(request, "DELETE /machines/{machine_id}", machine_id), Response):
        return opened
    _, who, machine = opened
    title = f"Delete {machine.name}"
    return pages.render("machine_delete.html", visitor=who, title=title, nav="machines", machine=machine)


@router.post("/console/machines/{machine_id}/delete")
async def delete(request: Request, machine_id: str) -> Response:
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "DELETE /machines/{machine_id}")
        if pages.one(fields, "confirm") != "yes":
            raise E.CONSOLE_NOT_CONFIRMED(action="delete the machine")
        mid = _id(machine_id)
        await machine_routes.delete_machine(mid, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(f"{HOME}?done=deleted&count=1")
