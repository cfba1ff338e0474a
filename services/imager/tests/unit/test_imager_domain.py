"""The imager's pure rules (dpm_imager.domain), each table-tested without PostgreSQL, NATS or a
store: what a transfer's token may do now, when a use renews it, whether there is room, whether the
log shows the transfer closed, and which committed manifests are sound."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import zstandard

from dpm_imagefmt.manifest import Extent, Manifest
from dpm_imager.domain.manifest import captured, check_chunk_ids, check_manifest, check_part_of
from dpm_imager.domain.transfers import Transfer, check_open, check_room, check_use, names_manifest, renewal
from dpm_schemas import DpmError, E, Event, Metadata
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ImageCaptured, TransferAborted

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CHUNK = "c" * 64


def transfer(**changes: object) -> Transfer:
    t = Transfer(
        transfer_id=uuid.UUID(int=1),
        image_id=uuid.UUID(int=2),
        image="lab/disk",
        direction="backup",
        expires_at=NOW + timedelta(seconds=100),
        machine_id=None,
        execution_id=None,
        state="open",
        renew_seconds=100.0,
    )
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]


def test_a_transfer_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        transfer().state = "aborted"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("t", "direction", "code"),
    [
        (None, "backup", E.UNAUTHENTICATED.code),
        (transfer(direction="restore"), "backup", E.UNAUTHENTICATED.code),
        (transfer(state="aborted", reason="gone"), "backup", E.TRANSFER_CLOSED.code),
        (transfer(expires_at=NOW), "backup", E.TRANSFER_EXPIRED.code),
        (transfer(expires_at=NOW, renew_seconds=None), "backup", E.UNAUTHENTICATED.code),
        (transfer(state="committed"), "backup", E.IMAGE_BUSY.code),
        (transfer(state="committed", direction="restore"), "restore", None),
        (transfer(), "backup", None),
    ],
)
def test_what_a_token_may_do_now(t: Transfer | None, direction: str, code: str | None) -> None:
    if code is None:
        assert check_use(t, direction, NOW) is t
    else:
        with pytest.raises(DpmError) as refused:
            check_use(t, direction, NOW)
        assert refused.value.code == code


@pytest.mark.parametrize(
    ("t", "renews"),
    [
        (transfer(expires_at=NOW + timedelta(seconds=76)), False),  # more than three quarters left
        (transfer(expires_at=NOW + timedelta(seconds=74)), True),
        (transfer(expires_at=NOW + timedelta(seconds=1), renew_seconds=None), False),  # a fixed expiry
        (transfer(expires_at=NOW + timedelta(seconds=1), state="committed"), False),
    ],
)
def test_a_use_late_in_the_idle_time_renews(t: Transfer, renews: bool) -> None:
    event = renewal(t, NOW)
    assert (event is not None) is renews
    if event is not None:
        assert event.expires_at == NOW + timedelta(seconds=100)
        assert (event.transfer_id, event.image_id, event.image) == (t.transfer_id, t.image_id, t.image)


@pytest.mark.parametrize(("free", "required", "fits"), [(10, 10, True), (10, 11, False), (-5, 0, False)])
def test_room_for_a_backup(free: int, required: int, fits: bool) -> None:
    if fits:
        check_room(free, required)
    else:
        with pytest.raises(DpmError) as refused:
            check_room(free, required)
        assert refused.value.code == E.STORE_FULL.code
        assert refused.value.details["free"] >= 0


def _recorded(event: Event, version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        uuid.uuid4(), event.wire_name, 1, "image-x", version, version, NOW, Metadata.new(actor="t"), event
    )


def _captured(t: Transfer, mid: str = "f" * 64) -> ImageCaptured:
    manifest = Manifest("disk", "full", 4096, 512, {"label": None}, None, (Extent(0, 1024, CHUNK),), "d" * 64)
    return captured(t, manifest, mid, 1024)


def test_the_log_shows_a_transfer_closed() -> None:
    t, other = transfer(), transfer(transfer_id=uuid.UUID(int=9))
    check_open([_recorded(_captured(other))], t)  # another transfer's commit: still open
    for closing, state in [
        (_captured(t), "committed"),
        (TransferAborted(transfer_id=t.transfer_id, image_id=t.image_id, image=t.image, reason="x"), "aborted"),
    ]:
        with pytest.raises(DpmError) as refused:
            check_open([_recorded(closing)], t)
        assert refused.value.code == E.TRANSFER_COMMITTED.code
        assert refused.value.details["state"] == state
    assert names_manifest([_recorded(_captured(t, "a" * 64))], "a" * 64)
    assert not names_manifest([_recorded(_captured(t, "a" * 64))], "b" * 64)


def _zjson(doc: object) -> bytes:
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


GOOD = Manifest("disk", "full", 4096, 512, {"label": "root"}, None, (Extent(0, 1024, CHUNK),), "d" * 64)
GOOD_DOC = json.loads(zstandard.ZstdDecompressor().decompress(GOOD.encode()))


@pytest.mark.parametrize(
    "blob",
    [
        b"not zstd",
        _zjson([1, 2]),
        _zjson({**GOOD_DOC, "source": "floppy"}),
        _zjson({**GOOD_DOC, "sector_size": 513}),
        _zjson({**GOOD_DOC, "digest": "xyz"}),
        _zjson({"deep": json.loads("[" * 20 + "1" + "]" * 20)}),
    ],
)
def test_an_unsound_manifest_is_refused(blob: bytes) -> None:
    with pytest.raises(DpmError) as refused:
        check_manifest(blob, "lab/disk")
    assert refused.value.code == E.MANIFEST_INVALID.code


def test_a_sound_manifest_becomes_the_commits_event() -> None:
    manifest = check_manifest(GOOD.encode(), "lab/disk")
    event = _captured(transfer())
    assert manifest.chunk_ids == {CHUNK}
    assert (event.chunk_count, event.captured_bytes, event.stored_bytes) == (1, 1024, 1024)


def test_chunk_ids_and_a_restore_reads_only_its_image() -> None:
    check_chunk_ids([CHUNK])
    with pytest.raises(DpmError) as refused:
        check_chunk_ids([CHUNK, "C" * 64])
    assert refused.value.code == E.IMAGE_INVALID.code
    check_part_of(GOOD, [CHUNK], "lab/disk")
    with pytest.raises(DpmError) as foreign:
        check_part_of(GOOD, [CHUNK, "e" * 64], "lab/disk")
    assert foreign.value.code == E.IMAGE_INVALID.code
