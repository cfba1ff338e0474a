"""The dashboard's throughput chart, as pure functions: committed transfers put in 5-minute buckets,
and the bars' geometry for an inline SVG the server renders (the CSP allows no inline style, so sizes
to scale are SVG attributes). Buckets are aligned to the clock, and a bucket's rate is its bytes over
its whole width, so the same data renders the same fragment until a transfer lands or a bucket ends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH = timedelta(minutes=5)
COUNT = 12  # one hour
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass(frozen=True, slots=True)
class Bucket:
    """Transfers committed in ``[start, start + width)``, and their bytes."""

    start: datetime
    width: timedelta
    transfers: int = 0
    bytes: int = 0

    @property
    def end(self) -> datetime:
        return self.start + self.width

    @property
    def rate(self) -> float:
        """Bytes per second, averaged over the whole bucket."""
        return self.bytes / self.width.total_seconds()


def floor(at: datetime, width: timedelta = WIDTH) -> datetime:
    """The start of the bucket ``at`` falls in (buckets start at whole multiples of ``width`` since
    midnight of ``at``'s day, so 12:07 falls in 12:05)."""
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((at - midnight) // width) * width


def buckets(
    now: datetime, samples: Iterable[tuple[datetime, int]], *, width: timedelta = WIDTH, count: int = COUNT
) -> list[Bucket]:
    """``count`` buckets up to the one holding ``now``, oldest first, with the ``(at, bytes)`` samples
    that fall in them. A sample older than the first bucket is dropped; one after ``now`` (the
    database's clock a little ahead of ours) counts in the newest bucket."""
    first = floor(now, width) - (count - 1) * width
    transfers, sizes = [0] * count, [0] * count
    for at, size in samples:
        if at < first:
            continue
        i = min(count - 1, int((at - first) // width))
        transfers[i] += 1
        sizes[i] += max(0, size)
    return [Bucket(first + i * width, width, transfers[i], sizes[i]) for i in range(count)]


def human(n: float) -> str:
    """Bytes in binary units as console.js shows them: ``0 B``, ``512 B``, ``1.5 KiB``, ``2.0 GiB``."""
    value, unit = float(max(0.0, n)), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {UNITS[unit]}" if unit else f"{value:.0f} B"


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the bar's tooltip (SVG <title>)


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    """The SVG's viewBox (``width`` x ``height``), its bars, the time labels below the baseline at
    ``base``, and the figure the tallest bar stands for."""

    width: int
    height: int
    base: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    peak: int


def chart(rows: Sequence[Bucket], *, width: int = 600, height: int = 150, every: int = 3) -> Chart:
    """Bars to scale (the tallest bucket fills the plot; a bucket with any bytes is at least one unit
    tall, so a small transfer never looks like none) and a time label under every ``every``-th bar."""
    top, base = 18.0, float(height - 20)  # room above for the peak's label, below for the times
    slot = width / max(1, len(rows))
    gap = min(4.0, slot / 5)
    peak = max((b.bytes for b in rows), default=0)
    bars, ticks = [], []
    for i, b in enumerate(rows):
        tall = 0.0 if not peak or not b.bytes else max(1.0, round((base - top) * b.bytes / peak, 1))
        span = f"{b.start:%H:%M}\N{EN DASH}{b.end:%H:%M}"
        label = f"{span}: {human(b.bytes)} in {b.transfers} transfer{'' if b.transfers == 1 else 's'}"
        bars.append(Bar(round(i * slot + gap / 2, 1), round(base - tall, 1), round(slot - gap, 1), tall, label))
        if i % every == 0:
            ticks.append(Tick(round(i * slot + slot / 2, 1), f"{b.start:%H:%M}"))
    return Chart(width, height, base, tuple(bars), tuple(ticks), peak)
