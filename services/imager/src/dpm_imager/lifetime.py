"""How long a transfer's token is good for: renewed by use, ended with its execution.

A token used to live a fixed DPM_API_TRANSFER_TTL from its opening, so a backup of a large disk
that ran longer died mid-way, and a transfer opened by a deploy client stayed usable after its
execution ended. Now:

- Idle expiry: TransferOpened carries ``renew_seconds``; a use of the token when less than three
  quarters of that is left appends TransferRenewed (expires_at = now + renew_seconds; the rule is
  domain.transfers.renewal, the append transfers.py's). The renewal is in the log, so every
  replica, a restarted imager and the api's name lock (a backup holds its name until its token
  expires) see the same deadline; at most four renewals per idle time.
- A transfer opened for an execution is aborted (TransferAborted) once that execution completes,
  fails or is suspended; its token is then refused with DPM-E167. The imager learns of the end
  from its consumer of the execution events (handlers.execution_ended), after its transfers read
  model has seen the event's position (so no TransferOpened before the end is missed).
"""

from __future__ import annotations

from dpm_imager.adapters.images import still_open
from dpm_imager.domain.transfers import Transfer
from dpm_runtime.eventlog import EventLog
from dpm_runtime.handlers import Ctx
from dpm_schemas import DpmError, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    TransferAborted,
)
from dpm_schemas.ids import stream_id

ENDINGS: dict[type, str] = {ExecutionCompleted: "completed", ExecutionFailed: "failed", ExecutionSuspended: "suspended"}


async def abort(ctx: Ctx, eventlog: EventLog, t: Transfer, reason: str) -> None:
    """Append TransferAborted unless the log has this transfer committed or aborted already; the
    image stream's version guards against a commit racing on another replica (a conflict makes
    the consumer try the event again, and then it finds the commit)."""
    try:
        version = await still_open(eventlog, t)
    except DpmError:  # committed or aborted meanwhile: nothing to close
        return
    event = TransferAborted(transfer_id=t.transfer_id, image_id=t.image_id, image=t.image, reason=reason)
    await ctx.append(stream_id(subjects.IMAGE, t.image_id), [event], expected=version)
