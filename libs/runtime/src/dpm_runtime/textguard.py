"""Control characters refused at the HTTP edge, before any route sees them.

Event fields refuse control characters through ``dpm_schemas.text``, but a route may pass a path
segment, a query value or a body field to SQL *before* it builds an event (a lookup by name, a
filter, the login throttle). PostgreSQL refuses NUL in ``text``, so such a request answered 500.
One middleware for every service, instead of a check per route:

- the decoded path and every query key and value: no control characters at all (DPM-E005);
- JSON bodies: no escaped NUL (``\\u0000``) anywhere. Raw control bytes are already invalid JSON,
  and other escaped controls are harmless to SQL and refused where they would be stored.

The body is inspected as the app reads it (routing has picked the endpoint by then, so the
``BodyLimit`` outside this middleware applies the route's own limit); only JSON is held, and
FastAPI holds a JSON body whole to parse it anyway.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse

from dpm_schemas import E, text
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)

# ``\u0000`` not itself escaped: an even run of backslashes (possibly none) before the one that starts it.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def refusal_in_url(scope: dict[str, Any]) -> DpmError | None:
    """The error for a control character in the path or the query, if there is one."""
    if text.control_character(scope.get("path", "")):
        return E.TEXT_INVALID(field="path", reason="contains a control character")
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if text.control_character(key) or text.control_character(value):
            return E.TEXT_INVALID(field=f"query {key[:64]!r}", reason="contains a control character")
    return None


def has_escaped_nul(body: bytes) -> bool:
    return _ESCAPED_NUL.search(body) is not None


class TextGuard:
    """Pure ASGI: answers 422 DPM-E005 for a control character in the URL or a NUL in a JSON body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = refusal_in_url(scope)
        if refused is not None:
            log.warning("refused %s: %s", scope.get("method"), refused.message)
            await _send_error(send, refused)
            return
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if not content_type.lower().startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        await self._json(scope, receive, send)

    async def _json(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        state = {"refused": False, "started": False, "read": False}

        async def checked_receive() -> dict[str, Any]:
            if state["refused"] or state["read"]:
                return {"type": "http.disconnect"}
            parts: list[bytes] = []
            while True:
                message: dict[str, Any] = await receive()
                if message["type"] != "http.request":
                    return message
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            state["read"] = True
            body = b"".join(parts)
            if not has_escaped_nul(body):
                return {"type": "http.request", "body": body, "more_body": False}
            state["refused"] = True
            if not state["started"]:
                await _send_error(send, E.TEXT_INVALID(field="body", reason="contains an escaped NUL (\\u0000)"))
            return {"type": "http.disconnect"}

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["refused"]:
                return  # the 422 went out instead of whatever the app answers to the cut-off body
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, checked_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise


async def _send_error(send: Callable[..., Any], exc: DpmError) -> None:
    response = JSONResponse({"error": exc.to_dict()}, status_code=exc.error.http_status)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
