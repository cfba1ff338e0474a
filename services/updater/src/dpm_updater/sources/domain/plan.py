"""What a sync fetches, and the checks on what came back (pure: bytes in, values out).

The Release file is the root of trust: every index is fetched by the path, size and SHA256 it lists,
the smallest encoding first (.xz, then .gz, then plain), and decompressed only up to the size the
Release gives for the plain index (or the source's limit when it gives none), so a small hostile file
cannot expand into gigabytes (DPM-E268). A component/arch the Release does not list is refused
(DPM-E267) rather than silently synced empty."""

from __future__ import annotations

import hashlib
import lzma
import zlib
from dataclasses import dataclass

from dpm_schemas import E
from dpm_updater.sources.domain.release import IndexFile, Release

# The signed forms, in the order they are tried: a clearsigned InRelease, else Release + Release.gpg.
INRELEASE, RELEASE, RELEASE_SIG = "InRelease", "Release", "Release.gpg"
ENCODINGS = (".xz", ".gz", "")


@dataclass(frozen=True)
class IndexFetch:
    component: str
    architecture: str
    listed: IndexFile  # the file fetched (path relative to dists/<suite>/)
    plain: IndexFile | None  # the uncompressed index, when the Release lists it: the decompression bound

    @property
    def encoding(self) -> str:
        return next((e for e in (".xz", ".gz") if self.listed.path.endswith(e)), "")


def plan_indexes(
    release: Release, *, source: str, suite: str, components: tuple[str, ...], architectures: tuple[str, ...]
) -> tuple[IndexFetch, ...]:
    out = []
    for component in components:
        for arch in architectures:
            base = f"{component}/binary-{arch}/Packages"
            listed = [f for e in ENCODINGS if (f := release.listed(base + e)) is not None]
            if not listed:
                raise E.SOURCE_INDEX_MISSING(
                    source=source,
                    suite=suite,
                    component=component,
                    arch=arch,
                    components=" ".join(release.components) or "(none)",
                    architectures=" ".join(release.architectures) or "(none)",
                )
            out.append(IndexFetch(component, arch, listed[0], release.listed(base)))
    return tuple(out)


def check_listed(data: bytes, listed: IndexFile, *, source: str, url: str, by: str = "the Release file") -> None:
    """The bytes are the ones ``listed`` names, or DPM-E265."""
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != listed.size or actual != listed.sha256:
        raise E.SOURCE_HASH_MISMATCH(
            source=source,
            url=url,
            actual=actual,
            size=len(data),
            listed=by,
            expected=listed.sha256,
            expected_size=listed.size,
        )


def decompress(data: bytes, encoding: str, *, limit: int, source: str, url: str) -> bytes:
    """``data`` decoded, never more than ``limit`` bytes (DPM-E268); a corrupt stream is DPM-E266."""
    if encoding == "":
        out = data
    else:
        codec = lzma.LZMADecompressor() if encoding == ".xz" else zlib.decompressobj(wbits=31)
        try:
            out = codec.decompress(data, limit + 1)
        except (lzma.LZMAError, zlib.error) as exc:
            raise E.SOURCE_INDEX_INVALID(source=source, file=url, reason=f"cannot decompress ({exc})") from None
        if len(out) <= limit and not codec.eof:
            raise E.SOURCE_INDEX_INVALID(source=source, file=url, reason="the compressed stream is truncated")
    if len(out) > limit:
        raise E.SOURCE_RESPONSE_TOO_LARGE(source=source, url=url, limit=limit, what="a decompressed Packages index")
    return out


def decoded_index(data: bytes, fetch: IndexFetch, *, limit: int, source: str, url: str) -> bytes:
    """The plain Packages text of a fetched index: its listed hash checked, decompressed within the
    bound, and the plain index's hash checked too when the Release lists it."""
    check_listed(data, fetch.listed, source=source, url=url)
    bound = fetch.plain.size if fetch.plain is not None else limit
    text = decompress(data, fetch.encoding, limit=min(bound, limit), source=source, url=url)
    if fetch.plain is not None and fetch.plain is not fetch.listed:
        check_listed(text, fetch.plain, source=source, url=url + " (decompressed)")
    return text
