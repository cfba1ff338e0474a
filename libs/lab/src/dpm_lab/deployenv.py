"""The simulated deploy environment's reports: retried like a real deploy client's.

A report that meets a connection error or a 5xx (an api restarting, PostgreSQL away, a 503 with
``Retry-After``) is sent again with backoff until its budget is spent; dpm answers repeats of one
report harmlessly. A 4xx is the api's "no" and is not repeated. Without retries a lab machine lost
its report to a one-second api restart, and the execution then waited for a timeout that was the
lab's fault, not dpm's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def retry_delay(attempt: int, *, first: float = 0.5, cap: float = 5.0, retry_after: str | None = None) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): doubling from ``first`` up to ``cap``; a
    server's ``Retry-After`` (seconds) is honoured up to the cap."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), cap)
    return min(first * 2.0 ** (attempt - 1), cap)


async def report(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    body: dict[str, object],
    *,
    budget: float = 60.0,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """POST one step report; retried on connection errors and 5xx for up to ``budget`` seconds."""
    deadline, attempt = clock() + budget, 0
    while True:
        attempt += 1
        retry_after: str | None = None
        try:
            answer = await http.post(url, headers=headers, json=body)
            if answer.status_code < 500:
                answer.raise_for_status()
                return answer
            retry_after, failure = answer.headers.get("Retry-After"), f"HTTP {answer.status_code}"
        except httpx.TransportError as exc:
            failure = repr(exc)
        delay = retry_delay(attempt, retry_after=retry_after)
        if clock() + delay > deadline:
            raise TimeoutError(f"step report not accepted within {budget:.0f} s: {failure}")
        log.info("step report failed (%s); attempt %d, retrying in %.1f s", failure, attempt, delay)
        await sleep(delay)
