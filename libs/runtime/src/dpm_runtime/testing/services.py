"""Run a dpm service inside the test's event loop, against the test stack, until the test ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from opentelemetry.sdk.trace import TracerProvider

from dpm_runtime.service import Service, serve
from dpm_runtime.testing.polling import eventually


@dataclass
class Running:
    service: Service
    url: str
    http: httpx.AsyncClient

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        return self.service.app.state.runtime


@contextlib.asynccontextmanager
async def running(
    service: Service, *, tracer_provider: TracerProvider | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """Serve ``service`` on this loop; ``headers`` (e.g. a bearer token) go with every request of ``.http``."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(service, tracer_provider=tracer_provider or TracerProvider(), stop=stop))
    url = f"http://{service.settings.http_host}:{service.port}"
    # uvicorn closes a connection idle for 5 s (its keep-alive timeout); a request sent on it just then
    # fails with ReadError. The client lets its idle connections go first, so it never reuses one the
    # server may be closing (a flake under load, when a test waits between two calls).
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers, limits=limits) as http:

        async def ready() -> bool:
            if task.done():
                task.result()  # surface the start-up error
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/readyz")).status_code == 200
            return False

        await eventually(ready, timeout=30, what=f"{service.name} ready")
        try:
            yield Running(service, url, http)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
