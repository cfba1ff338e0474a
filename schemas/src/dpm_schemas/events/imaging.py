"""Disk images. The api decides who may move an image (``catalog-<image>``: TransferOpened,
ImageDeleted); the imager records what happened to it (``image-<image>``: ImageCaptured -- the
atomic commit of a backup --, TransferAborted, ImageVerified). The api also keeps the machines' disk
layouts as deploy environments report them (``disks-<machine>``: DiskLayoutReported). Transfer
progress is a transient signal (ChunkSent).

The image id is derived from the name (``image_id(name)``), so every service finds an image's
streams without a lookup, and two backups racing to open the same name meet on one stream.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from dpm_schemas.base import Event
from dpm_schemas.ids import NAMESPACE
from dpm_schemas.text import JsonText, Label, LongText, Text


def image_id(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"image:{name}")


class TransferDirection(StrEnum):
    BACKUP = "backup"  # chunks and a manifest go to the store
    RESTORE = "restore"  # the current manifest and its chunks come from it
    VERIFY = "verify"  # the imager re-reads the image's chunks


ImageName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class TransferOpened(Event):
    """Someone may move this image until ``expires_at`` with the token whose SHA-256 this is."""

    wire_name = "TransferOpened"

    transfer_id: uuid.UUID
    image_id: uuid.UUID
    image: ImageName
    direction: TransferDirection
    token_sha256: Hex64
    expires_at: datetime
    machine_id: uuid.UUID | None = None
    execution_id: uuid.UUID | None = None
    # Idle expiry: each use of the token moves ``expires_at`` to now + this (TransferRenewed); None
    # (events before issue 12): ``expires_at`` is fixed.
    renew_seconds: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] | None = None


class TransferRenewed(Event):
    """The imager saw the transfer's token in use: it is now valid until ``expires_at`` (logged at
    most every quarter of its idle time, so a replica, a restarted imager and the api's name lock
    agree on it)."""

    wire_name = "TransferRenewed"

    transfer_id: uuid.UUID
    image_id: uuid.UUID
    image: ImageName
    expires_at: datetime


class ImageDeleted(Event):
    wire_name = "ImageDeleted"

    image_id: uuid.UUID
    image: ImageName


class ImageCaptured(Event):
    """A backup committed: the image is now this manifest (the previous one is replaced only here)."""

    wire_name = "ImageCaptured"

    image_id: uuid.UUID
    image: ImageName
    transfer_id: uuid.UUID
    manifest: Hex64  # BLAKE3 id of the manifest blob in the chunk store
    source: Label  # disk | partition
    mode: Label  # full | used
    size_bytes: int = Field(ge=0)  # of the source disk or partition
    captured_bytes: int = Field(ge=0)  # what a restore writes
    stored_bytes: int = Field(ge=0)  # compressed bytes this backup added to the store (dedup: often ~0)
    chunk_count: int = Field(ge=0)
    sector_size: int = Field(ge=512)
    label: Label | None = None  # dos | gpt | None
    digest: Hex64  # BLAKE3 of the captured byte stream
    machine_id: uuid.UUID | None = None
    execution_id: uuid.UUID | None = None


class TransferAborted(Event):
    wire_name = "TransferAborted"

    transfer_id: uuid.UUID
    image_id: uuid.UUID
    image: ImageName
    reason: Annotated[LongText, Field(max_length=1000)]


class ImageVerified(Event):
    wire_name = "ImageVerified"

    image_id: uuid.UUID
    image: ImageName
    manifest: Hex64
    chunk_count: int = Field(ge=0)
    corrupt: tuple[Hex64, ...] = ()  # ids of chunks that are missing or do not match their digest

    @property
    def ok(self) -> bool:
        return not self.corrupt


# The chunk store as a whole: ``catalog-<STORE_ID>`` (the api: an operator asked for a collection),
# ``image-<STORE_ID>`` (the imager: what that collection removed).
STORE_ID = uuid.uuid5(NAMESPACE, "image-store")


class StoreCollectRequested(Event):
    """An operator's ``dpm images gc``: collect the chunk store now, not at the next timer."""

    wire_name = "StoreCollectRequested"

    request_id: uuid.UUID


class StoreCollected(Event):
    """What the imager's collection for ``request_id`` removed (one is appended per request)."""

    wire_name = "StoreCollected"

    request_id: uuid.UUID
    chunks: int = Field(ge=0)
    bytes: int = Field(ge=0)
    manifests: int = Field(ge=0)
    temporary: int = Field(ge=0)


class StoreSpaceReported(Event):
    """The chunk store's room as the imager measured it (at start, then whenever it changed much or
    an hour passed): what a backup may still take -- free space less the reserve, negative when under
    it -- and the factor a backup's start demands of its planned bytes. The api refuses a backup
    that cannot fit before any machine is woken (``dpm_api.domain.prewake``)."""

    wire_name = "StoreSpaceReported"

    free_bytes: int
    free_factor: float = Field(ge=0)  # 0: the imager checks nothing


class DiskLayoutReported(Event):
    """A disk configuration check's result: the machine's disks as the deploy client read them
    (JSON of dpm_agent.deploy.layout.DiskLayout, one per disk), shown by the disk viewer."""

    wire_name = "DiskLayoutReported"

    machine_id: uuid.UUID
    execution_id: uuid.UUID | None = None
    disks_json: JsonText


class ChunkSent(Event):
    """Transfer progress: NATS only (DESIGN.md §3, transient signals), at most about once a second
    per transfer."""

    wire_name = "ChunkSent"
    transient = True

    transfer_id: uuid.UUID
    chunk_index: int = Field(ge=0)
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    rate_bps: float = Field(ge=0)
    eta_seconds: float | None = None
    execution_id: uuid.UUID | None = None
    image: Annotated[Text, Field(max_length=200)] = ""
    direction: Label = ""


class DeployLogUploaded(Event):
    """A deploy environment uploaded its logs after its step (console, kernel messages, the deploy
    client's log): the fact only -- the bundle itself is bulky and lives in the api's
    ``api.deploy_logs`` (the latest per machine; the next run's upload replaces it)."""

    wire_name = "DeployLogUploaded"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    size: int = Field(ge=0)
    sha256: Hex64
