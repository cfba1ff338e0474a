"""OpenTelemetry: tracer set-up and W3C ``traceparent`` carried in event metadata and NATS headers.

Components take a ``Tracer`` as a dependency (no global provider is required), so tests can give
them one backed by an in-memory exporter. The current span travels in contextvars; ``traceparent``
is the only thing that crosses process boundaries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def make_tracer_provider(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider for ``service``; exports over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"dpm-{service}"}))
    if exporter is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None outside any recorded span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def inject(carrier: MutableMapping[str, str]) -> None:
    _PROPAGATOR.inject(carrier)


def context_from(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def context_from_headers(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    if not headers:
        return None
    return _PROPAGATOR.extract(dict(headers))


class TracingMiddleware:
    """A server span per HTTP request, continuing an incoming ``traceparent`` (pure ASGI, no deps)."""

    def __init__(self, app: Any, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or scope["path"] in ("/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = _PROPAGATOR.extract(headers)
        status: dict[str, int] = {}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            started = time.perf_counter()
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                code = status.get("code", 500)
                span.set_attribute("http.response.status_code", code)
                span.set_attribute("dpm.duration_ms", (time.perf_counter() - started) * 1000)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
