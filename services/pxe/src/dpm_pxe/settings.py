"""Settings of the pxe service (DPM_* shared, DPM_PXE_PORT its own)."""

from __future__ import annotations

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class PxeSettings(ServiceSettings):
    pxe_port: int = ports.PXE_HTTP
