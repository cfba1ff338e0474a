"""The packages pages: the catalogue (id, type, urgency, version, revision), the package sources and
their last sync, staged rollouts and the latest install reports (the auto-update state the API
keeps), and one package's page with its fields and, for a machine named, whether it applies there
and why (``GET /machines/{m}/packages``). Reads only; the actions are in res_updates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import packages as package_routes
from dpm_api.routes import rollouts as rollout_routes
from dpm_api.routes import sources as source_routes
from dpm_api.routes import updates as update_routes
from dpm_runtime.service import Runtime
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/packages"
HISTORY = 20  # install reports shown; the REST history (and its CSV export) has them all
DONE = {
    "synced": "Sync of source {name} requested; its outcome shows under Last sync once the updater ran it.",
    "notified": "Notify now requested: the updater pushes due high and highest urgency packages at once.",
    "auto-update": "Auto-update time of {name} saved.",
}


def _package_row(entry: dict[str, Any]) -> dict[str, Any]:
    p = entry["package"]
    return {
        "id": p["id"],
        "type": p.get("type", ""),
        "urgency": p.get("urgency", ""),
        "version": res_text.package_version(p),
        "revision": p.get("revision", 0),
        "summary": p.get("summary") or p.get("display_name") or "",
        "registered": res_text.stamp(entry.get("registered_at")),
    }


def _source_row(s: dict[str, Any]) -> dict[str, Any]:
    last = s.get("last_sync")
    return {
        "name": s["name"],
        "kind": s.get("kind", "deb"),
        "url": s.get("url", ""),
        "urgency": s.get("urgency", ""),
        "signed": s.get("signed", False),
        "interval": s.get("interval_minutes"),
        "offered": s.get("offered_total", 0),
        "synced": res_text.stamp(last["at"]) if last else "never",
        "ok": last["ok"] if last else None,
        "code": (last or {}).get("code") or "",
        "message": (last or {}).get("message") or "",
    }


async def listing(rt: Runtime, who: Visitor, *, status: int = 200, notice: str | None = None, **extra: Any) -> Response:
    """The packages page; ``extra``: an action's ``problem`` and the ``form`` values to show again."""
    p = who.principal
    catalogue = [_package_row(e) for e in await package_routes.list_packages(rt, p)]
    found = [_source_row(s) for s in await source_routes.list_sources(rt, p)]
    rollouts = await rollout_routes.list_rollouts(rt, p)
    history = await update_routes.update_history(rt, p, None, None, None, HISTORY, False)
    context = {"problem": None, "form": {}, **extra}
    return pages.render(
        "packages.html", status=status, visitor=who, title="Packages", packages=catalogue, sources=found,
        rollouts=rollouts, history=history, history_size=HISTORY, can_act=who.can_act, notice=notice,
        stamp=res_text.stamp, **context,
    )  # fmt: skip


@router.get("/console/packages")
async def packages_page(request: Request, done: str = "", name: str = "") -> Response:
    got = await res_kit.opened(request, Role.VIEWER, "GET /packages")
    if isinstance(got, Response):
        return got
    rt, who = got
    notice = DONE[done].format(name=name) if done in DONE else None
    return await listing(rt, who, notice=notice)


@router.get("/console/packages/{package_id}")
async def package_page(request: Request, package_id: str, machine: str = "") -> Response:
    """One package: its fields, its content, and (``?machine=``) its verdict on that machine."""
    got = await res_kit.opened(request, Role.VIEWER, "GET /packages/{package_id}")
    if isinstance(got, Response):
        return got
    rt, who = got
    try:
        entry = await package_routes.show_package(package_id, rt, who.principal)
    except DpmError as err:
        return pages.refusal(err, who)
    verdict, problem = None, None
    if machine.strip():
        try:
            verdict = await _verdict(rt, who, machine.strip(), package_id)
        except DpmError as err:
            problem = res_kit.problem(err)
    package = entry["package"]
    return pages.render(
        "packages_one.html",
        visitor=who,
        title=f"Package {package['id']}",
        package=package,
        facts=res_text.fact_rows(package),
        package_version=res_text.package_version(package),
        entry=entry,
        registered=res_text.stamp(entry.get("registered_at")),
        machine=machine,
        verdict=verdict,
        problem=problem,
    )


async def _verdict(rt: Runtime, who: Visitor, machine: str, package_id: str) -> dict[str, Any]:
    """The applicability engine's verdict on one machine, as ``GET /machines/{m}/packages`` gives it."""
    judged = await package_routes.machine_packages(machine, rt, who.principal, [package_id])
    found = next((a for a in judged["packages"] if a["package_id"] == package_id), None)
    return {"machine": judged["machine"], "assessment": found, "order": judged["install_order"]}
