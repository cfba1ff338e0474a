"""An image's stream in the log, as the data plane writes it: ImageCaptured, TransferRenewed,
TransferAborted and ImageVerified, each appended by the transfer's deploy client (or the imager).
(The api's catalog stream may hold a TransferAborted too: an operator revoking a backup's lock.)"""

from __future__ import annotations

from dpm_imager.domain.transfers import Transfer, check_open, names_manifest
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, AppendResult, EventLog
from dpm_schemas import Event, Metadata, NewEvent, subjects
from dpm_schemas.ids import stream_id


def image_stream(t: Transfer) -> str:
    return stream_id(subjects.IMAGE, t.image_id)


async def still_open(eventlog: EventLog, t: Transfer) -> int:
    """The image stream's version, unless this transfer already committed or aborted (DPM-E118) --
    here, or in the api's catalog stream, where an operator's ``dpm images unlock`` revokes it."""
    history = await eventlog.read_stream(image_stream(t))
    check_open(history, t)
    check_open(await eventlog.read_stream(stream_id(subjects.CATALOG, t.image_id)), t)
    return history[-1].stream_version if history else NO_STREAM


async def captured_in_log(eventlog: EventLog, t: Transfer, mid: str) -> bool:
    """Whether the image's stream has an ImageCaptured naming manifest ``mid``."""
    return names_manifest(await eventlog.read_stream(image_stream(t)), mid)


async def append(eventlog: EventLog, t: Transfer, event: Event, *, expected: int | None = ANY_VERSION) -> AppendResult:
    """Append to the image's stream as the transfer's deploy client (the imager for a manual one)."""
    actor = f"deploy:{t.machine_id}" if t.machine_id else "imager"
    return await eventlog.append(image_stream(t), expected, [NewEvent(event, Metadata.new(actor=actor))])
