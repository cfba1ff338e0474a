"""HTTP for a package source: one httpx client per sync, built from the source's settings only.

``trust_env=False``: the environment's proxies, certificates and .netrc are never read, so a sync
goes exactly where its settings say (a proxy the operator did not configure cannot see the traffic).
Every response is streamed under a byte limit, and every failure becomes one catalogued code, so the
operator is told which hop failed (proxy, server, TLS, timeout, status) and what to change."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from dpm_schemas import DpmError, E
from dpm_updater.sources.config import SourceConfig, shown_proxy

CHUNK = 64 * 1024


class HttpFetcher:
    """GETs under a size limit, failures classified; ``bytes_fetched`` counts the bodies received."""

    def __init__(self, config: SourceConfig, *, user_agent: str = "dpm-updater") -> None:
        self.config = config
        self.bytes_fetched = 0
        verify: ssl.SSLContext | bool = False
        if config.verify_tls:
            verify = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        self._client = httpx.Client(
            proxy=config.proxy,
            verify=verify,
            trust_env=False,
            follow_redirects=True,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            headers={"User-Agent": user_agent},
        )

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str, *, limit: int, what: str) -> bytes:
        body = bytearray()
        self.download(url, body.extend, limit=limit, what=what)
        return bytes(body)

    def download(self, url: str, sink: Callable[[bytes], None], *, limit: int, what: str) -> int:
        """Stream ``url`` into ``sink``; at most ``limit`` bytes (DPM-E268). Returns the bytes received."""
        received = 0
        try:
            with self._client.stream("GET", url) as response:
                self._check_status(response, url)
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > limit:
                    raise self._too_large(url, limit, what)
                for chunk in response.iter_bytes(CHUNK):
                    received += len(chunk)
                    self.bytes_fetched += len(chunk)
                    if received > limit:
                        raise self._too_large(url, limit, what)
                    sink(chunk)
        except httpx.HTTPError as exc:
            raise self._classify(exc, url) from None
        return received

    def _too_large(self, url: str, limit: int, what: str) -> DpmError:
        return E.SOURCE_RESPONSE_TOO_LARGE(source=self.config.name, url=url, limit=limit, what=what)

    def _check_status(self, response: httpx.Response, url: str) -> None:
        status, source = response.status_code, self.config.name
        if status == 407:
            raise E.SOURCE_PROXY_AUTH(source=source, proxy=shown_proxy(self.config), status=status)
        if status >= 500:
            raise E.SOURCE_HTTP_SERVER_ERROR(source=source, url=url, status=status)
        if status >= 400:
            raise E.SOURCE_HTTP_CLIENT_ERROR(source=source, url=url, status=status)

    def _classify(self, exc: httpx.HTTPError, url: str) -> DpmError:
        """The code of a transport failure. Through a proxy every connection is to the proxy, so a
        failure to connect is the proxy's (DPM-E252); the server's own unreachability then comes back
        as the proxy's 502/504 (DPM-E258) or, for https, as a refused CONNECT."""
        source, reason = self.config.name, (str(exc) or type(exc).__name__)[:200]
        parts = urlsplit(url)
        server = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        if _is_tls(exc):
            return E.SOURCE_TLS_FAILED(source=source, server=server, reason=reason)
        if isinstance(exc, httpx.ProxyError):
            if "407" in reason:
                return E.SOURCE_PROXY_AUTH(source=source, proxy=shown_proxy(self.config), status=407)
            return E.SOURCE_CONNECT_FAILED(source=source, server=server, reason=f"through the proxy: {reason}")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            if self.config.proxy:
                return E.SOURCE_PROXY_UNREACHABLE(source=source, proxy=shown_proxy(self.config), reason=reason)
            return E.SOURCE_CONNECT_FAILED(source=source, server=server, reason=reason)
        if isinstance(exc, httpx.TimeoutException):
            phase = type(exc).__name__.removesuffix("Timeout").lower() or "read"
            return E.SOURCE_TIMEOUT(source=source, url=url, timeout=self.config.read_timeout, phase=phase)
        return E.SOURCE_CONNECT_FAILED(source=source, server=server, reason=reason)


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
