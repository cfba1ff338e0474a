"""pxe's HTTP side: the per-machine iPXE script, what a MAC would boot and why, recent boots, the
full-mode leases, and the boot files themselves (with Range, for kernels and images).

The script and the files face the boot network and carry no authentication (a booting machine has
nothing to show). What a MAC would boot, recent boots and leases say which machine has pending work, so
they answer only the api, which presents DPM_PXE_SERVICE_TOKEN and checks the operator's role.
"""

from __future__ import annotations

import hmac
import logging
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse

from dpm_pxe import handlers
from dpm_pxe.adapters.tftp.files import Refused, resolve
from dpm_pxe.domain.script import Action, arch_of, later, media
from dpm_pxe.handlers import Boot, ScriptRequested
from dpm_runtime.http import bearer
from dpm_runtime.unavailable import is_unavailable
from dpm_schemas import E
from dpm_schemas.ids import normalize_mac

log = logging.getLogger(__name__)
router = APIRouter()


def _boot(request: Request) -> Boot:
    boot: Boot | None = getattr(request.app.state, "boot", None)
    if boot is None:
        raise HTTPException(503, "pxe is starting")
    return boot


def _service(request: Request) -> None:
    """Only the api (DPM_PXE_SERVICE_TOKEN) may ask what a MAC would boot, recent boots and leases."""
    expected = _boot(request).service_token
    given = bearer(request.headers)
    if not expected or given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise E.PXE_SERVICE_ONLY()


ServiceOnly = [Depends(_service)]


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/boot/media.ipxe", response_class=PlainTextResponse)
async def media_script(request: Request) -> PlainTextResponse:
    """The script to embed in boot media (iPXE ``make ... EMBED=``) for networks where dpm answers no DHCP."""
    boot = _boot(request)
    return PlainTextResponse(media(boot.files_url_for(str(request.base_url)).removesuffix("/files")))


@router.get("/boot/{mac}.ipxe", response_class=PlainTextResponse)
async def script(request: Request, mac: str, arch: str = "unknown", uuid: UUID | None = None) -> PlainTextResponse:
    """The script iPXE runs: deploy environment for pending work, else the local disk (and discovery);
    while pxe cannot decide (starting, PostgreSQL unavailable) or the pending work's deploy environment
    is missing (DPM-E430, recorded for the scheduler), one that asks again shortly."""
    boot: Boot | None = getattr(request.app.state, "boot", None)
    mac, kind = _mac(mac), arch_of(arch)
    if boot is None:
        return _script(later(mac, kind.value, uuid, "pxe is starting"))
    asked = ScriptRequested(
        mac=mac,
        arch=kind,
        client_ip=_ipv4(request.client.host if request.client else None),
        client_uuid=uuid,
        files_url=boot.files_url_for(str(request.base_url)),
        server_url=boot.api_url_for(request.url.hostname),
    )
    try:
        return _script(await handlers.script_requested(asked, boot=boot))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("boot script for %s: PostgreSQL unavailable (%r); it will ask again", mac, exc)
        return _script(later(mac, kind.value, uuid, "the boot server's database is unavailable"))


def _script(text: str) -> PlainTextResponse:
    return PlainTextResponse(text, headers={"Cache-Control": "no-store"})


@router.get("/boot/{mac}/explain", dependencies=ServiceOnly)
async def explain(request: Request, mac: str) -> dict[str, object]:
    """What this MAC would boot now and why -- no side effects, nothing recorded."""
    boot, mac = _boot(request), _mac(mac)
    decision = await handlers.decision_for(mac, boot=boot)
    settings = boot.state.current
    return {
        "mac": mac,
        "dhcp_mode": settings.mode.value,
        "machine_id": str(decision.machine.machine_id) if decision.machine else None,
        "machine": decision.machine.name if decision.machine else None,
        "action": decision.action.value,
        "reason": decision.reason,
        "execution_id": str(decision.execution_id) if decision.execution_id else None,
        "kernel": settings.deploy_kernel if decision.action is Action.DEPLOY else None,
        "missing": decision.missing.relative if decision.missing else None,  # WAIT: the deploy file not there
    }


@router.get("/boot/recent", dependencies=ServiceOnly)
async def recent(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50, mac: str | None = None
) -> list[dict[str, object]]:
    return await _boot(request).recorder.recent(limit, _mac(mac) if mac else None)


@router.get("/dhcp/leases", dependencies=ServiceOnly)
async def leases(request: Request) -> list[dict[str, object]]:
    return await _boot(request).leases.leases()


@router.get("/files/{path:path}")
async def files(request: Request, path: str) -> FileResponse:
    """A boot file from the root, with Range support (FileResponse answers 206 to a Range request)."""
    boot = _boot(request)
    try:
        real = resolve(boot.root, path)
    except Refused as exc:  # 404 whatever the reason: the boot network learns nothing about the root
        raise E.BOOT_FILE_REFUSED(path=path[:100], reason=str(exc)[:200]) from None
    return FileResponse(real)


def _ipv4(text: str | None) -> str | None:
    """The client's IPv4 address (an IPv4-mapped IPv6 one unwrapped), else None."""
    if not text:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address) if isinstance(address, IPv4Address) else None
