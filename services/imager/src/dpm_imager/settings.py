"""Settings of the imager service (DPM_* shared, DPM_IMAGER_* its own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class ImagerSettings(ServiceSettings):
    imager_port: int = ports.IMAGER_HTTP
    imager_root: Path = Field(
        default=Path("/srv/dpm/images"), description="The chunk store: chunks/ and manifests/ (content-addressed)"
    )
    imager_reserve_bytes: int = Field(
        default=1 << 30, ge=0, description="Free space a backup never takes: below it uploads are refused (DPM-E159)"
    )
    imager_free_factor: float = Field(
        default=1.0,
        ge=0,
        description="Before a backup, free space must hold its planned bytes times this (the original demanded "
        "room for the whole image; dedup and compression usually need far less; 0 turns the check off)",
    )
    imager_space_interval: float = Field(
        default=60,
        gt=0,
        description="Seconds between measurements of the store's free space; one is reported to the api (for the "
        "checks before waking a backup) when it moved by 1 % or 64 MiB, or an hour after the last",
    )
    imager_gc_grace: float = Field(
        default=3600,
        ge=0,
        description="Seconds a chunk no image or open backup names is kept (an upload whose voucher is still being "
        "written); an aborted backup's chunks go at once",
    )
    imager_gc_interval: float = Field(default=3600, gt=0, description="Seconds between garbage collections")
    imager_progress_interval: float = Field(default=1.0, gt=0, description="Seconds between ChunkSent signals")
