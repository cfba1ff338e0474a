"""The updater's handlers, message first: it implements the remote-update step.

- ``step_requested`` (durable "steps"): the scheduler asked a machine for a step. For a remote
  update, judge the named packages against the machine's inventory (``domain.delivery``), record a
  delivery with a fresh token's SHA-256 and a progress report in the handler's transaction, and
  after the commit send the agent its install order (``Deliverer``). A step it cannot start fails
  at once with its code instead of at the no-response timeout.

Its reports go to ``delivery-<execution>``, the updater's own stream (one writer per category); the
scheduler handles a StepReported from any stream. A redelivered StepRequested finds the stream and
does nothing: the first delivery's order was sent, or its loss is the no-response watchdog's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from dpm_runtime.checkpoint import require_position
from dpm_runtime.eventlog import NO_STREAM, StreamConflict
from dpm_runtime.handlers import Ctx, Router
from dpm_schemas import DpmError, E, subjects
from dpm_schemas.agent_protocol import InstallOrder, InstallWhen, LaterReport
from dpm_schemas.base import Event
from dpm_schemas.events import PackageDeliveryGranted, StepReported, StepRequested
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import ScenarioKind
from dpm_schemas.ids import stream_id
from dpm_updater.deliverer import Deliverer
from dpm_updater.domain import delivery
from dpm_updater.orders import Delivery, grant_and_order
from dpm_updater.projections import catalogue_of, inventory_of

log = logging.getLogger(__name__)
router = Router(service="updater")
ACTOR = "updater"
Clock = Callable[[], datetime]
LATER = uuid.UUID("3c8e5a51-7a0f-4f0e-8d62-1b9d4f7e2a63")  # deferred installs' ids, from their step's
READ_MODELS = ("updater.packages", "updater.inventories")  # what a step is judged on (full names)


def delivery_stream(execution_id: uuid.UUID) -> str:
    return stream_id(subjects.DELIVERY, execution_id)


@router.handles(StepRequested, durable="steps", actor=ACTOR)
async def step_requested(e: StepRequested, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    if e.spec.kind is not ScenarioKind.REMOTE_UPDATE:
        return
    for name in READ_MODELS:  # judged on the catalogue and inventory as of the request
        await require_position(ctx.conn, name, ctx.position)
    try:
        plan = await _plan(e, ctx)
        server = deliverer.agent_url() if plan.items else ""
    except DpmError as refusal:
        await _report(ctx, e, StepStatus.FAILED, refusal.message, code=refusal.code)
        return
    if not plan.items:
        await _report(ctx, e, StepStatus.COMPLETED, plan.summary())
        return
    request = delivery.request_of(e.spec)
    granted, order = grant_and_order(
        Delivery(
            delivery_id=e.execution_id,
            machine_id=e.machine_id,
            step=e.step,
            purpose="remote-update",
            items=plan.items,
            expires_at=clock() + timedelta(seconds=e.spec.timeout_seconds),
            timeout_seconds=e.spec.timeout_seconds,
            when=request.when,
            at=request.at,
        ),
        server,
    )
    events: list[Event] = [granted, _step_report(e, StepStatus.PROGRESS, plan.summary(), percent=0)]
    if request.when is not InstallWhen.NOW:
        later, order = _later(e, granted, order, request.at, clock)
        events.append(later)
    if not await _first(ctx, e, events):
        return
    meta, failed = ctx.metadata, functools.partial(_failed, e)
    ctx.after_commit(lambda: deliverer.send(e.machine_id, order, meta, failed))


def _failed(e: StepRequested, code: str, message: str) -> Event:
    """The step's end when its order could not be handed over (the deliverer's code and message)."""
    return _step_report(e, StepStatus.FAILED, message, code=code)


def _later(
    e: StepRequested, granted: PackageDeliveryGranted, order: InstallOrder, at: datetime | None, clock: Clock
) -> tuple[PackageDeliveryGranted, InstallOrder]:
    """A next-boot or at-time step ends once the agent fetched the files and queued the install; the
    install is a delivery of its own (purpose "deferred"), with a token that lasts until a day after
    its time (next boot: 30 days), through which it reports when it runs."""
    token = secrets.token_urlsafe(32)
    until = (at if at is not None else clock() + timedelta(days=29)) + timedelta(days=1)
    changes = {"execution_id": uuid.uuid5(LATER, str(e.execution_id)), "purpose": "deferred", "expires_at": until,
               "token_sha256": hashlib.sha256(token.encode()).hexdigest()}  # fmt: skip
    later = granted.model_copy(update=changes)
    report_as = LaterReport(execution_id=later.execution_id, token=token)
    return later, order.model_copy(update={"later": report_as})


async def _plan(e: StepRequested, ctx: Ctx) -> delivery.Plan:
    if e.spec.multicast is not None:
        raise E.KIND_NOT_AVAILABLE(kind="remote-update", reason="multicast delivery is not built yet")
    request = delivery.request_of(e.spec)
    inventory = await inventory_of(ctx.conn, e.machine_id)
    if inventory is None:
        raise E.PACKAGE_INVENTORY_UNKNOWN(machine=str(e.machine_id))
    return delivery.plan(request, await catalogue_of(ctx.conn, request.package_ids), inventory)


def _step_report(e: StepRequested, status: StepStatus, message: str, **extra: object) -> StepReported:
    return StepReported(execution_id=e.execution_id, step=e.step, status=status, message=message[:1000], **extra)


async def _report(ctx: Ctx, e: StepRequested, status: StepStatus, message: str, *, code: str | None = None) -> None:
    with_code = {"code": code} if code else {}
    await _first(ctx, e, [_step_report(e, status, message, **with_code)])


async def _first(ctx: Ctx, e: StepRequested, events: list[Event]) -> bool:
    """Start the execution's delivery stream with ``events``; False if a delivery of the same
    request did (a savepoint, so the handler's transaction survives the conflict)."""
    try:
        async with ctx.conn.transaction():
            await ctx.append(delivery_stream(e.execution_id), events, expected=NO_STREAM)
    except StreamConflict:
        log.info("remote update of execution %s already answered", e.execution_id)
        return False
    return True
