"""Settings of the updater service (DPM_* shared, DPM_UPDATER_* its own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class UpdaterSettings(ServiceSettings):
    updater_port: int = ports.UPDATER_HTTP
    updater_root: Path = Field(
        default=Path("/srv/dpm/packages"),
        description="The package content store: sha256/<aa>/<hex> once per content, uploads/ while arriving",
    )
