"""Software packages (issue 14). The api decides what a package is and who may upload content
(``package-<id>``: PackageRegistered with a server-assigned revision, PackageRemoved;
``upload-<upload id>``: PackageUploadOpened); the updater records what reached its content store
(``content-<upload id>``: PackageContentStored once the bytes are complete and their SHA-256 is
checked, or PackageUploadAborted with the code that refused them). A remote-update step is
delivered by the updater (``delivery-<execution>``: PackageDeliveryGranted, then a
PackageInstallReported per package the agent reports on).

Content is addressed by its SHA-256 and stored once, however many packages or revisions name it; an
upload has no size limit (the client streams it, resuming after a cut at the offset the updater
reports). A revision names its content by hash, so an old revision stays installable while any
machine's history needs it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from dpm_schemas.base import Event
from dpm_schemas.ids import NAMESPACE
from dpm_schemas.packages import Package
from dpm_schemas.text import Label, LongText, Text

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PackageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")]
Size = Annotated[int, Field(ge=0)]
OUTPUT_TAIL_MAX = 65_536  # characters of an installer's output kept in a report


def package_stream_key(package_id: str) -> uuid.UUID:
    """The stream of one package id: every revision of it, in order (expected versions serialise them)."""
    return uuid.uuid5(NAMESPACE, f"package:{package_id}")


class PackageUploadOpened(Event):
    """Someone may upload content with the token whose SHA-256 this is, until ``expires_at`` (long
    enough for a large file over a slow link, resumed as often as needed)."""

    wire_name = "PackageUploadOpened"

    upload_id: uuid.UUID
    token_sha256: Hex64
    size: Size  # the total the client declared; the content is complete at exactly this many bytes
    sha256: Hex64 | None = None  # the digest the client expects, checked when complete
    file_name: Label = ""
    expires_at: datetime


class PackageContentStored(Event):
    """The upload is complete and its bytes are in the store under ``sha256`` (the updater's fact)."""

    wire_name = "PackageContentStored"

    upload_id: uuid.UUID
    sha256: Hex64
    size: Size


class PackageUploadAborted(Event):
    """The updater refused the upload (its digest differs from the declared one, or its token expired);
    nothing of it is kept."""

    wire_name = "PackageUploadAborted"

    upload_id: uuid.UUID
    code: Label
    reason: Text


class PackageRegistered(Event):
    """A revision of a package: its definition (``package.revision`` is the server's) and the content
    it installs. A new revision replaces the previous one for new deliveries."""

    wire_name = "PackageRegistered"

    package: Package
    content_sha256: Hex64 | None = None  # None: nothing to download (a command-only script package)
    content_size: Size = 0
    file_name: Label = ""


class PackageRemoved(Event):
    wire_name = "PackageRemoved"

    package_id: PackageId
    revision: Annotated[int, Field(ge=1)]


class PackageOutcome(BaseModel):
    """How one package of a delivery went on the machine (the agent's install result)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    package_id: PackageId
    revision: Annotated[int, Field(ge=1)]
    ok: bool
    code: Label | None = None  # the DPM code of a failure
    exit_code: int | None = None  # None: never started, or killed at the timeout
    message: LongText = ""  # the failure's catalogued message
    output_tail: Annotated[LongText, Field(max_length=OUTPUT_TAIL_MAX)] = ""  # control characters replaced
    reboot_required: bool = False
    seconds: Annotated[FiniteFloat, Field(ge=0)] = 0.0


class PackageDeliveryGranted(Event):
    """The updater is delivering these contents to the machine of a remote-update step
    (``delivery-<execution>``): the token whose SHA-256 this is may download them and report on the
    execution until it ends (or ``expires_at``, the step's scenario timeout)."""

    wire_name = "PackageDeliveryGranted"

    execution_id: uuid.UUID  # an auto-update's own delivery id (no execution runs it)
    machine_id: uuid.UUID
    token_sha256: Hex64
    packages: Annotated[tuple[PackageId, ...], Field(max_length=64)]
    contents: Annotated[tuple[Hex64, ...], Field(max_length=64)]
    expires_at: datetime
    # deferred: the queued install of a next-boot or at-time step, reported when it runs
    purpose: Literal["remote-update", "auto-update", "deferred"] = "remote-update"
    revisions: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(max_length=64)] = ()  # of ``packages``
    rollout_id: uuid.UUID | None = None  # an auto-update delivering one ring of a staged rollout


class FileTransferGranted(Event):
    """An operator's ``put_file`` of a large file (``command-<machine>``, the api's audit of commands):
    the token whose SHA-256 this is may download this one content from the updater until
    ``expires_at`` or the command's completion."""

    wire_name = "FileTransferGranted"

    command_id: uuid.UUID
    machine_id: uuid.UUID
    token_sha256: Hex64
    sha256: Hex64
    expires_at: datetime


class AutoUpdateEnded(Event):
    """An auto-update delivery is over (``delivery-<id>``): the agent's final report, or why the order
    never reached it. Its token ends with it."""

    wire_name = "AutoUpdateEnded"

    delivery_id: uuid.UUID
    machine_id: uuid.UUID
    ok: bool
    code: Label | None = None
    message: Annotated[LongText, Field(max_length=1000)] = ""


class AutoUpdateTimeSet(Event):
    """A machine's auto-update time (``machine-<id>``, the api's): high-urgency packages registered
    before its latest such time are pushed to it then, or when it next comes online. ``at`` None:
    no auto-update time (high urgency waits for notify-now or a scenario)."""

    wire_name = "AutoUpdateTimeSet"

    machine_id: uuid.UUID
    at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None = None  # HH:MM
    timezone: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_+/-]{1,64}$")] = "UTC"  # an IANA zone name


class UpdatesNotifyRequested(Event):
    """An operator's "notify now" (``notify-<id>``, the api's): push every applicable high and highest
    urgency package to these machines (all of them if none are named) that are online, at once --
    also those an earlier automatic delivery failed on."""

    wire_name = "UpdatesNotifyRequested"

    request_id: uuid.UUID
    machine_ids: Annotated[tuple[uuid.UUID, ...], Field(max_length=10_000)] = ()


class PackageInstallReported(Event):
    """One package's outcome on a machine, as its agent reported it (``delivery-<execution>``): the
    machine's update history."""

    wire_name = "PackageInstallReported"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    outcome: PackageOutcome
