"""The deploy client's HTTP: plain ``http.client`` (the deploy environment carries no HTTP
library), a bearer token, one keep-alive connection per thread (the backup and restore pools talk
in parallel), retries with backoff when a connection drops, and a dpm error answer turned back
into the DpmError it was -- code, message and remedy."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from dpm_schemas.errors import CATALOGUE, DpmError, E


class HttpClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        retries: int,
        down: Callable[[BaseException], BaseException],
    ) -> None:
        """``down(exc)``: what to raise once every retry failed to get an answer."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise E.IMAGE_INVALID(reason=f"URL {base_url!r} is not http(s)://host[:port]")
        self.url = base_url
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._retries = retries
        self._down = down
        self._local = threading.local()

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {self._token}"}
        if ctype:
            headers["Content-Type"] = ctype
        for attempt in range(self._retries):
            conn = self._conn()
            try:
                conn.request(method, self._path + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == self._retries - 1:
                    raise self._down(exc) from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status < 300:
                return data
            raise api_error(response.status, data, self.url)
        raise AssertionError("unreachable")

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
