"""Settings of the updater service (DPM_* shared, DPM_UPDATER_PORT its own)."""

from __future__ import annotations

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class UpdaterSettings(ServiceSettings):
    updater_port: int = ports.UPDATER_HTTP
