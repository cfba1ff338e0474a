"""Network boot for operators: the boot settings (DHCP mode, server IP, full-mode ranges, deploy
environment), what a MAC would boot and why, recent boots and the DHCP leases. The last three are
answered by the pxe service -- the one that decides -- and passed through here with authentication:
pxe answers them only to the api's service credential (DPM_API_PXE_TOKEN), never to the boot network."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, ValidationError

from dpm_api import boot
from dpm_api.deps import AdminDep, RuntimeDep, ViewerDep
from dpm_schemas import E
from dpm_schemas.events import BootSettingsChanged
from dpm_schemas.events.boot import DhcpMode, DhcpRange
from dpm_schemas.ids import normalize_mac

router = APIRouter(tags=["boot"])


class RangeIn(BaseModel):
    start: IPv4Address
    end: IPv4Address
    subnet: str = Field(max_length=18, description="CIDR, e.g. 10.0.0.0/24 (host bits allowed: 10.0.0.1/24)")
    router: IPv4Address | None = None
    dns: list[IPv4Address] = Field(default_factory=list, max_length=8)
    lease_seconds: int = Field(default=3600, ge=60, le=7 * 86400)


class BootSettingsIn(BaseModel):
    mode: DhcpMode = Field(description="proxy: boot info only; full: addresses too; off: no DHCP answers")
    server_ip: IPv4Address | None = Field(default=None, description="our address on the boot network")
    ranges: list[RangeIn] = Field(default_factory=list, max_length=64)
    deploy_kernel: str = Field(default="deploy/vmlinuz", max_length=300, pattern=r"^[A-Za-z0-9._/-]+$")
    deploy_initrd: str = Field(default="deploy/initrd.img", max_length=300, pattern=r"^[A-Za-z0-9._/-]+$")
    deploy_cmdline: str = Field(default="console=ttyS0 quiet", max_length=2000, pattern=r"^[^\r\n]*$")
    force: bool = Field(default=False, description="change the mode even while machines wait to network-boot")


def network(text: str) -> str:
    try:
        return str(IPv4Network(text, strict=False))
    except ValueError as exc:
        raise E.BOOT_SETTINGS_INVALID(reason=f"subnet {text!r}: {exc}") from None


def settings_out(event: BootSettingsChanged | None, version: int) -> dict[str, Any]:
    body = (event or BootSettingsChanged(mode=DhcpMode.OFF)).model_dump(mode="json")
    return {**body, "version": version, "saved": event is not None}


@router.get("/boot/settings")
async def get_settings(rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    """The boot settings in force (mode off until an administrator saves them)."""
    async with rt.pool.connection() as conn:
        event, version = await boot.current_settings(rt.eventlog, conn)
    return settings_out(event, version)


@router.put("/boot/settings")
async def put_settings(body: BootSettingsIn, rt: RuntimeDep, actor: AdminDep) -> dict[str, Any]:
    """Replace the boot settings; pxe applies them to the next packet, without a restart."""
    try:
        event = BootSettingsChanged(
            mode=body.mode,
            server_ip=str(body.server_ip) if body.server_ip else None,
            ranges=tuple(
                DhcpRange(
                    start=str(r.start),
                    end=str(r.end),
                    subnet=network(r.subnet),
                    router=str(r.router) if r.router else None,
                    dns=tuple(str(d) for d in r.dns),
                    lease_seconds=r.lease_seconds,
                )
                for r in body.ranges
            ),
            deploy_kernel=body.deploy_kernel,
            deploy_initrd=body.deploy_initrd,
            deploy_cmdline=body.deploy_cmdline,
        )
    except ValidationError as exc:
        raise E.BOOT_SETTINGS_INVALID(reason=str(exc.errors()[0].get("msg", "invalid"))) from None
    async with rt.pool.connection() as conn, conn.transaction():
        result = await boot.change_settings(rt.eventlog, conn, event, actor=actor, force=body.force)
    return settings_out(event, result.stream_version)


async def _pxe(request: Request, path: str, params: dict[str, Any] | None = None) -> Any:
    url = request.app.state.pxe_url.rstrip("/")
    secret: str | None = getattr(request.app.state, "pxe_token", None)  # DPM_API_PXE_TOKEN
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
            answer = await http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise E.PXE_UNAVAILABLE(url=url, reason=str(exc) or type(exc).__name__) from None
    if answer.status_code != 200:
        raise E.PXE_UNAVAILABLE(url=url, reason=f"HTTP {answer.status_code}: {answer.text[:200]}")
    return answer.json()


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError:
        raise E.INVALID_MAC(value=text) from None


@router.get("/boot/machines/{mac}")
async def explain(mac: str, request: Request, _who: ViewerDep) -> Any:
    """What this MAC would boot if it network-booted now, and why."""
    return await _pxe(request, f"/boot/{_mac(mac)}/explain")


@router.get("/boot/recent")
async def recent(
    request: Request, _who: ViewerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50, mac: str | None = None
) -> Any:
    """The latest network boots (newest first), optionally of one MAC."""
    params: dict[str, Any] = {"limit": limit}
    if mac:
        params["mac"] = _mac(mac)
    return await _pxe(request, "/boot/recent", params)


@router.get("/dhcp/leases")
async def leases(request: Request, _who: ViewerDep) -> Any:
    """Addresses handed out in full mode (offered, bound, declined)."""
    return await _pxe(request, "/dhcp/leases")
