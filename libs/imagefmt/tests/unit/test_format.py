"""The image format's pure parts: cut points follow content, ids verify, manifests round-trip."""

from __future__ import annotations

import random

import pytest

from dpm_imagefmt.chunks import MAX_SIZE, Codec, CorruptChunk, chunk_id, cut, is_chunk_id, is_zero
from dpm_imagefmt.manifest import Extent, Manifest


def test_cut_points_move_with_the_content() -> None:
    data = random.Random(0).randbytes(8 << 20)
    pieces = list(cut(memoryview(data)))
    assert sum(p.length for p in pieces) == len(data)
    assert all(p.length <= MAX_SIZE for p in pieces)
    shifted = b"inserted!" + data  # an insertion at the front changes only the first chunk or two
    again = {chunk_id(p.data) for p in cut(memoryview(shifted))}
    before = [chunk_id(p.data) for p in pieces]
    assert sum(c in again for c in before) >= len(before) - 2


def test_codec_round_trip_and_corruption_named() -> None:
    codec = Codec()
    data = b"dpm " * 100_000
    cid = chunk_id(data)
    blob = codec.pack(data)
    assert len(blob) < len(data) // 10 and codec.unpack(blob, cid) == data
    with pytest.raises(CorruptChunk, match=cid):
        codec.unpack(blob[:-3] + b"xyz", cid)
    with pytest.raises(CorruptChunk, match="does not match"):
        codec.unpack(codec.pack(b"other"), cid)


def test_ids_and_zeros() -> None:
    assert is_chunk_id(chunk_id(b"x")) and not is_chunk_id("../../etc/passwd") and not is_chunk_id("A" * 64)
    assert is_zero(bytes(MAX_SIZE)) and not is_zero(bytes(1000) + b"\1")
    assert is_zero(memoryview(bytes(4096)))


def test_manifest_round_trip() -> None:
    m = Manifest(
        source="disk",
        mode="used",
        size=1 << 30,
        sector_size=4096,
        layout={"label": "gpt", "partitions": []},
        partition=None,
        extents=(Extent(0, 4096, chunk_id(b"a")), Extent(4096, 1 << 20, None), Extent(1 << 29, 10, chunk_id(b"b"))),
        digest=chunk_id(b"all"),
        meta={"machine": "m1"},
    )
    back = Manifest.decode(m.encode())
    assert back == m
    assert back.required_size == (1 << 29) + 10 and back.captured_bytes == 4096 + (1 << 20) + 10
    assert back.chunk_ids == {chunk_id(b"a"), chunk_id(b"b")}
