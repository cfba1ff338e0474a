"""The imager's data plane seen from a deploy client: a ChunkStore over HTTP for one transfer.

The HTTP itself (connections per thread, retries, errors with their codes) is ``deploy.transport``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dpm_agent.deploy.transport import HttpClient
from dpm_imagefmt.chunks import MAX_SIZE
from dpm_imagefmt.store import pack_records, unpack_records
from dpm_schemas.errors import E


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
        self._http = HttpClient(
            grant.imager_url.rstrip("/") + f"/v1/transfers/{grant.transfer_id}",
            grant.token,
            timeout=timeout,
            down=lambda exc: E.IMAGER_UNAVAILABLE(url=grant.imager_url, reason=repr(exc)),
        )
        self._call = self._http.call

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

    def renew(self) -> None:
        """The backup's heartbeat: its lease on the image name lasts a while longer."""
        self._json("POST", "/renew", {})

    def abort(self, reason: str) -> None:
        self._json("POST", "/abort", {"reason": reason[:1000]})

    def manifest(self) -> bytes:
        return self._call("GET", "/manifest")

    def _json(self, method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._http.json(method, path, doc)  # type: ignore[assignment]
        return answer
