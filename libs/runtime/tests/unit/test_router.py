"""The handler kernel's router and metadata derivation (pure: no NATS, no PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from dpm_runtime.context import Bound, derive_metadata
from dpm_runtime.handlers import Ctx, Router
from dpm_schemas import Metadata, RecordedEvent
from dpm_schemas.errors import DpmError
from dpm_schemas.events import MachineBooted, MachineRegistered, Probe


class Store:
    pass


def make_router() -> Router:
    router = Router(service="svc")

    @router.handles(Probe, durable="probes")
    async def probe(e: Probe, ctx: Ctx, *, store: Store, limit: int) -> None: ...

    @router.handles(MachineRegistered, MachineBooted, durable="machines", actor="svc")
    async def machine(
        e: MachineRegistered | MachineBooted, ctx: Ctx, *, store: Store, verbose: bool = False
    ) -> None: ...

    return router


def test_bind_gives_each_handler_the_dependencies_it_names_and_one_spec_per_durable() -> None:
    store = Store()
    specs = {s.durable: s for s in make_router().bind(store=store, limit=3)}
    assert sorted(specs) == ["svc-machines", "svc-probes"]
    probe = specs["svc-probes"].handlers[Probe]
    assert isinstance(probe, Bound) and probe.deps == {"store": store, "limit": 3} and probe.actor is None
    machine = specs["svc-machines"].handlers[MachineBooted]
    assert isinstance(machine, Bound) and machine.deps == {"store": store} and machine.actor == "svc"
    assert specs["svc-machines"].filter_subjects == ["dpm.evt.*.MachineBooted", "dpm.evt.*.MachineRegistered"]


def test_bind_refuses_a_missing_dependency_at_bind_time() -> None:
    with pytest.raises(DpmError) as err:
        make_router().bind(store=Store())
    assert err.value.code == "DPM-E030" and "limit" in err.value.message and "probe" in err.value.message


def test_bind_refuses_a_dependency_no_handler_takes() -> None:
    with pytest.raises(DpmError) as err:
        make_router().bind(store=Store(), limit=1, stroe=Store())
    assert err.value.code == "DPM-E031" and "stroe" in err.value.message and "store" in err.value.message


def test_an_optional_dependency_may_be_bound_or_not() -> None:
    (machines, _) = sorted(make_router().bind(store=Store(), limit=1, verbose=True), key=lambda s: s.durable)
    handler = machines.handlers[MachineRegistered]
    assert isinstance(handler, Bound) and handler.deps["verbose"] is True


def not_async(e: Probe, ctx: Ctx) -> None: ...


async def positional(e: Probe, ctx: Ctx, store: Store) -> None: ...


async def variadic(e: Probe, ctx: Ctx, **deps: object) -> None: ...


async def no_ctx(e: Probe) -> None: ...


@pytest.mark.parametrize("fn", [not_async, positional, variadic, no_ctx])
def test_a_handler_of_the_wrong_shape_is_refused_at_registration(fn: object) -> None:
    with pytest.raises(DpmError) as err:
        Router("svc").add(fn, Probe, durable="x")  # type: ignore[arg-type]
    assert err.value.code == "DPM-E032" and fn.__name__ in err.value.message  # type: ignore[attr-defined]


def test_one_type_has_one_handler_per_durable() -> None:
    router = make_router()

    async def again(e: Probe, ctx: Ctx) -> None: ...

    with pytest.raises(DpmError) as err:
        router.add(again, Probe, durable="probes")
    assert err.value.code == "DPM-E033" and "Probe" in err.value.message
    router.add(again, Probe, durable="other")  # another durable may


def test_consumer_options_reach_the_spec() -> None:
    router = make_router()
    router.consumer("probes", max_deliver=3, ack_wait=5.0)
    spec = next(s for s in router.bind(store=Store(), limit=1) if s.durable == "svc-probes")
    assert (spec.max_deliver, spec.ack_wait) == (3, 5.0)


CAUSE_META = Metadata(
    correlation_id=uuid.uuid4(),
    causation_id=uuid.uuid4(),
    actor="alice",
    traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
)
CAUSE = RecordedEvent(uuid.uuid4(), "Probe", 1, "test-x", 3, 42, datetime.now(UTC), CAUSE_META, Probe(writer=0, seq=1))


def test_a_reaction_joins_the_conversation_of_its_cause() -> None:
    meta = derive_metadata(CAUSE)
    assert meta.correlation_id == CAUSE_META.correlation_id
    assert meta.causation_id == CAUSE.event_id  # the event handled, not its own cause
    assert (meta.actor, meta.traceparent) == ("alice", CAUSE_META.traceparent)


def test_the_handlers_span_and_actor_win_over_the_causes() -> None:
    span = "00-" + "a" * 32 + "-" + "c" * 16 + "-01"
    meta = derive_metadata(CAUSE, actor="scheduler", traceparent=span)
    assert (meta.actor, meta.traceparent, meta.causation_id) == ("scheduler", span, CAUSE.event_id)


def test_a_timer_round_continues_the_stored_metadata() -> None:
    meta = derive_metadata(CAUSE_META)
    assert meta == CAUSE_META
