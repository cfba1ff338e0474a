"""The disk configuration check: a disk's partition table (MBR with logical partitions, or GPT),
its sector sizes, and each partition's type, place, filesystem and hidden flag.

Parsing is pure (``parse(head, tail, ...)`` over bytes read by the caller), so every table shape
is a unit test; ``read_layout`` reads the few sectors it needs from a Device. ``to_sfdisk`` renders
the layout as ``sfdisk --json`` does, which is how the tests hold it to a second implementation.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dpm_agent.deploy.device import Device
from dpm_agent.deploy.fs import detect
from dpm_schemas import E

MBR_EXTENDED = frozenset({0x05, 0x0F, 0x85})
MBR_PROTECTIVE = 0xEE
# Hidden / recovery MBR types (the original's "hidden partitions").
MBR_HIDDEN = frozenset({0x11, 0x12, 0x14, 0x16, 0x17, 0x1B, 0x1C, 0x1E, 0x27})
GPT_HIDDEN_TYPES = frozenset(
    {
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",  # Microsoft reserved
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC",  # Windows recovery environment
    }
)
GPT_ATTR_HIDDEN = 1 << 62
MAX_LOGICAL = 128
_GPT_ATTR_NAMES = {0: "RequiredPartition", 1: "NoBlockIOProtocol", 2: "LegacyBIOSBootable"}


@dataclass(frozen=True)
class Partition:
    number: int  # as the kernel numbers it: MBR primaries 1-4, logicals from 5; GPT entry index + 1
    start: int  # logical sectors
    size: int  # logical sectors
    type: str  # MBR: hex byte as sfdisk prints it ("83", "c"); GPT: the type GUID, upper case
    uuid: str | None = None  # GPT partition GUID
    name: str = ""  # GPT name
    bootable: bool = False  # MBR active flag
    attrs: int = 0  # GPT attribute bits
    filesystem: str = "unknown"
    hidden: bool = False

    @property
    def extended(self) -> bool:
        return self.filesystem == "extended"


@dataclass(frozen=True)
class DiskLayout:
    device: str
    size: int  # bytes
    sector_size: int
    physical_sector_size: int
    label: str | None  # "dos", "gpt" or None (no partition table)
    id: str | None = None
    first_lba: int | None = None
    last_lba: int | None = None
    partitions: tuple[Partition, ...] = field(default_factory=tuple)

    def partition(self, number: int, *, ignore_hidden: bool = False) -> Partition | None:
        """Partition ``number`` as a scenario counts it: with ``ignore_hidden``, hidden partitions
        are not counted and the numbers after them shift down (the original's option)."""
        return dict(self.numbering(ignore_hidden=ignore_hidden)).get(number)

    def numbering(self, *, ignore_hidden: bool = False) -> list[tuple[int, Partition]]:
        if not ignore_hidden:
            return [(p.number, p) for p in self.partitions]
        return [(i, p) for i, p in enumerate((p for p in self.partitions if not p.hidden), start=1)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DiskLayout:
        parts = tuple(Partition(**p) for p in doc.get("partitions", ()))
        return cls(**{**doc, "partitions": parts})

    def to_sfdisk(self) -> dict[str, Any]:
        """The ``partitiontable`` object of ``sfdisk --json`` (without the device node names)."""
        table: dict[str, Any] = {"label": self.label, "id": self.id, "unit": "sectors"}
        if self.label == "gpt":
            table["firstlba"] = self.first_lba
            table["lastlba"] = self.last_lba
        table["sectorsize"] = self.sector_size
        rows = []
        for p in self.partitions:
            row: dict[str, Any] = {"start": p.start, "size": p.size, "type": p.type}
            if self.label == "gpt":
                row["uuid"] = p.uuid
                if p.name:
                    row["name"] = p.name
                if p.attrs:
                    row["attrs"] = gpt_attrs_text(p.attrs)
            elif p.bootable:
                row["bootable"] = True
            rows.append(row)
        table["partitions"] = rows
        return table


def gpt_attrs_text(attrs: int) -> str:
    words = [name for bit, name in _GPT_ATTR_NAMES.items() if attrs & (1 << bit)]
    guid_bits = [str(b) for b in range(48, 64) if attrs & (1 << b)]
    if guid_bits:
        words.append("GUID:" + ",".join(guid_bits))
    return " ".join(words)


def read_layout(dev: Device) -> DiskLayout:
    """Read ``dev``'s partition table and probe each partition's filesystem."""
    ss = dev.sector_size
    head = dev.read(0, 34 * ss)  # MBR, GPT header, 32 sectors of entries at 512 (more read if needed)
    layout = parse_head(dev, head)
    probed = []
    for p in layout.partitions:
        if p.extended:
            probed.append(p)
            continue
        fs = detect(dev.read(p.start * ss, min(p.size * ss, 128 * 1024)))
        probed.append(replace(p, filesystem=fs))
    return replace(layout, partitions=tuple(probed))


def parse_head(dev: Device, head: bytes) -> DiskLayout:
    ss = dev.sector_size
    base = DiskLayout(dev.path, dev.size, ss, dev.physical_sector_size, None)
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        if head[ss : ss + 8] == b"EFI PART":  # GPT without a protective MBR still is GPT
            return _gpt(dev, base)
        return base
    entries = [_mbr_entry(head, 446 + 16 * i) for i in range(4)]
    if any(e[1] == MBR_PROTECTIVE for e in entries) and head[ss : ss + 8] == b"EFI PART":
        return _gpt(dev, base)
    disk_id = f"0x{struct.unpack_from('<I', head, 440)[0]:08x}"
    parts: list[Partition] = []
    for i, (active, ptype, start, size) in enumerate(entries, start=1):
        if ptype == 0 or size == 0:
            continue
        parts.append(_mbr_partition(i, active, ptype, start, size))
        if ptype in MBR_EXTENDED:
            parts.extend(_logicals(dev, start))
    return replace(base, label="dos", id=disk_id, partitions=tuple(parts))


def _mbr_entry(buf: bytes, off: int) -> tuple[bool, int, int, int]:
    status, ptype, start, size = buf[off], buf[off + 4], *struct.unpack_from("<II", buf, off + 8)
    return status == 0x80, ptype, start, size


def _mbr_partition(number: int, active: bool, ptype: int, start: int, size: int) -> Partition:
    return Partition(
        number=number,
        start=start,
        size=size,
        type=f"{ptype:x}",
        bootable=active,
        filesystem="extended" if ptype in MBR_EXTENDED else "unknown",
        hidden=ptype in MBR_HIDDEN,
    )


def _logicals(dev: Device, ext_start: int) -> list[Partition]:
    """Follow the chain of extended boot records; each holds one logical partition (relative to
    itself) and the next record (relative to the extended partition)."""
    ss = dev.sector_size
    out: list[Partition] = []
    ebr, seen = ext_start, set()
    while ebr not in seen and len(out) < MAX_LOGICAL:
        seen.add(ebr)
        sector = dev.read(ebr * ss, 512)
        if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
            break
        active, ptype, rel, size = _mbr_entry(sector, 446)
        if ptype and size:
            out.append(_mbr_partition(5 + len(out), active, ptype, ebr + rel, size))
        _, ntype, nrel, nsize = _mbr_entry(sector, 462)
        if ntype not in MBR_EXTENDED or nsize == 0:
            break
        ebr = ext_start + nrel
    return out


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw)).upper()


