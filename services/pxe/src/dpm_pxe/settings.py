"""Settings of the pxe service (DPM_* shared, DPM_PXE_* its own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class PxeSettings(ServiceSettings):
    pxe_port: int = ports.PXE_HTTP
    pxe_tftp_enabled: bool = True
    pxe_tftp_host: str = Field(default="0.0.0.0", description="Address TFTP listens on (the boot network)")
    pxe_tftp_port: int = Field(default=ports.TFTP, description="UDP port of TFTP (69; binding it needs root)")
    pxe_tftp_root: Path = Field(default=Path("/srv/dpm/tftp"), description="Boot files served over TFTP")
    pxe_tftp_max_blksize: int = Field(default=1468, ge=512, le=65464)
    pxe_tftp_max_window: int = Field(default=64, ge=1, le=65535)
