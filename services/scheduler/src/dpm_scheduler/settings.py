"""Settings of the scheduler service (DPM_* shared, DPM_SCHEDULER_* its own)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class SchedulerSettings(ServiceSettings):
    scheduler_port: int = ports.SCHEDULER_HTTP
    scheduler_wol_port: int = Field(
        default=ports.WAKE_ON_LAN, description="UDP port of magic packets (5561; 9 also common)"
    )
    scheduler_wol_interface: str | None = Field(
        default=None, description="Interface for 255.255.255.255 (the server's own segment); default: routing decides"
    )
    scheduler_power_on_timeout: float = Field(
        default=600.0, gt=0, description="Seconds a machine has to come online or network-boot after a power-on"
    )
    scheduler_power_on_interval: float = Field(
        default=1.0, ge=0, description="Seconds between consecutive power-ons, so a room does not start at once"
    )
    scheduler_wol_repeats: int = Field(default=3, ge=1, le=10, description="Magic packets per NIC per power-on")
    scheduler_concurrency: int = Field(
        default=5,
        ge=1,
        le=100_000,
        description="Executions running at once, server-wide (the concurrent execution limit)",
    )
    scheduler_no_response_timeout: float = Field(
        default=1800.0, gt=0, description="Seconds without a step report before an execution fails (DPM-E145)"
    )
    scheduler_tick: float = Field(default=0.5, gt=0, le=10, description="Seconds between execution-engine rounds")
    scheduler_suspend_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a running step has to confirm an interrupt before it is left unconfirmed",
    )
    scheduler_test_crash_point: Literal["", "before-wake"] = Field(
        default="",
        description="TEST ONLY, never set in production: 'before-wake' SIGKILLs the scheduler after a wake-up"
        " committed, before its magic packet (the fault tests of issue 21); empty (off) by default",
    )
