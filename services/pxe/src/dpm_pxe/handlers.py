"""pxe's command handlers: what the routes and the DHCP listener call when a machine boots.

pxe reacts to no event of the log (what it keeps of them are projections), so these are the handlers
of what the boot network asks, message first, with their dependencies in ``Boot`` (built in
bootstrap.py):

- ``script_requested``: a machine's iPXE asks for its script -> decide what it boots, hand out the
  deploy environment's token only to the client pxe saw boot (once per request), record the boot
  (MachineBooted, and MachineDiscovered for an unknown MAC), render the script; a deploy environment
  missing from the boot root is recorded instead (DeployBootUnavailable) and the machine asks again;
- ``decision_for``: what a MAC boots now (also what ``/boot/<mac>/explain`` answers, with no effect);
- ``rom_booted``: the DHCP listener answered a PXE ROM -> MachineBooted at the ROM stage.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.readmodel import find_machine, netboot_lag, pending_netboot
from dpm_pxe.adapters.recorder import BootRecorder
from dpm_pxe.adapters.sightings import Sightings
from dpm_pxe.adapters.tftp.files import size
from dpm_pxe.adapters.tokens import DeployTokens
from dpm_pxe.domain.bootstate import BootState
from dpm_pxe.domain.deployenv import missing
from dpm_pxe.domain.script import Action, Decision, decide, later, render, withheld
from dpm_runtime.eventlog import Conn
from dpm_schemas.events.boot import Arch, BootStage

LAG_WAIT = 3.0  # seconds a "boot locally" answer may wait for pxe to catch up with the log
WAIT_SECONDS = 5  # a machine whose deploy environment is missing asks again after this long


@dataclass
class Boot:
    """What the handlers and routes need, built by the bootstrap once the runtime is connected."""

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

    def files_url_for(self, base_url: str) -> str:
        """Where the boot files are, for a machine that reached pxe at ``base_url``."""
        return f"{self.http_url or base_url.rstrip('/')}/files"

    def api_url_for(self, host: str | None) -> str:
        """What the deploy environment calls: the host it fetched its script from runs the api too,
        unless DPM_PXE_API_URL says otherwise (so a settings change of the server IP needs no restart)."""
        return self.api_url or f"http://{host}:{self.api_port}"


@dataclass(frozen=True)
class ScriptRequested:
    """A machine's iPXE asked for ``/boot/<mac>.ipxe``; the URLs are those it reached pxe by."""

    mac: str  # normalised
    arch: Arch
    client_ip: str | None  # IPv4 only: what a token can be bound to
    client_uuid: UUID | None
    files_url: str
    server_url: str


async def script_requested(m: ScriptRequested, *, boot: Boot) -> str:
    """The script iPXE runs: the deploy environment for pending work, else the local disk (and discovery)."""
    decision = await decision_for(m.mac, boot=boot)
    decision, token = await _granted(boot, m.mac, decision, m.client_ip)
    if decision.missing is not None:
        await boot.recorder.deploy_unavailable(m.mac, decision, root=str(boot.root))
    await boot.recorder.booted(
        mac=m.mac,
        arch=m.arch,
        stage=BootStage.IPXE,
        client_ip=m.client_ip,
        client_uuid=m.client_uuid,
        decision=decision.reason,
    )
    if decision.action is Action.WAIT:  # not the local disk: the execution is still pending
        return later(m.mac, m.arch.value, m.client_uuid, decision.reason, seconds=WAIT_SECONDS)
    return render(decision, settings=boot.state.current, files_url=m.files_url, server_url=m.server_url, token=token)


async def decision_for(mac: str, *, boot: Boot) -> Decision:
    """What this MAC boots now: the deploy environment only if its files are in the boot root."""
    decision = await _decided(mac, boot=boot)
    if decision.action is not Action.DEPLOY:
        return decision
    return withheld(decision, missing(boot.state.current, lambda path: size(boot.root, path)))


async def _decided(mac: str, *, boot: Boot) -> Decision:
    """What the log says this MAC boots. "Locally" is only answered once this service has applied every
    netboot request in the log: the scheduler wakes a machine right after requesting its netboot,
    and a fast machine must not boot its disk because pxe's projection was a few milliseconds behind."""
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


async def _granted(boot: Boot, mac: str, decision: Decision, ip: str | None) -> tuple[Decision, str | None]:
    """The deploy environment and its token, only for a client at an address pxe saw this MAC boot from
    (``sightings``) and only one per execution (``tokens``); anybody else gets the local disk. A
    missing deploy environment (WAIT) is likewise only that client's to report."""
    if decision.action not in (Action.DEPLOY, Action.WAIT) or decision.machine is None or not decision.execution_id:
        return decision, None
    if refused := await boot.sightings.refusal(mac, ip):
        return replace(decision, action=Action.LOCAL, reason=refused, missing=None), None
    if decision.action is Action.WAIT:
        return decision, None
    grant = await boot.tokens.grant(
        mac, decision.machine.machine_id, decision.execution_id, ip, request=decision.request
    )
    if grant.token is None:  # another client won this execution's token: this one boots its disk
        return replace(decision, action=Action.LOCAL, reason=grant.refused), None
    return decision, grant.token


async def rom_booted(info: ClientInfo, client_ip: IPv4Address | None, *, recorder: BootRecorder) -> None:
    """The DHCP listener gave a PXE ROM its boot information: the machine is network-booting."""
    await recorder.booted(
        mac=info.mac, arch=info.arch, stage=BootStage.ROM, client_ip=client_ip, client_uuid=info.client_uuid
    )
