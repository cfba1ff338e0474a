"""The handler kernel: typed, message-first handlers on a per-service router that declares its consumers.

    router = Router(service="imager")

    @router.handles(ImageDeleted, durable="gc")
    async def image_deleted(e: ImageDeleted, ctx: Ctx, *, collector: Collector) -> None: ...

    # bootstrap.py, the only place that picks implementations:
    consumers = router.bind(collector=collector)      # one ConsumerSpec per durable

A handler takes the event (the log's copy, already of the registered type: no ``assert isinstance``)
and a ``Ctx`` (``context.py``: its transaction, ``append`` with causality, ``after_commit``), then its
dependencies as keyword-only parameters. ``bind`` passes each handler the ones it names, and refuses
at start-up a name some handler needs but nobody bound (DPM-E030) or one bound but taken by no
handler (DPM-E031), so a typo is a start-up error, not a ``TypeError`` on the first event.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.context import ANY, Bound, Ctx, UnitOfWork, unit_of_work
from dpm_runtime.outcome import Poison, Retry
from dpm_schemas import E
from dpm_schemas.base import Event
from dpm_schemas.subjects import durable_name

__all__ = ["ANY", "Ctx", "Poison", "Retry", "Router", "UnitOfWork", "unit_of_work"]

H = TypeVar("H", bound=Callable[..., Awaitable[None]])


@dataclass
class _Route:
    fn: Callable[..., Awaitable[None]]
    actor: str | None
    deps: tuple[str, ...]  # keyword-only parameter names
    required: frozenset[str]  # those without a default


@dataclass
class _Durable:
    handlers: dict[type[Event], _Route] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # ConsumerSpec's max_deliver, ack_wait, ...


class Router:
    """The handlers of one service, grouped by durable consumer (short names; ``bind`` prefixes them)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._durables: dict[str, _Durable] = {}

    def handles(self, *types: type[Event], durable: str, actor: str | None = None) -> Callable[[H], H]:
        """Register the decorated handler for ``types`` on ``durable``; the function is returned as is."""

        def register(fn: H) -> H:
            self.add(fn, *types, durable=durable, actor=actor)
            return fn

        return register

    def add(
        self, fn: Callable[..., Awaitable[None]], *types: type[Event], durable: str, actor: str | None = None
    ) -> None:
        """``handles`` without the decorator, for handlers shared by several services' routers."""
        route = _route(fn, actor)
        table = self._durables.setdefault(durable, _Durable()).handlers
        for cls in types:
            if cls in table:
                taken = table[cls].fn.__qualname__
                raise E.HANDLER_TYPE_TAKEN(service=self.service, durable=durable, type=cls.wire_name, handler=taken)
            table[cls] = route

    def consumer(self, durable: str, **options: Any) -> None:
        """Tune a durable's ``ConsumerSpec`` (``max_deliver``, ``ack_wait``, ``batch_size``, ``backoff``)."""
        self._durables.setdefault(durable, _Durable()).options.update(options)

    def bind(self, **deps: Any) -> list[ConsumerSpec]:
        """One ``ConsumerSpec`` per durable, each handler given the dependencies it names."""
        routes = [route for d in self._durables.values() for route in d.handlers.values()]
        for route in routes:
            if missing := sorted(route.required - deps.keys()):
                handler = f"{route.fn.__module__}.{route.fn.__qualname__}"
                raise E.HANDLER_DEPENDENCY_MISSING(service=self.service, handler=handler, names=", ".join(missing))
        known = {name for route in routes for name in route.deps}
        if unused := sorted(deps.keys() - known):
            raise E.HANDLER_DEPENDENCY_UNUSED(
                service=self.service, names=", ".join(unused), known=", ".join(sorted(known)) or "none"
            )
        return [
            ConsumerSpec(
                durable=durable_name(self.service, name),
                handlers={cls: _bound(route, deps) for cls, route in d.handlers.items()},
                **d.options,
            )
            for name, d in self._durables.items()
        ]


def _bound(route: _Route, deps: dict[str, Any]) -> Bound:
    return Bound(route.fn, {n: deps[n] for n in route.deps if n in deps}, actor=route.actor)


def _route(fn: Callable[..., Awaitable[None]], actor: str | None) -> _Route:
    """Check ``fn`` is ``async def h(e, ctx, *, deps...)`` and note its dependency names."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not inspect.iscoroutinefunction(fn):
        raise E.HANDLER_SIGNATURE(handler=name, reason="it is not an async def")
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 2 or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise E.HANDLER_SIGNATURE(
            handler=name, reason="it must take exactly the event and the ctx, then keyword-only dependencies"
        )
    deps = [p for p in params if p.kind is p.KEYWORD_ONLY]
    required = frozenset(p.name for p in deps if p.default is p.empty)
    return _Route(fn, actor, tuple(p.name for p in deps), required)
