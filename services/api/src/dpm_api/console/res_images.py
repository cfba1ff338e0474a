"""The images page: the catalogue (captured vs stored size, verification state), verify and delete.
Every action is the REST route's own function with its role (operator); verifying asks the imager,
so an imager that does not answer shows as the API's own error (DPM-E164: code, message, remedy),
as text on the page, never as a crash. Deleting goes through a confirmation page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import images as image_routes
from dpm_runtime.service import Runtime
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/images"


def _rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for image in found:
        state, css = res_text.verification(image)
        rows.append(
            {
                **image,
                "captured": res_text.human_bytes(image["captured_bytes"]),
                "stored": res_text.human_bytes(image["stored_bytes"]),
                "disk": res_text.human_bytes(image["size_bytes"]),
                "share": res_text.stored_share(image["captured_bytes"], image["stored_bytes"]),
                "at": res_text.stamp(image["captured_at"]),
                "state": state,
                "state_css": css,
            }
        )
    return rows


async def _listing(
    rt: Runtime, who: Visitor, *, status: int = 200, notice: str | None = None, **extra: Any
) -> Response:
    """The list page; ``extra``: a verification's ``result`` or an action's ``problem``."""
    rows = _rows(await image_routes.list_images(rt, who.principal))
    context = {"result": None, "problem": None, **extra}
    return pages.render(
        "images.html", status=status, visitor=who, title="Images", rows=rows, can_act=who.can_act,
        notice=notice, **context,
    )  # fmt: skip


@router.get("/console/images")
async def images_page(request: Request, done: str = "", image: str = "") -> Response:
    got = await res_kit.opened(request, Role.VIEWER, "GET /images")
    if isinstance(got, Response):
        return got
    rt, who = got
    notice = f"Image {image} deleted; its chunks go with the imager's next collection." if done == "deleted" else None
    return await _listing(rt, who, notice=notice)


@router.get("/console/images/delete")
async def confirm_delete(request: Request, image: str = "") -> Response:
    got = await res_kit.opened(request, Role.OPERATOR, "DELETE /images/{name}")
    if isinstance(got, Response):
        return got
    _rt, who = got
    return res_kit.confirmation(
        who,
        nav="images",
        title="Delete image",
        question=f"Delete the image {image}? Restores of it will no longer be possible.",
        action="/console/images/delete",
        hidden={"image": image},
        back=HOME,
    )


@router.post("/console/images/delete")
async def delete(request: Request) -> Response:
    got = await res_kit.posted(request, Role.OPERATOR, "DELETE /images/{name}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "image")
    try:
        res_kit.confirmed(fields, f"delete the image {name}")
        await image_routes.delete_image(name, rt, who.principal.username)
    except DpmError as err:
        return await _listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return pages.redirect(f"{HOME}?{urlencode({'done': 'deleted', 'image': name})}")


@router.post("/console/images/verify")
async def verify(request: Request) -> Response:
    """Verify now (the imager re-reads every chunk); the outcome, or the API's error, on the list."""
    got = await res_kit.posted(request, Role.OPERATOR, "POST /images/{name}/verify")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "image")
    try:
        result = await image_routes.verify_image(name, request, rt, who.principal.username)
    except DpmError as err:
        return await _listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return await _listing(rt, who, result=result.model_dump())
