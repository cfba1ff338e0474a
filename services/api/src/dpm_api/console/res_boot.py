"""The boot page: the boot settings in force (DHCP mode, server address, full-mode ranges, deploy
environment; administrators edit them, as ``PUT /boot/settings`` allows only them), what a MAC would
boot and why, the latest network boots and the DHCP leases. The last three are the pxe service's
answers passed through the REST routes: while pxe does not answer, each section shows the API's own
error (DPM-E132, with its remedy) as text, and the rest of the page still works."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import boot as boot_routes
from dpm_runtime.service import Runtime
from dpm_schemas.errors import DpmError
from dpm_schemas.events.boot import DhcpMode
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/boot"
RECENT = 25  # boots listed; GET /boot/recent has up to 1000
FORM_FIELDS = ("mode", "server_ip", "deploy_kernel", "deploy_initrd", "deploy_cmdline")


async def _answer(call: Awaitable[Any]) -> tuple[Any, dict[str, Any] | None]:
    """(pxe's answer, None), or (None, the API's error) when pxe did not answer or refused."""
    try:
        return await call, None
    except DpmError as err:
        return None, res_kit.problem(err)


def _boots(found: Any) -> list[dict[str, str]]:
    keys = ("mac", "arch", "client_ip", "stage", "machine_id", "decision")
    return [{"at": res_text.stamp(b.get("at")), **{k: str(b.get(k) or "") for k in keys}} for b in found or []]


def _leases(found: Any) -> list[dict[str, str]]:
    keys = ("ip", "mac", "state")
    return [
        {"expires": res_text.stamp(x.get("expires_at")), **{k: str(x.get(k) or "") for k in keys}} for x in found or []
    ]


async def _page(
    request: Request, rt: Runtime, who: Visitor, *, mac: str = "", status: int = 200, **extra: Any
) -> Response:
    """The boot page; ``extra``: the settings form's ``values`` and ``rows`` and its ``problem``."""
    p = who.principal
    current = await boot_routes.get_settings(rt, p)
    explained, explain_problem = await _answer(boot_routes.explain(mac, request, p)) if mac else (None, None)
    recent, recent_problem = await _answer(boot_routes.recent(request, p, RECENT, None))
    leases, leases_problem = await _answer(boot_routes.leases(request, p))
    values = {f: str(current.get(f) or "") for f in FORM_FIELDS}
    context = {"values": values, "rows": res_text.range_cells(current["ranges"]), "problem": None, **extra}
    return pages.render(
        "boot.html", status=status, visitor=who, title="Boot", current=current, modes=[m.value for m in DhcpMode],
        mac=mac, explained=explained, explain_problem=explain_problem, recent=_boots(recent),
        recent_problem=recent_problem, leases=_leases(leases), leases_problem=leases_problem,
        is_admin=p.role is Role.ADMIN, notice="Boot settings saved." if request.query_params.get("done") else None,
        **context,
    )  # fmt: skip


@router.get("/console/boot")
async def boot_page(request: Request, mac: str = "") -> Response:
    got = await res_kit.opened(request, Role.VIEWER, "GET /boot/settings")
    if isinstance(got, Response):
        return got
    rt, who = got
    return await _page(request, rt, who, mac=mac.strip()[:64])


@router.post("/console/boot/settings")
async def save_settings(request: Request) -> Response:
    """Replace the boot settings (admin), as ``PUT /boot/settings`` does; refused: shown inline."""
    got = await res_kit.posted(request, Role.ADMIN, "PUT /boot/settings")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    values = {f: res_kit.field(fields, f) for f in FORM_FIELDS}
    ranges = res_text.range_rows(fields)
    typed: dict[str, Any] = {**values, "server_ip": values["server_ip"] or None, "ranges": ranges}
    typed["force"] = res_kit.field(fields, "force") == "on"
    try:
        body = res_kit.body(boot_routes.BootSettingsIn, typed)
        await boot_routes.put_settings(body, rt, who.principal.username)
    except DpmError as err:
        rows = res_text.range_cells(ranges)
        problem = res_kit.problem(err)
        return await _page(request, rt, who, status=err.error.http_status, values=values, rows=rows, problem=problem)
    return pages.redirect(f"{HOME}?done=saved")
