"""The deploy client's HTTP: plain ``http.client`` (the deploy environment carries no HTTP
library), a bearer token, one keep-alive connection per thread (the backup and restore pools talk
in parallel), retries with backoff when a connection drops or a server answers 5xx or 429 (its
Retry-After honoured) for as long as the call's budget allows, and a dpm error answer turned back
into the DpmError it was -- code, message and remedy. A step report lost to a 30 s database outage
becomes an execution that waits for its no-response timeout; a retried one is just late."""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from dpm_schemas.errors import CATALOGUE, DpmError, E

RETRY_STATUS = frozenset({429, *range(500, 600)})  # busy or unavailable: the same request may work later
RETRY_FOR = 300.0  # seconds a call keeps trying by default (a step's own deadline may cut it shorter)
MAX_DELAY = 10.0  # seconds between two attempts at most, unless the server's Retry-After says more


class HttpClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        down: Callable[[BaseException], BaseException],
        retry_for: float = RETRY_FOR,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``retry_for``: seconds one call keeps trying after a dropped connection or a 5xx/429 answer
        (with backoff, or after the answer's Retry-After); ``down(exc)``: what to raise once the
        connection could not be made in that time. An answer that is neither is final at once."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise E.IMAGE_INVALID(reason=f"URL {base_url!r} is not http(s)://host[:port]")
        self.url = base_url
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self.retry_for = retry_for
        self._down = down
        self._sleep = sleep
        self._local = threading.local()

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {self._token}"}
        if ctype:
            headers["Content-Type"] = ctype
        deadline = time.monotonic() + self.retry_for
        for attempt in itertools.count():
            try:
                status, data, retry_after = self._once(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                if not self._wait(attempt, None, deadline):
                    raise self._down(exc) from None
                continue
            if status < 300:
                return data
            if status not in RETRY_STATUS or not self._wait(attempt, retry_after, deadline):
                raise api_error(status, data, self.url)
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """One request on this thread's connection (dropped after a failure, so the next one is new)."""
        conn = self._conn()
        try:
            conn.request(method, self._path + path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Retry-After") or ""
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise

    def _wait(self, attempt: int, retry_after: str | None, deadline: float) -> bool:
        """Sleep before the next attempt -- the server's Retry-After if it sent one, else backoff with
        jitter -- or say False when that would pass the deadline."""
        backoff = min(MAX_DELAY, 0.5 * 2**attempt) * random.uniform(0.75, 1.0)
        # told when: a little later than that, so machines told at once do not all come back at once
        delay = float(retry_after) * random.uniform(1.0, 1.25) if retry_after and retry_after.isdigit() else backoff
        if time.monotonic() + delay > deadline:
            return False
        self._sleep(delay)
        return True

    def json(self, method: str, path: str, doc: object | None = None) -> object:
        data = self.call(method, path, json.dumps(doc).encode() if doc is not None else None, "application/json")
        return json.loads(data) if data else None

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout)
        return conn


def api_error(status: int, data: bytes, url: str) -> DpmError:
    """A dpm service's error answer as the DpmError it was (its code, message and remedy)."""
    try:
        doc = json.loads(data)["error"]
        return DpmError(CATALOGUE[doc["code"]], dict(doc.get("details") or {}))
    except (ValueError, KeyError, TypeError):
        return E.IMAGER_UNAVAILABLE(url=url, reason=f"HTTP {status}: {data[:300]!r}")