def _gpt(dev: Device, base: DiskLayout) -> DiskLayout:
    ss = dev.sector_size
    last = dev.size // ss - 1
    try:
        return _gpt_at(dev, base, 1)
    except ValueError as primary:
        try:  # the backup header at the last sector: a damaged primary is what it exists for
            return _gpt_at(dev, base, last)
        except ValueError:
            raise E.LAYOUT_UNREADABLE(device=dev.path, reason=f"GPT: {primary}") from None


def _gpt_at(dev: Device, base: DiskLayout, lba: int) -> DiskLayout:
    ss = dev.sector_size
    hdr = dev.read(lba * ss, ss)
    if hdr[:8] != b"EFI PART":
        raise ValueError(f"no GPT header at LBA {lba}")
    (hsize,) = struct.unpack_from("<I", hdr, 12)
    if not 92 <= hsize <= ss:
        raise ValueError(f"header size {hsize}")
    (crc,) = struct.unpack_from("<I", hdr, 16)
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != crc:
        raise ValueError(f"header CRC mismatch at LBA {lba}")
    first, last = struct.unpack_from("<QQ", hdr, 40)
    disk_guid = _guid(hdr[56:72])
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", hdr, 72)
    if esize < 128 or count > 4096:
        raise ValueError(f"{count} entries of {esize} bytes")
    table = dev.read(entries_lba * ss, count * esize)
    if zlib.crc32(table) != ecrc:
        raise ValueError("partition entries CRC mismatch")
    parts = []
    for i in range(count):
        e = table[i * esize : (i + 1) * esize]
        if e[:16] == b"\0" * 16:
            continue
        ptype, start, end, attrs = _guid(e[:16]), *struct.unpack_from("<QQQ", e, 32)
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(
            Partition(
                number=i + 1,
                start=start,
                size=end - start + 1,
                type=ptype,
                uuid=_guid(e[16:32]),
                name=name,
                attrs=attrs,
                hidden=ptype in GPT_HIDDEN_TYPES or bool(attrs & GPT_ATTR_HIDDEN),
            )
        )
    return replace(base, label="gpt", id=disk_guid, first_lba=first, last_lba=last, partitions=tuple(parts))
