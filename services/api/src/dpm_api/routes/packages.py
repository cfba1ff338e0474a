"""Packages over HTTP: uploads of their content (a token for the updater's data plane), the
catalogue (register a revision, list, show, remove), the machines' inventories and what would apply
to a machine and why (``GET /machines/{m}/packages``, the applicability engine of dpm_packages)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from dpm_api import packages
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.requestmeta import command_metadata
from dpm_api.routes.images import machine_facts
from dpm_packages import assess, from_reported, install_order, parse_package
from dpm_runtime.eventlog import NO_STREAM
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.events import UpdatesNotifyRequested
from dpm_schemas.events.packages import Hex64
from dpm_schemas.ids import stream_id
from dpm_schemas.packages import Package
from dpm_schemas.text import Label

router = APIRouter(tags=["packages"])


class UploadIn(BaseModel):
    size: int = Field(ge=0, description="the file's size in bytes (no upper limit)")
    sha256: Hex64 | None = Field(default=None, description="its SHA-256; the content is kept only if it matches")
    file_name: Label = ""


@router.post("/packages/uploads", status_code=201)
async def open_upload(body: UploadIn, request: Request, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """A token for sending one file to the updater: ``PATCH {updater_url}/v1/uploads/{upload_id}``
    with ``Upload-Offset`` (resumable: ``HEAD`` says where to go on)."""
    async with rt.pool.connection() as conn, conn.transaction():
        opened = await packages.open_upload(
            rt.eventlog,
            conn,
            size=body.size,
            sha256=body.sha256,
            file_name=body.file_name,
            ttl=request.app.state.package_upload_ttl,
            actor=actor,
        )
    return {
        "upload_id": str(opened.upload_id),
        "token": opened.token,
        "size": opened.size,
        "expires_at": opened.expires_at.isoformat(),
        "updater_url": updater_url(request),
    }


@router.post("/packages", status_code=201)
async def register_package(
    rt: RuntimeDep,
    actor: ActorDep,
    definition: Annotated[dict[str, Any], Body(description="the package information (dpm_schemas.packages.Package)")],
    upload_id: Annotated[UUID | None, Body()] = None,
    file_name: Annotated[Label, Body()] = "",
    expected_revision: Annotated[int | None, Body(ge=0)] = None,
) -> dict[str, Any]:
    """Register the package's next revision (every field checked with its own code, DPM-E200..E215),
    naming the content of a completed upload (DPM-E275 if it is not)."""
    package = parse_package({k: v for k, v in definition.items() if k != "revision"})
    async with rt.pool.connection() as conn, conn.transaction():
        content = await packages.stored_content(rt.eventlog, conn, upload_id) if upload_id else None
        registered, position = await packages.register(
            rt.eventlog, conn, package, content, file_name=file_name, expected=expected_revision, actor=actor
        )
    await rt.projections["packages"].wait_for(position, timeout=5)
    async with rt.pool.connection() as conn:
        return await packages.get_package(conn, registered.id)


@router.get("/packages")
async def list_packages(rt: RuntimeDep, _who: ViewerDep) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        return await packages.list_packages(conn)


@router.get("/packages/{package_id}")
async def show_package(package_id: str, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn:
        return await packages.get_package(conn, package_id)


@router.delete("/packages/{package_id}")
async def remove_package(package_id: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        position = await packages.remove(rt.eventlog, conn, package_id, actor=actor)
    await rt.projections["packages"].wait_for(position, timeout=5)
    return {"removed": package_id}


@router.get("/machines/{machine}/inventory")
async def machine_inventory(machine: str, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    """What the machine's agent last reported: OS, kernel and installed packages."""
    async with rt.pool.connection() as conn:
        facts, machine_id = await machine_facts(conn, machine)
        found = await packages.inventory_of(conn, machine_id)
    if found is None:
        raise E.PACKAGE_INVENTORY_UNKNOWN(machine=facts.name)
    return {"machine": facts.name, "machine_id": str(machine_id), **found}


@router.get("/machines/{machine}/packages")
async def machine_packages(
    machine: str, rt: RuntimeDep, _who: ViewerDep, package: Annotated[list[str] | None, Query()] = None
) -> dict[str, Any]:
    """Every registered package (or those named) judged against the machine's inventory: applicable,
    installable, already applied, not applicable or unknown, each with its reasons, and the order
    the installable ones would go in."""
    async with rt.pool.connection() as conn:
        facts, machine_id = await machine_facts(conn, machine)
        found = await packages.inventory_of(conn, machine_id)
        catalogue = await packages.list_packages(conn)
    if found is None:
        raise E.PACKAGE_INVENTORY_UNKNOWN(machine=facts.name)
    defined = [Package.model_validate(p["package"]) for p in catalogue]
    if package:
        defined = [p for p in defined if p.id in package]
    verdicts = assess(from_reported(found["os"], found["kernel"], found["packages"]), defined)
    return {
        "machine": facts.name,
        "packages": [a.model_dump(mode="json") for a in verdicts],
        "install_order": list(install_order(verdicts, defined)),
    }


class NotifyIn(BaseModel):
    machines: list[Label] = Field(default=[], max_length=10_000, description="names or ids; none: every machine")


@router.post("/updates/notify", status_code=202)
async def notify_updates(body: NotifyIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """ "Notify now": the updater pushes every applicable high and highest urgency package to these
    (or all) online machines at once, also those an automatic delivery failed on."""
    async with rt.pool.connection() as conn, conn.transaction():
        ids = [(await machine_facts(conn, ref))[1] for ref in body.machines]
        request = UpdatesNotifyRequested(request_id=uuid4(), machine_ids=tuple(dict.fromkeys(ids)))
        done = await rt.eventlog.append(
            stream_id(subjects.NOTIFY, request.request_id),
            NO_STREAM,
            [NewEvent(request, command_metadata(actor))],
            conn=conn,
        )
    machines = [str(m) for m in request.machine_ids]  # empty: every online machine
    return {"request_id": str(request.request_id), "machines": machines, "position": done.position}


def updater_url(request: Request) -> str:
    """The updater as clients reach it, handed out with an upload token: DPM_API_UPDATER_URL, else
    the updater on the host the caller reached us at."""
    configured: str | None = request.app.state.updater_url
    return configured.rstrip("/") if configured else f"http://{request.url.hostname}:{request.app.state.updater_port}"
