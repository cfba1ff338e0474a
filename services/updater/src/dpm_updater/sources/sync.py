"""One sync of a package source: the signed Release, the Packages indexes it lists (an RPM source:
the signed repomd.xml and its primary metadata, ``sources.rpm``), the change against the previous
snapshot, and (when asked) the packages themselves into the content store.

Blocking by design (HTTP, gpgv and disk, one after the other): the service runs it on a worker
thread (``asyncio.to_thread``) from an effect, never on the event loop. A failure of the Release or
of an index fails the whole sync with its code (a partial index would report packages as removed);
a failure of one package is recorded in the result with its code and the others go on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dpm_schemas import DpmError, E
from dpm_updater.adapters.content import ContentStore
from dpm_updater.sources.adapters import gpg
from dpm_updater.sources.adapters.http import HttpFetcher
from dpm_updater.sources.adapters.store import receive
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.domain.changes import Changes, diff
from dpm_updater.sources.domain.packages import Index, PackageEntry, parse_packages
from dpm_updater.sources.domain.plan import INRELEASE, RELEASE, RELEASE_SIG, decoded_index, plan_indexes
from dpm_updater.sources.domain.release import IndexFile, Release, parse_release
from dpm_updater.sources.rpm import rpm_index

# the store itself failed: the next packages would fail alike, so they are not fetched
_STORE_WIDE = (E.SOURCE_DISK_FULL.code, E.SOURCE_STORE_UNWRITABLE.code)


@dataclass(frozen=True)
class FileFailure:
    filename: str
    code: str
    message: str


@dataclass(frozen=True)
class SyncResult:
    source: str
    release: Release | None  # None for an RPM source (its repomd.xml is not kept)
    index: Index
    changes: Changes
    downloaded: tuple[PackageEntry, ...] = ()  # packages fetched into the store by this sync
    failures: tuple[FileFailure, ...] = ()  # packages that could not be fetched, each with its code
    index_bytes: int = 0  # Release (repomd.xml), signature and index bytes received
    package_bytes: int = 0
    listed: int = 0  # entries in the repository's indexes, before ``include``

    @property
    def bytes_fetched(self) -> int:
        return self.index_bytes + self.package_bytes


@dataclass
class SourceSync:
    """The sync, its store and HTTP client factory injectable (tests, and one store per service)."""

    store: ContentStore
    fetcher: Callable[[SourceConfig], HttpFetcher] = field(default=HttpFetcher)

    def run(
        self,
        config: SourceConfig,
        previous: Index | None,
        *,
        fetch_packages: bool = False,
        include: Callable[[PackageEntry], bool] | None = None,
    ) -> SyncResult:
        """``include``: the packages that count (the rest are neither compared nor fetched)."""
        with self.fetcher(config) as http:
            release = None
            if config.kind == "rpm":
                full = rpm_index(http, config)
            else:
                release = parse_release(self._release_text(http, config), source=config.name)
                full = self._index(http, config, release)
            index = Index(tuple(e for e in full.entries if include(e))) if include else full
            index_bytes = http.bytes_fetched
            done, failures = self._packages(http, config, index) if fetch_packages else ((), ())
            return SyncResult(
                source=config.name,
                release=release,
                index=index,
                changes=diff(previous, index),
                downloaded=done,
                failures=failures,
                index_bytes=index_bytes,
                package_bytes=http.bytes_fetched - index_bytes,
                listed=len(full.entries),
            )

    def _release_text(self, http: HttpFetcher, config: SourceConfig) -> bytes:
        """The verified Release text: InRelease, else Release + Release.gpg (only a 404 falls back)."""
        limit, key = config.max_release_bytes, config.key_file
        try:
            inrelease = http.fetch(config.dists_url(INRELEASE), limit=limit, what="an InRelease file")
        except DpmError as exc:
            if exc.details.get("status") != 404:
                raise
        else:
            return gpg.verify_clearsigned(inrelease, key, source=config.name) if key else inrelease
        release = http.fetch(config.dists_url(RELEASE), limit=limit, what="a Release file")
        if key is None:
            return release
        try:
            signature = http.fetch(config.dists_url(RELEASE_SIG), limit=limit, what="a Release.gpg file")
        except DpmError as exc:
            if exc.details.get("status") != 404:
                raise
            raise E.SOURCE_SIGNATURE_MISSING(source=config.name, reason="no InRelease, no Release.gpg") from None
        return gpg.verify_detached(release, signature, key, source=config.name)

    def _index(self, http: HttpFetcher, config: SourceConfig, release: Release) -> Index:
        plan = plan_indexes(
            release,
            source=config.name,
            suite=config.suite,
            components=config.components,
            architectures=config.architectures,
        )
        entries: list[PackageEntry] = []
        for item in plan:
            url = config.dists_url(item.listed.path)
            if item.listed.size > config.max_index_bytes:
                raise E.SOURCE_RESPONSE_TOO_LARGE(
                    source=config.name, url=url, limit=config.max_index_bytes, what="a Packages index"
                )
            data = _fetch_listed(http, url, item.listed, source=config.name)
            text = decoded_index(data, item, limit=config.max_index_bytes, source=config.name, url=url)
            entries += parse_packages(text, source=config.name, file=url, component=item.component)
        return Index.of(entries)

    def _packages(
        self, http: HttpFetcher, config: SourceConfig, index: Index
    ) -> tuple[tuple[PackageEntry, ...], tuple[FileFailure, ...]]:
        done: list[PackageEntry] = []
        failures: list[FileFailure] = []
        stopped: DpmError | None = None
        for entry in index.entries:
            if self.store.has(entry.sha256, entry.size):
                continue
            try:
                if stopped is not None:
                    raise stopped
                if self._fetch_one(http, config, entry):
                    done.append(entry)
            except DpmError as exc:
                failures.append(FileFailure(entry.filename, exc.code, exc.message))
                stopped = exc if exc.code in _STORE_WIDE else stopped
        return tuple(done), tuple(failures)

    def _fetch_one(self, http: HttpFetcher, config: SourceConfig, entry: PackageEntry) -> bool:
        url = f"{config.base}/{entry.filename}"
        if entry.size > config.max_package_bytes:
            raise E.SOURCE_RESPONSE_TOO_LARGE(
                source=config.name, url=url, limit=config.max_package_bytes, what="a package"
            )
        with receive(self.store, entry.sha256, entry.size, source=config.name, url=url) as receiver:
            if receiver is None:
                return False
            # the receiver refuses a byte more than listed (DPM-E265) before the client's cap is reached
            http.download(url, receiver.write, limit=config.max_package_bytes, what="a package")
        return True


def _fetch_listed(http: HttpFetcher, url: str, listed: IndexFile, *, source: str) -> bytes:
    """An index file of the size the Release lists, never more: a longer one is a mismatch (DPM-E265)."""
    try:
        return http.fetch(url, limit=listed.size, what="a Packages index")
    except DpmError as exc:
        if exc.code != E.SOURCE_RESPONSE_TOO_LARGE.code:
            raise
    raise E.SOURCE_HASH_MISMATCH(
        source=source,
        url=url,
        actual="(not computed)",
        size=f"more than {listed.size}",
        listed="the Release file",
        expected=listed.sha256,
        expected_size=listed.size,
    )
