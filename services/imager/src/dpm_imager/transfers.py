"""Which transfer a call's token belongs to, and the renewal a use calls for.

Each data-plane call is authorised by the token of one transfer (opened by the api: TransferOpened),
for one image and one direction. A checked token is trusted for ``AUTH_TTL`` seconds without asking
PostgreSQL again; a use that finds it in the last quarter of its idle time appends TransferRenewed
(domain.transfers.renewal), one at a time per transfer in this process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from datetime import UTC, datetime
from uuid import UUID

from dpm_imager.adapters.dataplane import Imager
from dpm_imager.domain.transfers import Transfer, check_use, renewal

AUTH_TTL = 5.0  # seconds a checked token is trusted without asking PostgreSQL again


async def authorize(imager: Imager, token: str, transfer_id: UUID, direction: str) -> Transfer:
    """The transfer of ``token``: known, of this direction, not closed, unexpired (domain.transfers.check_use)."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = datetime.now(UTC)
    cached = imager.authorized.get((digest, transfer_id))
    if cached is not None and time.monotonic() - cached[1] < AUTH_TTL and cached[0].expires_at > now:
        t: Transfer | None = cached[0]
    else:  # unknown here, stale, or expired as far as this replica knows (another may have renewed)
        t = await imager.lookup(digest, transfer_id)
    return await _renew(imager, digest, check_use(t, direction, now), now)


async def _renew(imager: Imager, digest: str, t: Transfer, now: datetime) -> Transfer:
    """Append the renewal a use calls for (one at a time per transfer in this process)."""
    event = renewal(t, now)
    if event is None or t.transfer_id in imager.renewing:
        return t
    imager.renewing.add(t.transfer_id)
    try:
        await imager.append(t, event)
    finally:
        imager.renewing.discard(t.transfer_id)
    renewed = dataclasses.replace(t, expires_at=event.expires_at)
    imager.remember(digest, renewed)
    return renewed
