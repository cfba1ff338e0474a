"""The imager's data plane seen from a deploy client: a ChunkStore over HTTP for one transfer.

Plain ``http.client`` (the deploy environment carries no HTTP library), one keep-alive connection
per thread so the backup and restore pools upload and fetch in parallel. A dropped connection is
retried with backoff; an answer with a dpm error body becomes that DpmError, code and all.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dpm_imagefmt.chunks import MAX_SIZE
from dpm_imagefmt.store import pack_records, unpack_records
from dpm_schemas.errors import CATALOGUE, DpmError, E

RETRIES = 4


@dataclass(frozen=True)
class TransferGrant:
    """What the api hands out with a transfer: where the imager is, which transfer, its token."""

    imager_url: str
    transfer_id: str
    token: str
    image: str

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TransferGrant:
        return cls(doc["imager_url"], doc["transfer_id"], doc["token"], doc["image"])


class RemoteStore:
    def __init__(self, grant: TransferGrant, timeout: float = 120) -> None:
        self.grant = grant
        parts = urlsplit(grant.imager_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise E.IMAGE_INVALID(reason=f"imager URL {grant.imager_url!r} is not http(s)://host[:port]")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._base = f"{parts.path.rstrip('/')}/v1/transfers/{grant.transfer_id}"
        self._timeout = timeout
        self._local = threading.local()

    # -- ChunkStore ---------------------------------------------------------------------------------
    def missing(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        out: set[str] = set()
        for i in range(0, len(wanted), 4096):
            answer = self._json("POST", "/missing", {"ids": wanted[i : i + 4096]})
            out.update(answer["missing"])
        return out

    def put(self, chunk: str, blob: bytes | memoryview) -> None:
        self._call("PUT", f"/chunks/{chunk}", bytes(blob), "application/zstd")

    def get(self, chunk: str) -> bytes:
        return self._call("GET", f"/chunks/{chunk}")

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        self._call("POST", "/chunks", pack_records(items), "application/octet-stream")

    def get_many(self, chunks: list[str]) -> list[bytes]:
        body = self._call("POST", "/chunks/fetch", json.dumps({"ids": chunks}).encode(), "application/json")
        records = dict(unpack_records(body, MAX_SIZE + 128 * 1024))
        return [bytes(records[c]) for c in chunks]

    # -- the transfer around it ---------------------------------------------------------------------
    def start(self, planned_bytes: int) -> None:
        self._json("POST", "/start", {"planned_bytes": planned_bytes})

    def commit(self, manifest_blob: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._call("POST", "/commit", manifest_blob, "application/zstd"))
        return answer

    def abort(self, reason: str) -> None:
        self._json("POST", "/abort", {"reason": reason[:1000]})

    def manifest(self) -> bytes:
        return self._call("GET", "/manifest")

    # -- HTTP ---------------------------------------------------------------------------------------
    def _json(self, method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._call(method, path, json.dumps(doc).encode(), "application/json"))
        return answer

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout)
        return conn

    def _call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {self.grant.token}"}
        if ctype:
            headers["Content-Type"] = ctype
        delay = 0.5
        for attempt in range(RETRIES):
            conn = self._conn()
            try:
                conn.request(method, self._base + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == RETRIES - 1:
                    raise E.IMAGER_UNAVAILABLE(url=self.grant.imager_url, reason=repr(exc)) from None
                time.sleep(delay)
                delay *= 2
                continue
            if response.status < 300:
                return data
            raise api_error(response.status, data, self.grant.imager_url)
        raise AssertionError("unreachable")


def api_error(status: int, data: bytes, url: str) -> DpmError:
    """A dpm service's error answer as the DpmError it was (its code, message and remedy)."""
    try:
        doc = json.loads(data)["error"]
        return DpmError(CATALOGUE[doc["code"]], dict(doc.get("details") or {}))
    except (ValueError, KeyError, TypeError):
        return E.IMAGER_UNAVAILABLE(url=url, reason=f"HTTP {status}: {data[:300]!r}")
