"""Images over HTTP: the catalogue (list, show, delete), transfers for operators' own backups and
restores (``dpm images backup|restore``), and verification, which the imager does on our behalf."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from dpm_api import images
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.domain.images import MachineFacts
from dpm_runtime.eventlog import Conn
from dpm_schemas import E
from dpm_schemas.errors import CATALOGUE
from dpm_schemas.events.imaging import TransferDirection

router = APIRouter(tags=["images"])


@router.get("/images")
async def list_images(rt: RuntimeDep, _who: ViewerDep) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        return await images.list_images(conn)


@router.post("/images/gc", responses={202: {"description": "asked; the imager's figures did not come within wait"}})
async def collect_store(
    rt: RuntimeDep, actor: ActorDep, response: Response, wait: Annotated[float, Query(ge=0, le=600)] = 0
) -> dict[str, Any]:
    """Have the imager collect the chunk store now (the timer runs hourly): what no image or open
    backup names -- an aborted backup's chunks at once, others past DPM_IMAGER_GC_GRACE -- and stale
    temporary files. ``wait`` seconds for its figures; without them the answer is 202 with
    DPM-E196 under ``pending``: the request is in the log and the imager carries it out when it runs."""
    async with rt.pool.connection() as conn, conn.transaction():
        request_id = await images.request_collection(rt.eventlog, conn, actor=actor)
    collected = await images.collection_result(rt.eventlog, request_id, wait) if wait else None
    if collected is not None or not wait:
        return {"request_id": str(request_id), "collected": collected}
    response.status_code = 202
    return {
        "request_id": str(request_id),
        "collected": None,
        "pending": E.STORE_COLLECT_UNCONFIRMED(timeout=wait).to_dict(),
    }


class TransferIn(BaseModel):
    image: str = Field(min_length=1, max_length=300, description="name, or a template with {machine} {mac} {uuid}")
    direction: TransferDirection
    machine: str | None = Field(default=None, description="machine (name or id) filling the template's fields")


@router.post("/images/transfers", status_code=201)
async def open_transfer(body: TransferIn, request: Request, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """A token for one backup or restore of one image by a deploy client run by hand."""
    async with rt.pool.connection() as conn, conn.transaction():
        facts, machine_id = await machine_facts(conn, body.machine) if body.machine else (None, None)
        opened = await images.open_transfer(
            rt.eventlog,
            conn,
            body.image,
            body.direction,
            machine=facts,
            machine_id=machine_id,
            execution_id=None,
            ttl=request.app.state.transfer_ttl,
            lease=request.app.state.backup_lease,
            actor=actor,
        )
    return transfer_out(request, opened)


def transfer_out(request: Request, opened: images.Opened) -> dict[str, Any]:
    return {
        "transfer_id": str(opened.transfer_id),
        "token": opened.token,
        "image": opened.image,
        "direction": opened.direction.value,
        "expires_at": opened.expires_at.isoformat(),
        "imager_url": imager_url(request),
    }


@router.get("/machines/{machine}/disks")
async def machine_disks(machine: str, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    """The disk viewer: the machine's disks, partitions, types, sizes and filesystems ("unknown" for
    those dpm cannot read) from its latest disk configuration check."""
    async with rt.pool.connection() as conn:
        facts, machine_id = await machine_facts(conn, machine)
        found = await images.disks_of(conn, machine_id)
    if found is None:
        raise E.DISK_NOT_FOUND(disk=f"of {facts.name}", reason="no disk configuration check has run on it yet")
    return {"machine": facts.name, **found}


@router.get("/images/{name:path}")
async def show_image(name: str, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn:
        return await images.get_image(conn, name)


@router.delete("/images/{name:path}")
async def delete_image(name: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """The name goes at once; its chunks go with the imager's next garbage collection (right after)."""
    async with rt.pool.connection() as conn, conn.transaction():
        position = await images.delete_image(rt.eventlog, conn, name, actor=actor)
    await rt.projections["images"].wait_for(position, timeout=5)
    return {"deleted": name}


@router.post("/images/{name:path}/unlock")
async def unlock_image(name: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Free a name a backup holds (DPM-E160) now: its transfer is aborted, its token refused, its
    chunks collected. Idempotent: an image no backup holds answers with nothing released."""
    async with rt.pool.connection() as conn, conn.transaction():
        released = await images.unlock_image(rt.eventlog, conn, name, actor=actor)
    return {"image": name, "released": released}


class VerifyOut(BaseModel):
    """What the imager found; only these fields pass through, never its raw answer."""

    image: str
    manifest: str
    chunks: int
    corrupt: list[str]
    ok: bool


@router.post("/images/{name:path}/verify", response_model=VerifyOut)
async def verify_image(name: str, request: Request, rt: RuntimeDep, actor: ActorDep) -> VerifyOut:
    """Have the imager re-read every chunk of the image (decompress, re-hash): the corrupt ones named."""
    async with rt.pool.connection() as conn, conn.transaction():
        opened = await images.open_transfer(
            rt.eventlog,
            conn,
            name,
            TransferDirection.VERIFY,
            machine=None,
            machine_id=None,
            execution_id=None,
            ttl=600,
            actor=actor,
        )
    url = own_imager_url(request)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=3600, follow_redirects=False) as http:
            answer = await http.post(
                f"/v1/transfers/{opened.transfer_id}/verify", headers={"Authorization": f"Bearer {opened.token}"}
            )
    except httpx.HTTPError as exc:
        raise E.IMAGER_UNAVAILABLE(url=url, reason=type(exc).__name__) from None
    if answer.status_code != 200:
        raise E.IMAGER_REFUSED(status=answer.status_code, code=_upstream_code(answer), action=f"verifying {name}")
    try:
        return VerifyOut.model_validate_json(answer.content)
    except ValidationError:
        raise E.IMAGER_REFUSED(
            status=answer.status_code, code="unreadable answer", action=f"verifying {name}"
        ) from None


def _upstream_code(answer: httpx.Response) -> str:
    """The catalogued code of the imager's error answer, if it has one; nothing else of it is kept."""
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "no code"
    return code if isinstance(code, str) and code in CATALOGUE else "no code"


def imager_url(request: Request) -> str:
    """The imager as *deploy clients* reach it, handed to them with a transfer token: DPM_API_IMAGER_URL,
    else the imager on the host the caller reached us at (one-host installs need no setting, whichever
    network the caller is on). Never used for the api's own calls: see ``own_imager_url``."""
    configured: str | None = request.app.state.imager_url
    return configured.rstrip("/") if configured else f"http://{request.url.hostname}:{request.app.state.imager_port}"


def own_imager_url(request: Request) -> str:
    """Where the api itself calls the imager: worked out from settings at start-up (bootstrap), never
    from the request -- a Host header must not aim the api's token anywhere."""
    url: str = request.app.state.own_imager_url
    return url


async def machine_facts(conn: Conn, ref: str) -> tuple[MachineFacts, uuid.UUID]:
    try:
        key: Any = uuid.UUID(ref)
        where = "machine_id = %s"
    except ValueError:
        key, where = ref, "name = %s"
    sql = f"SELECT machine_id, name, macs, smbios_uuid FROM api.machines WHERE {where}"
    row = await (await conn.execute(sql, (key,))).fetchone()
    if row is None:
        raise E.MACHINE_NOT_FOUND(machine_id=ref)
    return MachineFacts(name=row[1], mac=(row[2] or [None])[0], smbios_uuid=row[3]), row[0]
