"""pxe's HTTP side: the per-machine iPXE script, what a MAC would boot and why, recent boots, the
full-mode leases, and the boot files themselves (with Range, for kernels and images).

The script and the files face the boot network and carry no authentication (a booting machine has
nothing to show). What a MAC would boot, recent boots and leases say which machine has pending work, so
they answer only the api, which presents DPM_PXE_SERVICE_TOKEN and checks the operator's role.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse
from psycopg_pool import AsyncConnectionPool

from dpm_pxe.dhcp.leases import LeaseStore
from dpm_pxe.recorder import BootRecorder, find_machine
from dpm_pxe.script import Action, Decision, arch_of, decide, media, render
from dpm_pxe.sightings import Sightings
from dpm_pxe.state import BootState, netboot_lag, pending_netboot
from dpm_pxe.tftp.files import Refused, resolve
from dpm_pxe.tokens import DeployTokens
from dpm_runtime.eventlog import Conn
from dpm_schemas import E
from dpm_schemas.events.boot import BootStage
from dpm_schemas.ids import normalize_mac

router = APIRouter()
LAG_WAIT = 3.0  # seconds a "boot locally" answer may wait for pxe to catch up with the log


@dataclass
class Boot:
    """What the routes need, built by the bootstrap once the runtime is connected."""

    pool: AsyncConnectionPool[Conn]
    state: BootState
    recorder: BootRecorder
    leases: LeaseStore
    root: Path
    http_url: str | None  # DPM_PXE_HTTP_URL; else the address each machine reached us at
    api_url: str | None  # DPM_PXE_API_URL; else that address's host with api_port
    api_port: int
    tokens: DeployTokens
    sightings: Sightings  # where pxe saw each MAC boot: who may get its deploy token
    service_token: str | None  # DPM_PXE_SERVICE_TOKEN: what the api presents for the operator routes

    def files_url_for(self, request: Request) -> str:
        return f"{self.http_url or str(request.base_url).rstrip('/')}/files"

    def api_url_for(self, request: Request) -> str:
        """What the deploy environment calls: the host it fetched its script from runs the api too,
        unless DPM_PXE_API_URL says otherwise (so a settings change of the server IP needs no restart)."""
        return self.api_url or f"http://{request.url.hostname}:{self.api_port}"


def _boot(request: Request) -> Boot:
    boot: Boot | None = getattr(request.app.state, "boot", None)
    if boot is None:
        raise HTTPException(503, "pxe is starting")
    return boot


def _service(request: Request) -> None:
    """Only the api (DPM_PXE_SERVICE_TOKEN) may ask what a MAC would boot, recent boots and leases."""
    expected = _boot(request).service_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise E.PXE_SERVICE_ONLY()


ServiceOnly = [Depends(_service)]


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


async def _decision(boot: Boot, mac: str) -> Decision:
    """What this MAC boots now. "Locally" is only answered once this service has applied every
    netboot request in the log: the scheduler wakes a machine right after requesting its netboot,
    and a fast machine must not boot its disk because pxe's consumer was a few milliseconds behind."""
    deadline = time.monotonic() + LAG_WAIT
    while True:
        async with boot.pool.connection() as conn:
            machine = await find_machine(conn, mac)
            pending = await pending_netboot(conn, machine.machine_id) if machine else None
            decision = decide(machine, pending, datetime.now(UTC))
            if decision.action is not Action.LOCAL or machine is None or time.monotonic() > deadline:
                return decision
            if not await netboot_lag(conn):
                return decision
        await asyncio.sleep(0.05)


@router.get("/boot/media.ipxe", response_class=PlainTextResponse)
async def media_script(request: Request) -> PlainTextResponse:
    """The script to embed in boot media (iPXE ``make ... EMBED=``) for networks where dpm answers no DHCP."""
    boot = _boot(request)
    return PlainTextResponse(media(boot.files_url_for(request).removesuffix("/files")))


@router.get("/boot/{mac}.ipxe", response_class=PlainTextResponse)
async def script(request: Request, mac: str, arch: str = "unknown", uuid: UUID | None = None) -> PlainTextResponse:
    """The script iPXE runs: deploy environment for pending work, else the local disk (and discovery)."""
    boot, mac = _boot(request), _mac(mac)
    decision = await _decision(boot, mac)
    ip = _ipv4(request.client.host if request.client else None)
    decision, token = await _granted(boot, mac, decision, ip)
    await boot.recorder.booted(
        mac=mac, arch=arch_of(arch), stage=BootStage.IPXE, client_ip=ip, client_uuid=uuid, decision=decision.reason
    )
    text = render(
        decision,
        settings=boot.state.current,
        files_url=boot.files_url_for(request),
        server_url=boot.api_url_for(request),
        token=token,
    )
    return PlainTextResponse(text, headers={"Cache-Control": "no-store"})


async def _granted(boot: Boot, mac: str, decision: Decision, ip: str | None) -> tuple[Decision, str | None]:
    """The deploy environment and its token, only for a client at an address pxe saw this MAC boot from
    (``sightings``) and only one per execution (``tokens``); anybody else gets the local disk."""
    if decision.action is not Action.DEPLOY or decision.machine is None or decision.execution_id is None:
        return decision, None
    if refused := await boot.sightings.refusal(mac, ip):
        return replace(decision, action=Action.LOCAL, reason=refused), None
    grant = await boot.tokens.grant(mac, decision.machine.machine_id, decision.execution_id, ip)
    if grant.token is None:  # another client won this execution's token: this one boots its disk
        return replace(decision, action=Action.LOCAL, reason=grant.refused), None
    return decision, grant.token


@router.get("/boot/{mac}/explain", dependencies=ServiceOnly)
async def explain(request: Request, mac: str) -> dict[str, object]:
    """What this MAC would boot now and why -- no side effects, nothing recorded."""
    boot, mac = _boot(request), _mac(mac)
    decision = await _decision(boot, mac)
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
