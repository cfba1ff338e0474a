"""The disk layout of a machine's page, drawn to scale: pure geometry from what the disk viewer
(``GET /machines/{machine}/disks``) returns, the deploy client's DiskLayout per disk. Each partition
becomes one SVG rect whose x and width are its start and size as a share of the disk, in the
drawing's own units (``WIDTH``); an extended partition is drawn in a lane below the logical ones it
holds. The JSON came from a machine, so every number is checked here and every text is only ever
rendered autoescaped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 1000.0  # the drawing's viewBox width; the page scales it to the column
MIN_WIDTH = 1.0  # a partition too small to see at this scale is still drawn (one unit wide)
LABEL_UNIT = 7.0  # about one character of the label's text, in drawing units
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass(frozen=True, slots=True)
class PartBox:
    """One partition as drawn: its place on the disk's bar, and what its label and table row say."""

    number: int
    name: str
    filesystem: str
    type: str
    size: int  # bytes
    x: float
    width: float
    extended: bool
    hidden: bool
    label: str  # the text drawn inside its rect ("" when it does not fit)


@dataclass(frozen=True, slots=True)
class DiskDrawing:
    device: str
    size: int  # bytes
    table: str  # "gpt", "dos" or "none"
    parts: tuple[PartBox, ...]


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
    return DiskDrawing(device=_text(doc.get("device"), 200) or "?", size=disk_bytes, table=table, parts=tuple(boxes))


def drawings(disks: Any) -> list[DiskDrawing]:
    """Every disk the viewer returned (``disks`` of ``GET /machines/{machine}/disks``)."""
    found = (drawing(d) for d in (disks if isinstance(disks, list) else []))
    return [d for d in found if d is not None]
