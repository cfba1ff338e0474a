"""A package source's settings, checked once when they are made: a sync never starts with a URL,
name or key it cannot use, and every refusal carries its code (DPM-E250 URL, DPM-E251 the rest).
A "deb" source (the default) has a suite, components and architectures; an "rpm" one only its base
URL and, optionally, architectures to keep (``<url>/repodata/repomd.xml`` says the rest).

The proxy is only ever the one configured here (the HTTP adapter never reads the environment's
proxies), so what a sync goes through is visible in the source's settings and nowhere else."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dpm_packages.urls import url_problem
from dpm_schemas import E

_NAME = re.compile(r"[A-Za-z0-9._+~-]{1,64}")
MiB = 1024 * 1024


KINDS = ("deb", "rpm")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str  # the repository's base: <url>/dists/<suite>/... (rpm: <url>/repodata/...) and <url>/<Filename>
    suite: str = ""  # deb only
    components: tuple[str, ...] = ()  # deb only
    architectures: tuple[str, ...] = ()  # deb: at least one; rpm: a filter, none meaning every one
    key_file: Path | None = None  # OpenPGP public key (binary or armoured); None: no signature check
    proxy: str | None = None  # http://[user:password@]host:port
    verify_tls: bool = True
    ca_file: Path | None = None  # PEM bundle for the server's certificate
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_release_bytes: int = 16 * MiB  # InRelease / Release / Release.gpg
    max_index_bytes: int = 512 * MiB  # a Packages index, compressed or not
    max_package_bytes: int = 4096 * MiB  # one .deb or .rpm
    kind: str = "deb"

    def __post_init__(self) -> None:
        _plain(self.name, self.name or "?", "name")
        check_url(self.url, source=self.name, field="url", schemes=("http", "https"))
        if self.proxy is not None:
            check_url(self.proxy, source=self.name, field="proxy", schemes=("http",))
        self._check_kind()
        for field, values in (("components", self.components), ("architectures", self.architectures)):
            if not values and self.kind == "deb":
                raise E.SOURCE_SETTING_INVALID(source=self.name, field=field, value="", reason="none given")
            for value in values:
                _plain(value, self.name, field)
        for field, path in (("key file", self.key_file), ("CA file", self.ca_file)):
            if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
                reason = "not a readable file"
                raise E.SOURCE_SETTING_INVALID(source=self.name, field=field, value=str(path), reason=reason)
        positive = (self.connect_timeout, self.read_timeout, self.max_release_bytes, self.max_index_bytes)
        if min(*positive, self.max_package_bytes) <= 0:
            raise E.SOURCE_SETTING_INVALID(source=self.name, field="limits", value=positive, reason="must be > 0")

    def _check_kind(self) -> None:
        if self.kind not in KINDS:
            raise E.SOURCE_SETTING_INVALID(source=self.name, field="kind", value=self.kind, reason="deb or rpm")
        if self.kind == "deb":
            _plain(self.suite, self.name, "suite")
        elif self.suite or self.components:
            value = self.suite or " ".join(self.components)
            reason = "an rpm source has no suite or components"
            raise E.SOURCE_SETTING_INVALID(source=self.name, field="suite/components", value=value, reason=reason)

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def dists_url(self, path: str) -> str:
        return f"{self.base}/dists/{self.suite}/{path}"


def _plain(value: str, source: str, field: str) -> None:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise E.SOURCE_SETTING_INVALID(source=source, field=field, value=value, reason="not a plain name")


def check_url(url: str, *, source: str, field: str, schemes: tuple[str, ...]) -> None:
    """An absolute URL of one of ``schemes`` with a host and a valid port (DPM-E250)."""

    def bad(reason: str) -> Exception:
        shown = url if field != "proxy" else _hide_password(url)
        return E.SOURCE_URL_INVALID(source=source, field=field, url=shown, reason=reason)

    if (why := url_problem(url, schemes=schemes, proxy=field == "proxy")) is not None:
        raise bad(why)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def shown_proxy(config: SourceConfig) -> str:
    """The proxy for messages: its password never appears in an error or a log."""
    return _hide_password(config.proxy) if config.proxy else ""
