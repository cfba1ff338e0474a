"""The manifest: what an image is -- the source's layout, and the ordered extents that rebuild it.

An extent is ``(offset, length, chunk id)`` with ``None`` for a run of zeros (stored as nothing,
written back as zeros). Bytes no extent covers were not captured (free filesystem blocks of a
used-sector backup) and a restore leaves them alone. ``digest`` is BLAKE3 over the captured bytes
in extent order, so a restore proves end to end that it wrote what the backup read.

Manifests are JSON compressed with zstd and stored in the chunk store under their own BLAKE3 id;
the ImageCaptured event carries that id, which is the commit of a backup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import zstandard

from dpm_imagefmt.chunks import chunk_id

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Extent:
    offset: int
    length: int
    chunk: str | None  # None: zeros

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Manifest:
    source: str  # "disk" or "partition"
    mode: str  # "full" or "used"
    size: int  # bytes of the source (disk or partition)
    sector_size: int
    layout: dict[str, Any]  # the source disk's layout (dpm_agent.deploy.layout.DiskLayout.to_dict())
    partition: dict[str, Any] | None  # the partition backed up, for a partition image
    extents: tuple[Extent, ...]
    digest: str
    meta: dict[str, str] = field(default_factory=dict)  # machine, device, client version ...

    @property
    def chunk_ids(self) -> frozenset[str]:
        return frozenset(e.chunk for e in self.extents if e.chunk is not None)

    @property
    def captured_bytes(self) -> int:
        return sum(e.length for e in self.extents)

    @property
    def required_size(self) -> int:
        """The smallest target that holds every byte this image writes."""
        return max((e.end for e in self.extents), default=0)

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT,
            "source": self.source,
            "mode": self.mode,
            "size": self.size,
            "sector_size": self.sector_size,
            "layout": self.layout,
            "partition": self.partition,
            "extents": [[e.offset, e.length, e.chunk] for e in self.extents],
            "digest": self.digest,
            "meta": self.meta,
        }
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        return zstandard.ZstdCompressor(level=3).compress(text)

    @classmethod
    def decode(cls, blob: bytes) -> Manifest:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 30))
        if doc.get("format") != FORMAT:
            raise ValueError(f"manifest format {doc.get('format')!r} is not {FORMAT}")
        return cls(
            source=doc["source"],
            mode=doc["mode"],
            size=int(doc["size"]),
            sector_size=int(doc["sector_size"]),
            layout=doc["layout"],
            partition=doc["partition"],
            extents=tuple(Extent(int(o), int(n), c) for o, n, c in doc["extents"]),
            digest=doc["digest"],
            meta=dict(doc.get("meta") or {}),
        )


def manifest_id(blob: bytes) -> str:
    return chunk_id(blob)
