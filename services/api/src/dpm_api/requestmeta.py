"""The metadata of every event the api appends for a request: the caller's conversation, the
request's span and the actor.

A command appended by the api starts the conversation that the scheduler, pxe and the gateway
continue, so its metadata must say which request it came from:

- correlation id: the request's ``X-Correlation-Id`` header when it is a UUID, so a client (the CLI,
  a script, the console) finds the events of its request and all they cause under an id it chose;
  else a new one. A missing or malformed header is ignored, not refused: it is a hint from the
  client, and a command must not fail over it. The id is echoed in the answer's header either way.
- traceparent: the request span's (the runtime's TracingMiddleware opens it, continuing an
  incoming ``traceparent``), so the log ties each event to its trace.
- actor: the authenticated principal's name, which the route already has (``ActorDep``,
  ``AdminDep``, ``PrincipalDep``) and passes on, or the deploy client's ``deploy:<machine>``.

One app-wide dependency (``bind_request``, installed by ``bootstrap.create_app``) reads the header
once per request into a context variable -- request-scoped like OpenTelemetry's current span, which
lives in one too -- and ``command_metadata(actor)`` is how the api builds the metadata of an append.
So no route parses headers and no handler signature grows a parameter for them. Outside a request
(the api's own consumers and tasks) it starts a new conversation, as ``Metadata.new`` does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar

from fastapi import Request, Response

from dpm_runtime.telemetry import current_traceparent
from dpm_schemas import Metadata

HEADER = "X-Correlation-Id"

_correlation: ContextVar[uuid.UUID | None] = ContextVar("dpm_api_correlation", default=None)


def correlation_from(header: str | None) -> uuid.UUID:
    """The correlation id a request asked for, if its header is a UUID; else a new one (pure but
    for the randomness): anything else is ignored, never an error."""
    if header and len(header) <= 64:
        try:
            return uuid.UUID(header.strip())
        except ValueError:
            pass
    return uuid.uuid4()


async def bind_request(request: Request, response: Response) -> AsyncIterator[None]:
    """App-wide dependency: this request's correlation id, for ``command_metadata``, and in the answer."""
    correlation = correlation_from(request.headers.get(HEADER))
    response.headers[HEADER] = str(correlation)
    token = _correlation.set(correlation)
    try:
        yield
    finally:
        _correlation.reset(token)


def command_metadata(actor: str) -> Metadata:
    """The metadata of an event the api appends now on behalf of ``actor``: the request's correlation
    id (a new one outside a request) and the current span's traceparent."""
    correlation = _correlation.get()
    return Metadata(
        correlation_id=correlation if correlation is not None else uuid.uuid4(),
        actor=actor,
        traceparent=current_traceparent(),
    )
