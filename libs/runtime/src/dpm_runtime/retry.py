"""Named retry policies (tenacity), defined once. Only connection-level failures are retried here;
message-level retries belong to JetStream redelivery, and concurrency conflicts are never retried."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

T = TypeVar("T")


def _log_wait(logger: logging.Logger, what: str, target: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "waiting for %s at %s: %s; retry %d in %.1f s",
            what,
            target,
            exc,
            state.attempt_number,
            wait,
            extra={"dependency": what, "target": target, "attempt": state.attempt_number},
        )

    return before_sleep


async def wait_for_dependency(
    connect: Callable[[], Awaitable[T]],
    *,
    what: str,
    target: str,
    logger: logging.Logger,
    on_failure: Callable[[BaseException], None] | None = None,
    max_wait: float = 5.0,
) -> T:
    """Call ``connect`` until it succeeds, logging why it waits; forever (the caller can cancel)."""

    def record(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_failure is not None and exc is not None:
            on_failure(exc)
        _log_wait(logger, what, target)(state)

    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=max_wait),
        retry=retry_if_exception_type(Exception),
        before_sleep=record,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await connect()
    raise AssertionError("unreachable")
