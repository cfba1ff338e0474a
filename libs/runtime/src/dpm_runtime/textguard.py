"""Control characters refused at the HTTP edge, before any route sees them.

Event fields refuse control characters through ``dpm_schemas.text``, but a route may pass a path
segment, a query value or a body field to SQL *before* it builds an event (a lookup by name, a
filter, the login throttle). PostgreSQL refuses NUL in ``text``, so such a request answered 500.
One middleware for every service, instead of a check per route:

- the decoded path and every query key and value: no control characters at all (DPM-E005);
- bodies: no escaped NUL (``\\u0000``) and no escaped lone surrogate (``\\ud800``) anywhere. Raw control
  bytes are already invalid JSON and raw lone surrogates invalid UTF-8; other escaped controls are
  harmless to SQL and refused where they would be stored. A surrogate *pair* (an emoji) passes.

The body is inspected as the app reads it (routing has picked the endpoint by then, so the
``BodyLimit`` outside this middleware applies the route's own limit). Checked are the bodies FastAPI
parses as JSON -- ``*/json``, ``*+json`` and those without a content type -- which it holds whole
to parse anyway; bytes a route reads itself (image chunks, CSV) are left to their own parsers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse

from dpm_schemas import E, text
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)

# Every backslash escape, left to right, so ``\\\\u0000`` (an escaped backslash, then text) is one escape
# and the text after it, never a NUL.
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def refusal_in_url(scope: dict[str, Any]) -> DpmError | None:
    """The error for a control character in the path or the query, if there is one."""
    if text.control_character(scope.get("path", "")):
        return E.TEXT_INVALID(field="path", reason="contains a control character")
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if text.control_character(key) or text.control_character(value):
            return E.TEXT_INVALID(field=f"query {key[:64]!r}", reason="contains a control character")
    return None


def bad_escape(body: bytes) -> str | None:
    """What a JSON body escapes that PostgreSQL cannot store: a NUL, or a surrogate outside a pair."""
    high_end = -1  # where the last unpaired high surrogate escape ended
    for match in _ESCAPE.finditer(body):
        escape = match.group(1)
        if len(escape) != 5:  # \\n, \\", \\\\ ...
            if high_end >= 0:
                return "an unpaired surrogate"
            continue
        code = int(escape[1:], 16)
        if high_end >= 0 and not (match.start() == high_end and 0xDC00 <= code <= 0xDFFF):
            return "an unpaired surrogate"
        if 0xDC00 <= code <= 0xDFFF and high_end < 0:
            return "an unpaired surrogate"
        high_end = match.end() if 0xD800 <= code <= 0xDBFF else -1
        if code == 0:
            return "a NUL (\\u0000)"
    return "an unpaired surrogate" if high_end >= 0 else None


def _unstorable(value: str) -> bool:
    return "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)


def where_in_body(body: bytes) -> str:
    """The field holding the bad string, for the error (``body.machines.0``); only run on a refusal."""
    try:
        stack: list[tuple[str, Any]] = [("body", json.loads(body))]
    except ValueError:
        return "body"
    while stack:
        path, value = stack.pop(0)
        if isinstance(value, str) and _unstorable(value):
            return path
        if isinstance(value, dict):
            for key, item in value.items():
                if _unstorable(key):
                    return f"{path} (a key)"
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", item) for i, item in enumerate(value))
    return "body"


def checks_body(scope: dict[str, Any]) -> bool:
    """Whether FastAPI would parse this body as JSON: no content type, ``*/json`` or ``*+json``."""
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
    return not content_type or content_type.endswith((b"/json", b"+json"))


class TextGuard:
    """Pure ASGI: answers 422 DPM-E005 for a control character in the URL, or a NUL or lone surrogate
    escaped in a body."""

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
        if not checks_body(scope):
            await self.app(scope, receive, send)
            return
        await self._checked(scope, receive, send)

    async def _checked(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        state = {"refused": False, "started": False, "read": False}

        async def checked_receive() -> dict[str, Any]:
            if state["refused"]:
                return {"type": "http.disconnect"}
            if state["read"]:  # the body was handed over: what follows is the client leaving (SSE waits on it)
                passed: dict[str, Any] = await receive()
                return passed
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
            found = bad_escape(body)
            if found is None:
                return {"type": "http.request", "body": body, "more_body": False}
            state["refused"] = True
            if not state["started"]:
                await _send_error(send, E.TEXT_INVALID(field=where_in_body(body)[:200], reason=f"escapes {found}"))
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
