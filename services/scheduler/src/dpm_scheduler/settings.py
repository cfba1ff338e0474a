"""Settings of the scheduler service (DPM_* shared, DPM_SCHEDULER_PORT its own)."""

from __future__ import annotations

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class SchedulerSettings(ServiceSettings):
    scheduler_port: int = ports.SCHEDULER_HTTP
