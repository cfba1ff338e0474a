"""ChunkSent: a transfer's progress as a transient NATS signal, at most one per interval per
transfer (bytes done, rate, ETA), for the CLI and the SSE stream. Lost signals cost nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from uuid import UUID

from nats.aio.client import Client as NATS

from dpm_imager.domain.transfers import Transfer
from dpm_schemas import codec, subjects
from dpm_schemas.events import ChunkSent

log = logging.getLogger(__name__)

# A signal is not stored, so its schema version travels with it: a subscriber of another release decodes it right.
_HEADERS = {subjects.HEADER_TYPE: ChunkSent.wire_name, subjects.HEADER_VERSION: str(ChunkSent.wire_version)}


@dataclass
class Meter:
    started: float = field(default_factory=time.monotonic)
    chunks: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    last_sent: float = 0.0


class Progress:
    def __init__(self, nc: NATS | None, interval: float) -> None:
        self._nc = nc
        self._interval = interval
        self.meters: dict[UUID, Meter] = {}

    def planned(self, transfer_id: UUID, total: int) -> None:
        self.meters.setdefault(transfer_id, Meter()).bytes_total = total

    async def moved(self, t: Transfer, nbytes: int, *, final: bool = False) -> None:
        m = self.meters.setdefault(t.transfer_id, Meter())
        m.chunks += 1
        m.bytes_done += nbytes
        now = time.monotonic()
        if self._nc is None or (not final and now - m.last_sent < self._interval):
            return
        m.last_sent = now
        rate = m.bytes_done / max(now - m.started, 1e-6)
        left = max(m.bytes_total - m.bytes_done, 0)
        signal = ChunkSent(
            transfer_id=t.transfer_id,
            chunk_index=m.chunks,
            bytes_done=m.bytes_done,
            bytes_total=max(m.bytes_total, m.bytes_done),
            rate_bps=rate,
            eta_seconds=left / rate if rate and m.bytes_total else None,
            execution_id=t.execution_id,
            image=t.image,
            direction=t.direction,
        )
        subject = subjects.signal_subject(ChunkSent.wire_name, str(t.execution_id or t.transfer_id))
        try:  # bounded: a reconnecting NATS must never hold up the chunks themselves
            await asyncio.wait_for(self._nc.publish(subject, codec.encode_payload(signal), headers=_HEADERS), 1.0)
        except Exception as exc:  # progress is best effort; the transfer goes on
            log.debug("ChunkSent not published: %r", exc)

    def done(self, transfer_id: UUID) -> Meter | None:
        return self.meters.pop(transfer_id, None)
