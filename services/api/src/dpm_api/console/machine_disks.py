"""The disk layout of a machine's page, drawn to scale: pure geometry from what the disk viewer
(``GET /machines/{machine}/disks``) returns, the deploy client's DiskLayout per disk. Each partition
becomes one SVG rect whose x and width are its start and size as a share of the disk, in the
drawing's own units (``WIDTH``); an extended partition is drawn in a lane below the logical ones it
holds. The JSON came from a machine, so every number is checked here and every text is only ever
rendered autoescaped. A partition's type is named when it is a well-known one (GPT type GUIDs,
their sgdisk short codes, MBR type bytes), and the space no partition covers is drawn as its own
labelled "free" segment, so the bar shows what is left without counting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 1000.0  # the drawing's viewBox width; the page scales it to the column
MIN_WIDTH = 1.0  # a partition too small to see at this scale is still drawn (one unit wide)
LABEL_UNIT = 7.0  # about one character of the label's text, in drawing units
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
MIN_FREE = 16 * 1024**2  # smaller gaps are alignment (the first MiB, the GPT backup), not space left

_GPT_TYPES = {  # type GUID (as the agent reports it, upper case), its sgdisk short code, its name
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": ("EF00", "EFI System"),
    "21686148-6449-6E6F-744E-656564454649": ("EF02", "BIOS boot"),
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": ("8300", "Linux filesystem"),
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": ("8200", "Linux swap"),
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": ("8E00", "Linux LVM"),
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": ("0700", "Microsoft basic data"),
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": ("0C01", "Microsoft reserved"),
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": ("2700", "Windows recovery"),
}
_SHORT_TYPES = dict(_GPT_TYPES.values())
_MBR_TYPES = {  # the type byte, as sfdisk prints it without leading zeros ("c", "83")
    0x07: "HPFS/NTFS/exFAT",
    0x0B: "W95 FAT32",
    0x0C: "W95 FAT32 (LBA)",
    0x82: "Linux swap",
    0x83: "Linux",
    0x8E: "Linux LVM",
    0xEF: "EFI System",
    0xEE: "GPT protective",
}


@dataclass(frozen=True, slots=True)
class PartBox:
    """One partition as drawn: its place on the disk's bar, and what its label and table row say."""

    number: int
    name: str
    filesystem: str
    type: str  # the code as reported (a GPT type GUID, an sgdisk code or an MBR byte in hex)
    type_name: str  # what that code means, "" when it is not a well-known one
    size: int  # bytes
    x: float
    width: float
    extended: bool
    hidden: bool
    label: str  # the text drawn inside its rect ("" when it does not fit)


@dataclass(frozen=True, slots=True)
class FreeBox:
    """Space between partitions (or after the last one) that no partition covers."""

    size: int  # bytes
    x: float
    width: float
    label: str  # "free 50.0 GiB", or "" when it does not fit its segment


@dataclass(frozen=True, slots=True)
class DiskDrawing:
    device: str
    size: int  # bytes
    table: str  # "gpt", "dos" or "none"
    parts: tuple[PartBox, ...]
    free: tuple[FreeBox, ...] = ()

    @property
    def free_bytes(self) -> int:
        return sum(f.size for f in self.free)


def type_name(code: str) -> str:
    """The name of a partition type code: a full GPT type GUID, an sgdisk short code (``EF00``) or
    an MBR type byte in hex (``83``, ``c``); "" for a code that is not a well-known one."""
    code = code.strip().upper()
    if len(code) == 36:
        return _GPT_TYPES.get(code, ("", ""))[1]
    if len(code) == 4:
        return _SHORT_TYPES.get(code, "")
    try:
        return _MBR_TYPES.get(int(code, 16), "") if 0 < len(code) <= 2 else ""
    except ValueError:
        return ""


def human(size: int) -> str:
    """Bytes in binary units, as a disk tool prints them (``512 MiB``, ``1.5 TiB``)."""
    value, unit = float(max(size, 0)), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.0f} {_UNITS[unit]}" if unit == 0 or value >= 100 else f"{value:.1f} {_UNITS[unit]}"


def _count(value: Any) -> int:
    """A size or sector count as reported: a non-negative integer, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: Any, limit: int = 100) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _box(doc: dict[str, Any], sector: int, disk_bytes: int) -> PartBox:
    start, size = _count(doc.get("start")) * sector, _count(doc.get("size")) * sector
    x = min(WIDTH, WIDTH * start / disk_bytes) if disk_bytes else 0.0
    width = min(WIDTH - x, WIDTH * size / disk_bytes) if disk_bytes else 0.0
    if 0 < width < MIN_WIDTH:
        width = min(MIN_WIDTH, WIDTH - x)
    number = _count(doc.get("number"))
    name = _text(doc.get("name")) or f"partition {number}"
    filesystem = _text(doc.get("filesystem")) or "unknown"
    label = f"{number}: {human(size)} {filesystem}"
    return PartBox(
        number=number,
        name=name,
        filesystem=filesystem,
        type=_text(doc.get("type"), 40),
        type_name=type_name(_text(doc.get("type"), 40)),
        size=size,
        x=round(x, 3),
        width=round(max(width, 0.0), 3),
        extended=filesystem == "extended",
        hidden=doc.get("hidden") is True,
        label=label if len(label) * LABEL_UNIT <= width else "",
    )


def drawing(doc: Any) -> DiskDrawing | None:
    """One disk of the viewer's list as drawn, or None when it is not a disk at all."""
    if not isinstance(doc, dict):
        return None
    sector = _count(doc.get("sector_size")) or 512
    disk_bytes = _count(doc.get("size"))
    parts = doc.get("partitions")
    boxes = [_box(p, sector, disk_bytes) for p in (parts if isinstance(parts, list) else []) if isinstance(p, dict)]
    table = _text(doc.get("label"), 10) or "none"
    device = _text(doc.get("device"), 200) or "?"
    free = tuple(_gaps(parts if isinstance(parts, list) else [], sector, disk_bytes))
    return DiskDrawing(device=device, size=disk_bytes, table=table, parts=tuple(boxes), free=free)


def _gaps(parts: list[Any], sector: int, disk_bytes: int) -> list[FreeBox]:
    """The free segments of the partitions' lane: what lies between the partitions (an extended one
    aside: the space inside it that no logical partition uses is free too) and after the last."""
    spans = sorted(
        (_count(p.get("start")) * sector, _count(p.get("size")) * sector)
        for p in parts
        if isinstance(p, dict) and p.get("filesystem") != "extended"
    )
    gaps, at = [], 0
    for start, size in [*spans, (disk_bytes, 0)]:
        if disk_bytes and min(start, disk_bytes) - at >= MIN_FREE:
            gaps.append(_free(at, min(start, disk_bytes) - at, disk_bytes))
        at = max(at, start + size)
    return gaps


def _free(start: int, size: int, disk_bytes: int) -> FreeBox:
    x = min(WIDTH, WIDTH * start / disk_bytes)
    width = max(min(WIDTH - x, WIDTH * size / disk_bytes), 0.0)
    label = f"free {human(size)}"
    return FreeBox(
        size=size, x=round(x, 3), width=round(width, 3), label=label if len(label) * LABEL_UNIT <= width else ""
    )


def drawings(disks: Any) -> list[DiskDrawing]:
    """Every disk the viewer returned (``disks`` of ``GET /machines/{machine}/disks``)."""
    found = (drawing(d) for d in (disks if isinstance(disks, list) else []))
    return [d for d in found if d is not None]
