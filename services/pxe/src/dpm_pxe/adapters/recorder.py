"""Appends what pxe saw: MachineBooted for every network boot (the scheduler's proof that a woken
machine came up, DPM-E112 otherwise), MachineDiscovered for a MAC no machine has (the api registers it
into new-machines), DeployBootUnavailable for pending work whose deploy environment is missing (the
scheduler fails its execution with that code, once per window while the machine keeps asking). A ROM
repeats its DISCOVER several times, so one (MAC, stage, netboot request) is recorded once per window;
unknown MACs are recorded only within the discovery limiter's bounds (``throttle``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.adapters.readmodel import find_machine, pending_netboot
from dpm_pxe.adapters.state import SCHEMA
from dpm_pxe.domain.deployenv import unavailable
from dpm_pxe.domain.script import Decision, Machine
from dpm_pxe.domain.throttle import DiscoveryLimiter, Repeats
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import MachineBooted, MachineDiscovered
from dpm_schemas.events.boot import Arch, BootStage
from dpm_schemas.ids import stream_id

ACTOR = "pxe"
log = logging.getLogger(__name__)


class BootRecorder:
    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        eventlog: EventLog,
        *,
        window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        limiter: DiscoveryLimiter | None = None,
    ) -> None:
        self._pool = pool
        self._log = eventlog
        self._repeats = Repeats(window, clock)
        self.limiter = limiter or DiscoveryLimiter(clock=clock)

    async def booted(
        self,
        *,
        mac: str,
        arch: Arch,
        stage: BootStage,
        client_ip: IPv4Address | str | None,
        client_uuid: uuid.UUID | None = None,
        decision: str = "",
    ) -> Machine | None:
        """Record one boot; returns the machine the MAC belongs to (None: just discovered)."""
        async with self._pool.connection() as conn:
            machine = await find_machine(conn, mac)
            key = await self._boot_key(conn, mac, stage, machine)
            if not self._repeats.fresh(key):
                return machine
            if machine is None and not self.limiter.allow(str(client_ip) if client_ip else None):
                self._repeats.forget(key)  # not recorded: its next boot is tried again
                return None
            meta = Metadata.new(actor=ACTOR)
            events = []
            if machine is None:
                events.append(NewEvent(MachineDiscovered(mac=mac, arch=arch, client_uuid=client_uuid), meta))
            ip = str(client_ip) if client_ip else None
            events.append(NewEvent(MachineBooted(mac=mac, arch=arch, client_ip=ip, stage=stage), meta))
            async with conn.transaction():
                await self._log.append(stream_id(subjects.BOOT, mac), ANY_VERSION, events, conn=conn)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.recent_boots (mac, arch, client_ip, stage, machine_id, decision)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (mac, arch.value, ip, stage.value, machine.machine_id if machine else None, decision[:500]),
                )
                await conn.execute(  # keep the table small: the log holds the full history
                    f"DELETE FROM {SCHEMA}.recent_boots WHERE id < (SELECT max(id) - 10000 FROM {SCHEMA}.recent_boots)"
                )
        return machine

    async def deploy_unavailable(self, mac: str, decision: Decision, *, root: str) -> None:
        """Record that ``decision``'s deploy environment is missing (``decision.missing``) -- once per
        execution and netboot request within the window, as its machine asks again every few seconds."""
        if decision.missing is None or decision.machine is None or decision.execution_id is None:
            return
        if not self._repeats.fresh(("deploy-unavailable", decision.execution_id, decision.request)):
            return
        event = unavailable(
            decision.missing,
            root=root,
            machine=decision.machine.name,
            machine_id=decision.machine.machine_id,
            execution_id=decision.execution_id,
            mac=mac,
        )
        log.warning("%s: %s", event.code, event.reason)  # the operator's console: what to do is in the code
        try:
            async with self._pool.connection() as conn, conn.transaction():
                meta = Metadata.new(actor=ACTOR)
                await self._log.append(stream_id(subjects.BOOT, mac), ANY_VERSION, [NewEvent(event, meta)], conn=conn)
        except BaseException:
            self._repeats.forget(("deploy-unavailable", decision.execution_id, decision.request))  # tried again
            raise

    @staticmethod
    async def _boot_key(conn: Conn, mac: str, stage: BootStage, machine: Machine | None) -> tuple[object, ...]:
        """What makes a sighting the same boot: one (MAC, stage) under the same netboot request. A
        machine that netboots again within the window for a new execution (or boots its disk once its
        work is done) is a new boot: the scheduler waits for it."""
        pending = await pending_netboot(conn, machine.machine_id) if machine is not None else None
        return (mac, stage, pending.position if pending is not None else None)

    async def recent(self, limit: int, mac: str | None = None) -> list[dict[str, object]]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT at, mac, arch, client_ip, stage, machine_id, decision FROM {SCHEMA}.recent_boots"
                    " WHERE %s::text IS NULL OR mac = %s ORDER BY id DESC LIMIT %s",
                    (mac, mac, limit),
                )
            ).fetchall()
        keys = ("at", "mac", "arch", "client_ip", "stage", "machine_id", "decision")
        return [
            {
                k: (v.isoformat() if k == "at" else str(v) if k == "machine_id" and v else v)
                for k, v in zip(keys, r, strict=True)
            }
            for r in rows
        ]
