"""Package sources (issue 14): Debian-format (``kind`` "deb") or RPM (``kind`` "rpm") repositories
the updater syncs, so their packages are offered like Foreman/Katello offer errata. The api decides
what a source is (``source-<id>``: SourceSaved, SourceRemoved, SourceSyncRequested); the updater
records what each sync found (``sync-<id>``: SourceSynced, with the include-filtered packages new or
changed since the last sync, their files already in its content store). No secret is ever in these
events: a proxy's credentials live in the updater's own settings (DPM_UPDATER_SOURCE_CREDENTIALS)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from dpm_schemas.base import Event
from dpm_schemas.packages import Urgency
from dpm_schemas.text import MULTI_LINE_PATTERN, Label, LongText, Text

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
Plain = Annotated[str, Field(pattern=r"^[A-Za-z0-9._+~-]{1,64}$", max_length=64)]
Glob = Annotated[str, Field(pattern=r"^[A-Za-z0-9.+*?\[\]!-]{1,100}$", max_length=100)]
OFFERED_MAX = 1000  # entries per SourceSynced; a sync that offers more appends several (``final`` on the last)
KEY_MAX = 100_000  # an armoured OpenPGP public key with its signatures
ArmoredKey = Annotated[str, StringConstraints(max_length=KEY_MAX, pattern=MULTI_LINE_PATTERN)]
SourceKind = Literal["deb", "rpm"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("deb", "rpm")


class SourceSaved(Event):
    """A source's settings (new, or replacing the previous ones): what to sync, how, and which of its
    packages to offer. ``include`` is required: a whole Debian mirror is not a catalogue.

    ``kind`` "deb" (the default, so every SourceSaved recorded before RPM sources still folds as
    the Debian source it was) has a suite and at least one component and architecture; "rpm" has
    no suite and no components (``<url>/repodata/repomd.xml`` says what there is), and its
    architectures are an optional filter (none: every architecture; noarch always counts)."""

    wire_name = "SourceSaved"

    source_id: uuid.UUID
    name: SourceName
    kind: SourceKind = "deb"
    url: Text  # http(s) base of the repository
    suite: Plain | None = None  # deb only
    components: Annotated[tuple[Plain, ...], Field(max_length=16)] = ()  # deb only
    architectures: Annotated[tuple[Plain, ...], Field(max_length=16)] = ()
    key: ArmoredKey | None = None  # armoured public key; None: unsigned
    include: Annotated[tuple[Glob, ...], Field(min_length=1, max_length=100)]
    urgency: Urgency = Urgency.NORMAL  # of the packages it offers (highest: auto-update pushes them)
    interval_minutes: Annotated[int, Field(ge=5, le=7 * 24 * 60)] = 360
    proxy: Text | None = None  # http://host:port, never with credentials
    verify_tls: bool = True

    @model_validator(mode="after")
    def _fits_kind(self) -> SourceSaved:
        if self.kind == "deb" and (self.suite is None or not self.components or not self.architectures):
            raise ValueError("a deb source has a suite and at least one component and architecture")
        if self.kind == "rpm" and (self.suite is not None or self.components):
            raise ValueError("an rpm source has no suite and no components")
        return self


class SourceRemoved(Event):
    """No more syncs of the source; the packages it offered stay in the catalogue."""

    wire_name = "SourceRemoved"

    source_id: uuid.UUID
    name: SourceName


class SourceSyncRequested(Event):
    """An operator's "sync now"."""

    wire_name = "SourceSyncRequested"

    source_id: uuid.UUID
    request_id: uuid.UUID


class OfferedPackage(BaseModel):
    """A package a sync offers: its file is in the updater's content store under ``sha256``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Label
    version: Label
    architecture: Label
    sha256: Hex64
    size: Annotated[int, Field(ge=0)]
    filename: Text


class SyncCounts(BaseModel):
    """What one sync saw: entries in the repository's indexes, those ``include`` matched, those
    offered (new or changed), files downloaded and failed, and bytes received."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listed: Annotated[int, Field(ge=0)] = 0
    included: Annotated[int, Field(ge=0)] = 0
    offered: Annotated[int, Field(ge=0)] = 0
    downloaded: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0
    bytes: Annotated[int, Field(ge=0)] = 0


class SourceSynced(Event):
    """What one sync did (``sync-<source>``, the updater's): ``ok`` False with the failure's code
    (DPM-E25x/E26x) when the repository, its signature or a download failed -- the packages whose
    files did arrive are still offered, the others are tried again by the next sync. ``counts``:
    listed, included, offered, failed, bytes. A sync offering more than OFFERED_MAX packages appends
    several events with one ``sync_id``; ``final`` marks the last."""

    wire_name = "SourceSynced"

    source_id: uuid.UUID
    sync_id: uuid.UUID
    at: datetime
    ok: bool
    code: Label | None = None
    message: Annotated[LongText, Field(max_length=1000)] = ""
    counts: SyncCounts = SyncCounts()
    offered: Annotated[tuple[OfferedPackage, ...], Field(max_length=OFFERED_MAX)] = ()
    final: bool = True
