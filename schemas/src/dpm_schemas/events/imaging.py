"""Image stream (written by imager), and the transient transfer progress signal."""

from __future__ import annotations

import uuid

from pydantic import Field

from dpm_schemas.base import Event


class ImageCaptured(Event):
    wire_name = "ImageCaptured"

    image_id: uuid.UUID
    machine_id: uuid.UUID
    size_bytes: int = Field(ge=0)
    chunk_count: int = Field(ge=0)
    digest: str  # sha256 of the whole image, hex


class ChunkSent(Event):
    """Transfer progress: NATS only (DESIGN.md §3, transient signals)."""

    wire_name = "ChunkSent"
    transient = True

    transfer_id: uuid.UUID
    chunk_index: int = Field(ge=0)
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    rate_bps: float = Field(ge=0)
