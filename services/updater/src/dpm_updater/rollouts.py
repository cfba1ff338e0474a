"""Staged rollouts, run by the updater on the durable "rollouts" (``domain.rollouts`` decides).

- RolloutStarted: deliver ring 0 -- to each of its machines that is online and that the package
  applies to (its inventory judged as for any delivery); the others are skipped and counted.
- AutoUpdateEnded of a rollout's delivery: once every delivery of the ring under way ended, the next
  ring starts, or the rollout completes, or it halts when the ring's failure rate passed the limit.
  A ring with nobody to deliver to passes at once.

The ring events go to ``ring-<rollout>`` at the version the decision read, so two replicas (or a
redelivery) deciding on the same end append once. Deliveries are automatic ones (``auto.deliver``):
their agents' reports end them, and each counts in the machine's update history.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from dpm_runtime.checkpoint import require_position
from dpm_runtime.eventlog import NO_STREAM, EventLog, StreamConflict
from dpm_runtime.handlers import Ctx, Retry, Router
from dpm_schemas import DpmError, E, subjects
from dpm_schemas.agent_protocol import InstallWhen
from dpm_schemas.base import Event
from dpm_schemas.events import AutoUpdateEnded, RolloutCompleted, RolloutHalted, RolloutRingStarted, RolloutStarted
from dpm_schemas.ids import stream_id
from dpm_updater import auto, auto_sql
from dpm_updater.deliverer import Deliverer
from dpm_updater.domain import delivery
from dpm_updater.domain.rollouts import Next, after_ring, halt_message
from dpm_updater.projections import catalogue_of, inventory_of
from dpm_updater.rollout_models import rollout_of_delivery, rollout_state

router = Router(service="updater")
ACTOR = "updater"
Clock = Callable[[], datetime]
NAMESPACE = uuid.UUID("5f0b8c3e-2d7a-4e61-9f1c-7a4b0d2e6c90")
READ_MODELS = ("updater.rollouts", "updater.packages", "updater.inventories", "updater.presence")


@router.handles(RolloutStarted, durable="rollouts", actor=ACTOR)
async def rollout_started(
    e: RolloutStarted, ctx: Ctx, *, deliverer: Deliverer, clock: Clock, eventlog: EventLog
) -> None:
    for name in READ_MODELS:
        await require_position(ctx.conn, name, ctx.position)
    if (await _last(ctx, eventlog, e.rollout_id))[0] == NO_STREAM:  # else: a redelivery, already started
        await start_ring(ctx, e, 0, version=NO_STREAM, deliverer=deliverer, clock=clock)


@router.handles(AutoUpdateEnded, durable="rollouts", actor=ACTOR)
async def delivery_ended(
    e: AutoUpdateEnded, ctx: Ctx, *, deliverer: Deliverer, clock: Clock, eventlog: EventLog
) -> None:
    await require_position(ctx.conn, READ_MODELS[0], ctx.position)
    rollout_id = await rollout_of_delivery(ctx.conn, e.delivery_id)
    if rollout_id is None:
        return
    state = await rollout_state(ctx.conn, rollout_id)
    if state is None or state.state != "running" or None in state.outcomes:
        return  # over already, or the ring still has deliveries under way
    version, last = await _last(ctx, eventlog, rollout_id)
    if not (isinstance(last, RolloutRingStarted) and last.ring == state.ring):
        # the read model is behind the ring stream (another end started the next ring a moment ago):
        # judge again once it caught up, rather than decide this ring a second time
        raise Retry(f"rollout {rollout_id}: read model at ring {state.ring}, the stream further", delay=0.5)
    started = state.started
    end = after_ring([bool(ok) for ok in state.outcomes], started.max_failure_rate, state.ring, len(started.rings))
    if end.after is Next.RING:
        await start_ring(ctx, started, state.ring + 1, version=version, deliverer=deliverer, clock=clock)
        return
    done: Event = (
        RolloutHalted(rollout_id=rollout_id, ring=state.ring, failed=end.failed, delivered=end.delivered,
                      message=halt_message(started.ring_names[state.ring], end, started.max_failure_rate))
        if end.after is Next.HALT
        else RolloutCompleted(rollout_id=rollout_id, failed=state.failed_total + end.failed,
                              delivered=state.delivered_total + end.delivered)
    )  # fmt: skip
    await _append(ctx, rollout_id, [done], version)


async def start_ring(
    ctx: Ctx, e: RolloutStarted, ring: int, *, version: int, deliverer: Deliverer, clock: Clock
) -> None:
    """Deliver ring ``ring`` and record it; a ring nobody needs is followed by the next at once. A
    rollout that cannot go on -- the package gone or at another revision than the canary had, no
    address for agents to fetch from -- halts with the code that says why."""
    while True:
        if (why := await _cannot_go_on(ctx, e, deliverer)) is not None:
            halted = RolloutHalted(rollout_id=e.rollout_id, ring=ring, failed=0, delivered=0, message=why[:1000])
            await _append(ctx, e.rollout_id, [halted], version)
            return
        sent, skipped = await _deliver_ring(ctx, e, ring, deliverer=deliverer, clock=clock)
        message = f"{e.ring_names[ring]}: {len(sent)} delivered, {skipped} skipped (offline, or not needed)"
        started = RolloutRingStarted(rollout_id=e.rollout_id, ring=ring, delivered=tuple(sent), skipped=skipped,
                                     message=message)  # fmt: skip
        if not await _append(ctx, e.rollout_id, [started], version):
            return
        version += 1
        if sent:
            return
        if ring + 1 == len(e.rings):
            await _append(ctx, e.rollout_id, [RolloutCompleted(rollout_id=e.rollout_id)], version)
            return
        ring += 1


async def _cannot_go_on(ctx: Ctx, e: RolloutStarted, deliverer: Deliverer) -> str | None:
    try:
        deliverer.agent_url()
    except DpmError as unknown:
        return f"{unknown.code}: {unknown.message}"
    current = (await catalogue_of(ctx.conn, [e.package_id])).get(e.package_id)
    if current is None:
        return f"{E.PACKAGE_NOT_FOUND.code}: package {e.package_id!r} was removed during the rollout"
    if current.package.revision != e.revision:
        err = E.ROLLOUT_REVISION_CHANGED(package=e.package_id, revision=e.revision, now=current.package.revision)
        return f"{err.code}: {err.message}"
    return None


async def _deliver_ring(
    ctx: Ctx, e: RolloutStarted, ring: int, *, deliverer: Deliverer, clock: Clock
) -> tuple[list[uuid.UUID], int]:
    catalogue = await catalogue_of(ctx.conn, [e.package_id])
    online = set(await auto_sql.online_machines(ctx.conn))
    sent: list[uuid.UUID] = []
    for machine_id in e.rings[ring]:
        inventory = await inventory_of(ctx.conn, machine_id) if machine_id in online else None
        if inventory is None or e.package_id not in catalogue:
            continue
        plan = delivery.plan(delivery.Request((e.package_id,), InstallWhen.NOW, None), catalogue, inventory)
        delivery_id = uuid.uuid5(NAMESPACE, f"{e.rollout_id}:{machine_id}")
        if plan.items and await auto.deliver(ctx, machine_id, plan, delivery_id, deliverer=deliverer, clock=clock,
                                             rollout_id=e.rollout_id):  # fmt: skip
            sent.append(machine_id)
    return sent, len(e.rings[ring]) - len(sent)


async def _last(ctx: Ctx, eventlog: EventLog, rollout_id: uuid.UUID) -> tuple[int, Event | None]:
    """The ring stream's version and last event (what the next append must follow)."""
    events = await eventlog.read_stream(stream_id(subjects.RING, rollout_id), conn=ctx.conn)
    return (events[-1].stream_version, events[-1].event) if events else (NO_STREAM, None)


async def _append(ctx: Ctx, rollout_id: uuid.UUID, events: list[Event], version: int) -> bool:
    try:
        async with ctx.conn.transaction():  # a savepoint: another decision on the same end came first
            await ctx.append(stream_id(subjects.RING, rollout_id), events, expected=version)
    except StreamConflict:
        return False
    return True
