"""The updater's handlers, message first: it implements the remote-update step.

- ``step_requested`` (durable "steps"): the scheduler asked a machine for a step. For a remote
  update, judge the named packages against the machine's inventory (``domain.delivery``), record a
  delivery with a fresh token's SHA-256 and a progress report in the handler's transaction, and
  after the commit send the agent its install order (``Deliverer``). A step it cannot start fails
  at once with its code instead of at the no-response timeout. A machine whose agent is not at the
  server's version gets the agent's own package first, and the step is held until the upgraded
  agent says hello (``agent_heard``, ``upgrades``, ``domain.agent_upgrade``).

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
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, StreamConflict
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, subjects
from dpm_schemas.agent_protocol import InstallOrder, InstallWhen, LaterReport
from dpm_schemas.base import Event
from dpm_schemas.events import (
    AgentVersionChanged,
    AutoUpdateEnded,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    MachineCameOnline,
    PackageDeliveryGranted,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import ScenarioKind
from dpm_schemas.ids import stream_id
from dpm_schemas.packages import AGENT_PACKAGE_ID
from dpm_schemas.version import DPM_VERSION
from dpm_updater import rounds, upgrades
from dpm_updater.deliverer import Deliverer
from dpm_updater.domain import agent_upgrade, delivery
from dpm_updater.domain.agent_upgrade import Next, Verdict, Wait
from dpm_updater.orders import Delivery, grant_and_order
from dpm_updater.projections import catalogue_of, inventory_of

log = logging.getLogger(__name__)
router = Router(service="updater")
ACTOR = "updater"
Clock = Callable[[], datetime]
LATER = uuid.UUID("3c8e5a51-7a0f-4f0e-8d62-1b9d4f7e2a63")  # deferred installs' ids, from their step's
AgentEvent = AgentVersionChanged | MachineCameOnline | AutoUpdateEnded
ExecutionEnded = ExecutionCompleted | ExecutionFailed | ExecutionSuspended
READ_MODELS = ("updater.packages", "updater.inventories", "updater.presence")  # what a step is judged on


def delivery_stream(execution_id: uuid.UUID) -> str:
    return stream_id(subjects.DELIVERY, execution_id)


@router.handles(StepRequested, durable="steps", actor=ACTOR)
async def step_requested(e: StepRequested, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    if e.spec.kind is not ScenarioKind.REMOTE_UPDATE:
        return
    for name in READ_MODELS:  # judged on the catalogue, inventory and agent version as of the request
        await require_position(ctx.conn, name, ctx.position)
    if not await _upgrade_first(e, ctx, deliverer=deliverer, clock=clock):
        await _start(e, ctx, deliverer=deliverer, clock=clock)


@router.handles(AgentVersionChanged, MachineCameOnline, AutoUpdateEnded, durable="steps", actor=ACTOR)
async def agent_heard(e: AgentEvent, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    """A machine's agent said hello, or an agent upgrade ended: the steps held for that upgrade go
    on (the agent is at the server's version) or fail with the upgrade's code."""
    if isinstance(e, AutoUpdateEnded):
        one = await upgrades.wait_for_upgrade(ctx.conn, e.delivery_id)
        held = [one] if one else []
    else:
        held = await upgrades.waits_of(ctx.conn, e.machine_id)
    for wait, request in held:
        if isinstance(e, AutoUpdateEnded):
            verdict = agent_upgrade.on_install(wait, e.ok, e.code, e.message)
            if verdict.next is Next.WAIT:
                await upgrades.installed(ctx.conn, wait.execution_id, clock())
        else:
            verdict = agent_upgrade.on_hello(wait, e.agent_version, changed=isinstance(e, AgentVersionChanged))
        if verdict.next is Next.RESUME:  # the step goes on as of now: the new agent's inventory may follow
            for name in READ_MODELS:
                await require_position(ctx.conn, name, ctx.position)
        await _settle(ctx, wait, request, verdict, deliverer=deliverer, clock=clock)


@router.handles(ExecutionCompleted, ExecutionFailed, ExecutionSuspended, durable="steps", actor=ACTOR)
async def execution_ended(e: ExecutionEnded, ctx: Ctx) -> None:
    """An execution that ended (its watchdog, a cancel, a suspend) while its step was held for an
    agent upgrade: nothing of it goes on when the agent comes back."""
    await upgrades.take(ctx.conn, e.execution_id)


async def held_rounds(rt: Runtime, *, deliverer: Deliverer, clock: Clock, grace: float) -> None:
    """The timer task: ``held_round`` a few times per ``grace`` until the service stops."""
    span = timedelta(seconds=grace)

    async def body(ctx: Ctx) -> None:
        await held_round(ctx, deliverer=deliverer, clock=clock, grace=span)

    await rounds.every(rt, min(5.0, grace / 4), "held-steps", body)


async def held_round(ctx: Ctx, *, deliverer: Deliverer, clock: Clock, grace: timedelta) -> int:
    """The timer's look at every held step (``agent_upgrade.on_tick``); how many were settled."""
    settled = 0
    for wait, request in await upgrades.every_wait(ctx.conn):
        version = await upgrades.agent_version(ctx.conn, wait.machine_id)
        verdict = agent_upgrade.on_tick(wait, version, clock(), grace)
        settled += await _settle(ctx, wait, request, verdict, deliverer=deliverer, clock=clock)
    return settled


async def _settle(
    ctx: Ctx, wait: Wait, request: StepRequested, verdict: Verdict, *, deliverer: Deliverer, clock: Clock
) -> bool:
    """Take the held step and go on with it, or fail it with the verdict's error; False: it waits."""
    if verdict.next is Next.WAIT:
        return False
    await upgrades.take(ctx.conn, wait.execution_id)
    if verdict.error is not None:
        await _report(ctx, request, StepStatus.FAILED, verdict.error.message, code=verdict.error.code,
                      expected=ANY_VERSION)  # fmt: skip
    else:
        await _start(request, ctx, deliverer=deliverer, clock=clock, expected=ANY_VERSION)
    return True


async def _upgrade_first(e: StepRequested, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> bool:
    """If the machine's agent is not at the server's version and the agent's package is registered,
    deliver that first and hold the step (``upgrades``); False when the step goes on now (a step
    naming the agent's package is the upgrade itself; a step it cannot start fails as usual)."""
    try:
        request = delivery.request_of(e.spec)
        server = deliverer.agent_url()
    except DpmError:
        return False
    if AGENT_PACKAGE_ID in request.package_ids or e.spec.multicast is not None:
        return False
    current = await upgrades.agent_version(ctx.conn, e.machine_id)
    agent = (await catalogue_of(ctx.conn, [AGENT_PACKAGE_ID])).get(AGENT_PACKAGE_ID)
    upgrade = agent_upgrade.needed(current, agent)
    if upgrade is None or current is None:
        return False
    plan = agent_upgrade.plan(upgrade, current)
    what = Delivery(agent_upgrade.upgrade_id(e.execution_id), e.machine_id, "auto-update", "auto-update", plan.items,
                    clock() + timedelta(seconds=e.spec.timeout_seconds), e.spec.timeout_seconds)  # fmt: skip
    message = f"upgrading the agent from {current} to {DPM_VERSION} first"
    if not await _first(ctx, e, [_step_report(e, StepStatus.PROGRESS, message, percent=0)]):
        return True
    order = await upgrades.hold(ctx, e, what, current, server)
    meta = ctx.metadata

    def failed(code: str, message: str) -> Event:
        return AutoUpdateEnded(delivery_id=what.delivery_id, machine_id=e.machine_id, ok=False, code=code,
                               message=message)  # fmt: skip

    ctx.after_commit(lambda: deliverer.send(e.machine_id, order, meta, failed))
    return True


async def _start(
    e: StepRequested, ctx: Ctx, *, deliverer: Deliverer, clock: Clock, expected: int | None = NO_STREAM
) -> None:
    """Judge the step's packages and send the order (or end the step at once: nothing to do, refused)."""
    try:
        plan = await _plan(e, ctx)
        server = deliverer.agent_url() if plan.items else ""
    except DpmError as refusal:
        await _report(ctx, e, StepStatus.FAILED, refusal.message, code=refusal.code, expected=expected)
        return
    if not plan.items:
        await _report(ctx, e, StepStatus.COMPLETED, plan.summary(), expected=expected)
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
    if not await _first(ctx, e, events, expected=expected):
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


async def _report(
    ctx: Ctx,
    e: StepRequested,
    status: StepStatus,
    message: str,
    *,
    code: str | None = None,
    expected: int | None = NO_STREAM,
) -> None:
    with_code = {"code": code} if code else {}
    await _first(ctx, e, [_step_report(e, status, message, **with_code)], expected=expected)


async def _first(ctx: Ctx, e: StepRequested, events: list[Event], *, expected: int | None = NO_STREAM) -> bool:
    """Start the execution's delivery stream with ``events``; False if a delivery of the same
    request did (a savepoint, so the handler's transaction survives the conflict). A held step
    going on appends at any version: taking its wait row is what makes that happen once."""
    try:
        async with ctx.conn.transaction():
            await ctx.append(delivery_stream(e.execution_id), events, expected=expected)
    except StreamConflict:
        log.info("remote update of execution %s already answered", e.execution_id)
        return False
    return True
