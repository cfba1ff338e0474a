"""A lab machine's HTTP comes from its own address, as a real machine's does.

pxe gives an execution's deploy environment (and its token) only to the address it saw the MAC boot
from -- its DHCP packets and TFTP read -- and the api accepts the token only from that address. On
loopback every simulated machine has its own 127.0.0.N, so its script fetch, its boot files and its
deploy client's calls are made from there, not from the host's 127.0.0.1.
"""

from __future__ import annotations

import http.client
from typing import Any

import httpx

from dpm_agent.deploy.run import Api, BootParams
from dpm_agent.deploy.transport import HttpClient


def client_from(address: str, timeout: httpx.Timeout | float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, transport=httpx.AsyncHTTPTransport(local_address=address))


class _FromAddress(HttpClient):
    """The deploy client's transport, its connections bound to the machine's address."""

    def __init__(self, base_url: str, token: str, *, source: str) -> None:
        super().__init__(base_url, token, timeout=30, down=lambda exc: exc, retry_for=60)
        self._source = source

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout, source_address=(self._source, 0)
            )
            self._local.conn = conn
        return conn


class ApiFrom(Api):
    """The deploy client's api, called from ``address``."""

    def __init__(self, params: BootParams, address: str) -> None:
        super().__init__(params)
        self._from = _FromAddress(params.server.rstrip("/") + "/deploy/v1", params.token, source=address)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._from.json(method, path, body)
