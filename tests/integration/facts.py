"""Facts other services would have recorded, appended straight to the log for tests that run the
api without them: an image the imager captured. One definition, so a field added to the event is
added once."""

from __future__ import annotations

import uuid

from dpm_runtime.eventlog import ANY_VERSION
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import ImageCaptured
from dpm_schemas.events.imaging import image_id
from dpm_schemas.ids import stream_id

GIB = 1 << 30


def captured(
    name: str, size: int = 2 * GIB, *, source: str = "disk", label: str = "gpt", sector: int = 512
) -> ImageCaptured:
    """A used-blocks capture of ``size`` bytes: half of it read, a quarter of it stored."""
    return ImageCaptured(
        image_id=image_id(name),
        image=name,
        transfer_id=uuid.uuid4(),
        manifest="a" * 64,
        source=source,
        mode="used",
        size_bytes=size,
        captured_bytes=size // 2,
        stored_bytes=size // 4,
        chunk_count=max(1, size // (8 << 20)),
        sector_size=sector,
        label=label,
        digest="b" * 64,
    )


async def record_image(api, name: str, size: int = 2 * GIB, **kw) -> None:
    """Append ``captured(name, size)`` and wait until the api's images projection has it."""
    event = captured(name, size, **kw)
    log = api.runtime.eventlog
    meta = Metadata.new(actor="test")
    done = await log.append(stream_id(subjects.IMAGE, event.image_id), ANY_VERSION, [NewEvent(event, meta)])
    assert await api.runtime.projections["images"].wait_for(done.position, timeout=10)
