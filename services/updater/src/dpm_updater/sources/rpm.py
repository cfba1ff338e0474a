"""The index of an RPM source (kind "rpm"): ``<url>/repodata/repomd.xml``, its detached armoured
signature ``repomd.xml.asc`` when a key is configured (checked with the same gpgv adapter as a Debian
Release.gpg: DPM-E262/E263/E264), then the primary metadata it lists, fetched, checked and parsed
into the same Index a Debian source gives, so what follows (changes, include, downloads into the
content store, offers) does not know which kind it came from. Blocking, like the rest of a sync."""

from __future__ import annotations

from dpm_schemas import DpmError, E
from dpm_updater.sources.adapters import gpg
from dpm_updater.sources.adapters.http import HttpFetcher
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.domain.packages import Index
from dpm_updater.sources.domain.rpmmd import (
    REPOMD,
    REPOMD_SIG,
    MetadataFile,
    decoded_metadata,
    parse_primary,
    parse_repomd,
    wanted,
)


def rpm_index(http: HttpFetcher, config: SourceConfig) -> Index:
    """Every package the primary metadata lists in the source's architectures (all, when none)."""
    primary = parse_repomd(_repomd(http, config), source=config.name)
    url = f"{config.base}/{primary.href}"
    data = _fetch_listed(http, url, primary, config)
    text = decoded_metadata(data, primary, limit=config.max_index_bytes, source=config.name, url=url)
    entries = parse_primary(text, source=config.name, file=url)
    return Index.of([e for e in entries if wanted(e.architecture, config.architectures)])


def _repomd(http: HttpFetcher, config: SourceConfig) -> bytes:
    """repomd.xml, verified against the key when one is configured (a missing .asc: DPM-E263)."""
    limit, key = config.max_release_bytes, config.key_file
    repomd = http.fetch(f"{config.base}/{REPOMD}", limit=limit, what="a repomd.xml file")
    if key is None:
        return repomd
    try:
        signature = http.fetch(f"{config.base}/{REPOMD_SIG}", limit=limit, what="a repomd.xml.asc file")
    except DpmError as exc:
        if exc.details.get("status") != 404:
            raise
        raise E.SOURCE_SIGNATURE_MISSING(source=config.name, reason=f"no {REPOMD_SIG}") from None
    return gpg.verify_detached(repomd, signature, key, source=config.name, file=REPOMD)


def _fetch_listed(http: HttpFetcher, url: str, listed: MetadataFile, config: SourceConfig) -> bytes:
    """The primary file, never longer than repomd.xml lists (longer is DPM-E298) nor the index limit."""
    if listed.size is not None and listed.size > config.max_index_bytes:
        raise E.SOURCE_RESPONSE_TOO_LARGE(
            source=config.name, url=url, limit=config.max_index_bytes, what="primary metadata"
        )
    limit = listed.size if listed.size is not None else config.max_index_bytes
    try:
        return http.fetch(url, limit=limit, what="primary metadata")
    except DpmError as exc:
        if exc.code != E.SOURCE_RESPONSE_TOO_LARGE.code or listed.size is None:
            raise
    raise E.SOURCE_RPM_METADATA_MISMATCH(
        source=config.name,
        url=url,
        algorithm=listed.checksum.algorithm,
        actual="(not computed)",
        size=f"more than {listed.size}",
        expected=listed.checksum.hexdigest,
        expected_size=listed.size,
    )
