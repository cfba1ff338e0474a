"""Runs effects (after the commit): Wake-on-LAN through the one pacing gate, agent reboots and
shutdowns over NATS. Returns the failure as (code, message) instead of raising."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import Conn
from dpm_scheduler.adapters.agent import agent_action
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.driver import PowerDriver
from dpm_scheduler.adapters.wol import Spacing
from dpm_scheduler.domain.effects import Effect, Reboot, SchedulePower, Shutdown, Wake
from dpm_schemas import E
from dpm_schemas.agent_protocol import Action
from dpm_schemas.events.schedules import ScheduleAction

Failure = tuple[str, str]


@dataclass
class EffectRunner:
    pool: AsyncConnectionPool[Conn]
    directory: Directory
    driver: PowerDriver
    spacing: Spacing  # the one power-on pacing gate: operator, scenario and schedule wakes alike
    nc: NATS

    async def run(self, effect: Effect) -> Failure | None:
        if isinstance(effect, Wake):
            return await self.wake(effect.machine_id)
        if isinstance(effect, Reboot):
            return await agent_action(self.nc, effect.machine_id, Action.REBOOT, timeout=30)
        if isinstance(effect, Shutdown):
            return await agent_action(self.nc, effect.machine_id, Action.SHUTDOWN, timeout=5)
        raise TypeError(f"not a single-machine effect: {effect!r}")

    async def wake(self, machine_id: uuid.UUID) -> Failure | None:
        async with self.pool.connection() as conn:
            target = await self.directory.power_target(conn, machine_id)
        if target is None:
            err = E.MACHINE_NOT_FOUND(machine_id=machine_id)
            return err.code, err.message
        await self.spacing.wait()
        await self.driver.power_on(target)
        return None

    async def schedule_power(self, effect: SchedulePower) -> list[tuple[uuid.UUID, str]]:
        """Power each machine on (Wake-on-LAN) or off (the agent, 30 s each); the failures' codes."""
        failures: list[tuple[uuid.UUID, str]] = []
        for machine_id in effect.machine_ids:
            if effect.action is ScheduleAction.POWER_ON:
                failure = await self.wake(machine_id)
            else:
                failure = await agent_action(self.nc, machine_id, Action.SHUTDOWN, timeout=30)
            if failure is not None:
                failures.append((machine_id, failure[0]))
        return failures
