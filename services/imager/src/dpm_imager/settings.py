"""Settings of the imager service (DPM_* shared, DPM_IMAGER_PORT its own)."""

from __future__ import annotations

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class ImagerSettings(ServiceSettings):
    imager_port: int = ports.IMAGER_HTTP
