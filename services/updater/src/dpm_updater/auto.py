"""Automatic delivery (seed catalog: auto-update by urgency), on the durable "auto".

- A package registered with urgency **highest** goes at once to every online machine it applies to;
  a machine offline then gets it when it comes back (its MachineCameOnline, or the inventory its
  agent reports on connecting).
- **Notify now** (UpdatesNotifyRequested, from the api) pushes every applicable highest and high
  package to the named (or all) online machines, including one an earlier automatic delivery
  failed on.
- A machine busy with another delivery is left alone: that delivery's end (or its execution's)
  triggers the next look.
- A machine whose agent is not at the server's version gets the agent's own package (``dpm-agent``)
  first and alone, whatever its urgency (``domain.agent_upgrade``); the upgraded agent's hello
  (AgentVersionChanged) triggers the next look. A failed upgrade is not retried by itself: the
  machine stays shown as outdated, and notify-now or a remote update naming dpm-agent upgrades it.

Each (machine, package, revision) goes automatically once (``updater.auto_updates``, and a delivery
id named by what it delivers, so two events racing the read model make one delivery): a failed
install is not retried by itself -- an operator's notify-now, or a new revision, does that. High
urgency comes due at a machine's auto-update time (AutoUpdateTimeSet, HH:MM in its zone): a high
package registered before the latest such time is pushed by the timer round then, or -- the machine
being offline or busy then -- when it next comes online or reports its inventory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from dpm_packages import Urgency, Verdict, assess
from dpm_packages.auto_time import last_due
from dpm_runtime.checkpoint import require_position
from dpm_runtime.eventlog import NO_STREAM, EventLog, StreamConflict
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, subjects
from dpm_schemas.agent_protocol import MAX_ITEMS, InstallItem, InstallWhen
from dpm_schemas.base import Event
from dpm_schemas.events import (
    AgentVersionChanged,
    AutoUpdateEnded,
    ExecutionCompleted,
    ExecutionFailed,
    InventoryReported,
    MachineCameOnline,
    PackageRegistered,
    UpdatesNotifyRequested,
)
from dpm_schemas.ids import stream_id
from dpm_schemas.packages import AGENT_PACKAGE_ID
from dpm_updater import auto_sql, rounds, upgrades
from dpm_updater.deliverer import Deliverer
from dpm_updater.domain import agent_upgrade, delivery
from dpm_updater.domain.delivery import Request
from dpm_updater.orders import Delivery, grant_and_order
from dpm_updater.projections import catalogue_of, inventory_of

log = logging.getLogger(__name__)
router = Router(service="updater")
ACTOR = "updater"
Clock = Callable[[], datetime]
AUTO: Literal["auto-update"] = "auto-update"
LIFETIME = timedelta(hours=6)  # an automatic delivery's token: longer than any download and install
INSTALL_TIMEOUT = 1800
NAMESPACE = uuid.UUID("9a3f1d52-57c4-4c1e-b0a4-8f0c6f9a2d11")
READ_MODELS = (
    "updater.packages",
    "updater.inventories",
    "updater.presence",
    "updater.deliveries",
    "updater.auto_update_times",
)
MachineEvent = (
    MachineCameOnline | AgentVersionChanged | InventoryReported | AutoUpdateEnded | ExecutionCompleted | ExecutionFailed
)
ALWAYS = datetime.max.replace(tzinfo=UTC)  # notify-now: every high-urgency package is due


async def _ready(ctx: Ctx) -> None:
    for name in READ_MODELS:
        await require_position(ctx.conn, name, ctx.position)


@router.handles(PackageRegistered, durable="auto", actor=ACTOR)
async def package_registered(e: PackageRegistered, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    if e.package.urgency is not Urgency.HIGHEST and e.package.id != AGENT_PACKAGE_ID:
        return  # the agent's own package goes at once to every outdated agent, whatever its urgency
    await _ready(ctx)
    for machine_id in await auto_sql.online_machines(ctx.conn):
        await push(ctx, machine_id, deliverer=deliverer, clock=clock)


@router.handles(
    MachineCameOnline, AgentVersionChanged, InventoryReported, AutoUpdateEnded, ExecutionCompleted,
    ExecutionFailed, durable="auto", actor=ACTOR,
)  # fmt: skip
async def machine_heard(e: MachineEvent, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    """The machine came online (or its agent at a new version), reported its inventory, or ended a
    delivery or an execution that kept it busy: whatever is due now goes."""
    await _ready(ctx)
    if isinstance(e, AutoUpdateEnded) and e.ok and await auto_sql.brought_the_agent(ctx.conn, e.delivery_id):
        return  # the agent is restarting into its upgrade: its hello at the new version looks next
    if await auto_sql.online(ctx.conn, e.machine_id):
        await push(ctx, e.machine_id, deliverer=deliverer, clock=clock)


@router.handles(UpdatesNotifyRequested, durable="auto", actor=ACTOR)
async def notify_requested(e: UpdatesNotifyRequested, ctx: Ctx, *, deliverer: Deliverer, clock: Clock) -> None:
    await _ready(ctx)
    online = await auto_sql.online_machines(ctx.conn)
    for machine_id in [m for m in e.machine_ids if m in online] if e.machine_ids else online:
        await push(ctx, machine_id, deliverer=deliverer, clock=clock, notify=ctx.position)


async def auto_time_rounds(rt: Runtime, *, deliverer: Deliverer, clock: Clock, every: float) -> None:
    """The timer task: ``auto_time_round`` every ``every`` seconds until the service stops."""

    async def body(ctx: Ctx) -> None:
        await auto_time_round(ctx, deliverer=deliverer, clock=clock, eventlog=rt.eventlog)

    await rounds.every(rt, every, "auto-update-times", body)


async def auto_time_round(ctx: Ctx, *, deliverer: Deliverer, clock: Clock, eventlog: EventLog) -> int:
    """The timer's look at every online machine with an auto-update time (high urgency comes due at
    it); what a push finds already delivered or under way it leaves alone. Machines looked at."""
    await end_expired(ctx, clock(), eventlog)
    machines = await auto_sql.timed_online_machines(ctx.conn)
    for machine_id in machines:
        await push(ctx, machine_id, deliverer=deliverer, clock=clock)
    return len(machines)


async def end_expired(ctx: Ctx, now: datetime, eventlog: EventLog) -> int:
    """End the automatic deliveries whose agent never sent a final report within their lifetime
    (its token refuses a late one): failed with DPM-E121, so a rollout ring waiting on one moves
    on and the machine can be served again."""
    ended = 0
    for delivery_id, machine_id in await auto_sql.expired_auto_deliveries(ctx.conn, now):
        sid = stream_id(subjects.DELIVERY, delivery_id)
        history = await eventlog.read_stream(sid, conn=ctx.conn)
        if any(isinstance(r.event, AutoUpdateEnded) for r in history):
            continue  # its end is in the log, not yet in the read model
        late = E.AGENT_TIMEOUT(machine_id=machine_id, action="auto-update", timeout=LIFETIME.total_seconds())
        event = AutoUpdateEnded(delivery_id=delivery_id, machine_id=machine_id, ok=False, code=late.code,
                                message=late.message)  # fmt: skip
        try:
            async with ctx.conn.transaction():  # at the version read: another replica's round, or a report, first
                await ctx.append(sid, [event], expected=history[-1].stream_version)
        except StreamConflict:
            continue
        ended += 1
    return ended


def _delivery_id(machine_id: uuid.UUID, items: Sequence[InstallItem], notify: int | None) -> uuid.UUID:
    """Named by what it delivers: two events that would push the same revisions to a machine (its
    inventory and its coming online, a redelivery, a read model a moment behind the last grant) make
    one delivery, since the second append finds the stream. A notify-now is its own delivery."""
    what = ",".join(f"{i.package.id}@{i.package.revision}" for i in items)
    return uuid.uuid5(NAMESPACE, f"{machine_id}:{what}" + (f":notify@{notify}" if notify is not None else ""))


async def push(
    ctx: Ctx, machine_id: uuid.UUID, *, deliverer: Deliverer, clock: Clock, notify: int | None = None
) -> None:
    """Deliver what is due to the machine now, unless it is busy or had it: highest urgency, and high
    urgency registered before its latest auto-update time (every high one for a notify-now, the
    position of its request)."""
    plan = await _due(ctx, machine_id, now=clock(), notify=notify is not None)
    if plan is None:
        return
    await deliver(ctx, machine_id, plan, _delivery_id(machine_id, plan.items, notify), deliverer=deliverer, clock=clock)


async def deliver(
    ctx: Ctx,
    machine_id: uuid.UUID,
    plan: delivery.Plan,
    delivery_id: uuid.UUID,
    *,
    deliverer: Deliverer,
    clock: Clock,
    rollout_id: uuid.UUID | None = None,
) -> bool:
    """Grant and send one automatic delivery (also a rollout ring's); False when it exists already
    (a redelivery, a race) or agents cannot be told where the updater is (logged)."""
    try:
        server = deliverer.agent_url()
    except DpmError as unknown:
        log.warning("automatic delivery to %s not sent: %s %s", machine_id, unknown.code, unknown.message)
        return False
    what = Delivery(delivery_id, machine_id, AUTO, AUTO, plan.items, clock() + LIFETIME, INSTALL_TIMEOUT)
    granted, order = grant_and_order(what, server)
    granted = granted.model_copy(update={"rollout_id": rollout_id})
    try:
        async with ctx.conn.transaction():  # a savepoint: a redelivered event finds the stream
            await ctx.append(stream_id(subjects.DELIVERY, delivery_id), [granted], expected=NO_STREAM)
            await auto_sql.granted(ctx.conn, delivery_id, machine_id)
    except StreamConflict:
        return False
    log.info("automatic delivery %s to %s: %s", delivery_id, machine_id, plan.summary())
    meta = ctx.metadata

    def failed(code: str, message: str) -> Event:
        return AutoUpdateEnded(delivery_id=delivery_id, machine_id=machine_id, ok=False, code=code, message=message)

    ctx.after_commit(lambda: deliverer.send(machine_id, order, meta, failed))
    return True


async def _due(ctx: Ctx, machine_id: uuid.UUID, *, now: datetime, notify: bool) -> delivery.Plan | None:
    """What applies to the machine now and it has not had yet; None when there is nothing, it is
    busy, or its agent has not reported an inventory (its first one triggers another look)."""
    if await auto_sql.busy(ctx.conn, machine_id, now):
        return None
    had = await auto_sql.delivered(ctx.conn, machine_id, failed_too=not notify)
    current = await upgrades.agent_version(ctx.conn, machine_id)
    agent = (await catalogue_of(ctx.conn, [AGENT_PACKAGE_ID])).get(AGENT_PACKAGE_ID)
    upgrade = agent_upgrade.needed(current, agent)
    if upgrade and current and (AGENT_PACKAGE_ID, upgrade.package.revision) not in had:
        return agent_upgrade.plan(upgrade, current)  # had and failed: the old agent still gets the rest
    inventory = await inventory_of(ctx.conn, machine_id)
    if inventory is None:
        return None
    high_before = ALWAYS if notify else await _last_auto_time(ctx, machine_id, now)
    catalogue = {
        pid: s
        for pid, s in (await auto_sql.catalogue_due(ctx.conn, high_before)).items()
        if (pid, s.package.revision) not in had and pid != AGENT_PACKAGE_ID  # judged by version above
    }
    if not catalogue:
        return None
    applicable = [a.package_id for a in assess(inventory, [c.package for c in catalogue.values()])
                  if a.verdict is Verdict.APPLICABLE]  # fmt: skip
    exclusive = [p for p in applicable if catalogue[p].package.execution.exclusive]
    wanted = exclusive[:1] or applicable  # an exclusive package goes alone; the rest follow with the next look
    if not wanted:
        return None
    plan = delivery.plan(Request(tuple(sorted(wanted)), InstallWhen.NOW, None), catalogue, inventory)
    items = plan.items[:MAX_ITEMS]  # an order's limit; the rest go with the next look
    return delivery.Plan(items, plan.skipped) if items else None


async def _last_auto_time(ctx: Ctx, machine_id: uuid.UUID, now: datetime) -> datetime | None:
    timed = await auto_sql.auto_time(ctx.conn, machine_id)
    if timed is None:
        return None
    try:
        return last_due(timed[0], timed[1], now)
    except DpmError:  # a zone this host's tzdata lacks: high urgency waits, as with no time
        log.warning("machine %s: auto-update time zone %r unknown here", machine_id, timed[1])
        return None
