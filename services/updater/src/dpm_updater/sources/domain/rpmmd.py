"""An RPM repository's metadata (pure): ``repodata/repomd.xml``, the primary metadata it lists, and
the checks on what came back (the createrepo_c format, namespaces ``http://linux.duke.edu/metadata/repo``
and ``.../common``).

repomd.xml is the root of trust, as the Release file is for a Debian source: the primary file is
fetched by the location, size and checksum it lists, decompressed only up to its ``open-size`` (or the
source's limit), and the result checked against ``open-checksum`` too. Only sha256 and sha512 are
trusted there (sha1 and md5 are refused, as the Debian path refuses them), and a package needs its
sha256, since the content store is addressed by it. Both files go through the stdlib XML parser with
every DTD refused (``_Guarded.doctype``): an entity can only be declared in one, so no entity is ever
expanded and nothing external is ever read (DPM-E288)."""

from __future__ import annotations

import bz2
import hashlib
import lzma
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from dpm_schemas import E
from dpm_updater.sources.domain.packages import PackageEntry

REPOMD = "repodata/repomd.xml"
REPOMD_SIG = "repodata/repomd.xml.asc"
_REPO = "{http://linux.duke.edu/metadata/repo}"
_COMMON = "{http://linux.duke.edu/metadata/common}"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_DIGEST = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}
_COMPRESSIONS = {".gz": "gz", ".xz": "xz", ".bz2": "bz2", ".zst": "zstd", ".xml": ""}
CHUNK = 1024 * 1024
_Bad = Callable[[str], Exception]  # makes the DPM-E288 of one file, with the reason given


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # sha256 or sha512
    hexdigest: str


@dataclass(frozen=True)
class MetadataFile:
    """One ``<data>`` entry of repomd.xml: where the file is and what it must hash to."""

    href: str  # relative to the repository's base
    checksum: Checksum
    size: int | None
    open_checksum: Checksum | None = None
    open_size: int | None = None

    @property
    def compression(self) -> str | None:
        """ "" for plain XML, None for a suffix dpm does not know (DPM-E299)."""
        return next((c for suffix, c in _COMPRESSIONS.items() if self.href.endswith(suffix)), None)


class _Guarded(ET.TreeBuilder):
    """A tree builder that refuses any DOCTYPE before the parser reads a byte of its content."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _Refused(f"a DTD (<!DOCTYPE {name}>) is not accepted: entity declarations are refused")


class _Refused(Exception):
    pass


class _Primary(_Guarded):
    """Converts each ``<package>`` as it ends and empties it, so a large primary file is never held
    as a whole tree."""

    def __init__(self, convert: Callable[[ET.Element], PackageEntry]) -> None:
        super().__init__()
        self.entries: list[PackageEntry] = []
        self._convert = convert

    def end(self, tag: str) -> ET.Element:
        element = super().end(tag)
        if tag == f"{_COMMON}package":
            if element.get("type") == "rpm":
                self.entries.append(self._convert(element))
            element.clear()
        return element


def parse_xml(data: bytes, *, source: str, file: str, target: _Guarded | None = None) -> ET.Element:
    """The document's root, parsed with every DTD (and so every entity declaration) refused."""
    # S314: the guarded target refuses any DTD, which is what makes stdlib XML parsing unsafe
    parser = ET.XMLParser(target=target if target is not None else _Guarded())  # noqa: S314
    try:
        parser.feed(data)
        return parser.close()
    except (_Refused, ET.ParseError) as exc:
        raise E.SOURCE_RPM_METADATA_INVALID(source=source, file=file, reason=str(exc)[:200]) from None


def parse_repomd(data: bytes, *, source: str, file: str = REPOMD) -> MetadataFile:
    """The primary entry of repomd.xml (DPM-E288 unreadable, DPM-E289 none)."""

    def bad(reason: str) -> Exception:
        return E.SOURCE_RPM_METADATA_INVALID(source=source, file=file, reason=reason)

    root = parse_xml(data, source=source, file=file)
    if root.tag != f"{_REPO}repomd":
        raise bad(f"the root element is {root.tag}, not repomd")
    entries = root.findall(f"{_REPO}data")
    primary = next((d for d in entries if d.get("type") == "primary"), None)
    if primary is None:
        types = ", ".join(sorted(str(d.get("type")) for d in entries)) or "nothing"
        raise E.SOURCE_RPM_PRIMARY_MISSING(source=source, file=file, types=types)
    location = primary.find(f"{_REPO}location")
    href = _relative(location.get("href", "") if location is not None else "", bad)
    if location is not None and location.get(_XML_BASE):
        raise bad("the primary metadata is elsewhere (xml:base); only the repository's own is read")
    checksum = _checksum(primary.find(f"{_REPO}checksum"), bad, what="the primary checksum")
    if checksum is None:
        raise bad("the primary entry has no checksum")
    opened = primary.find(f"{_REPO}open-checksum")
    return MetadataFile(
        href=href,
        checksum=checksum,
        size=_size(primary.findtext(f"{_REPO}size"), bad),
        open_checksum=_checksum(opened, bad, what="the primary open-checksum") if opened is not None else None,
        open_size=_size(primary.findtext(f"{_REPO}open-size"), bad),
    )


def _checksum(element: ET.Element | None, bad: _Bad, *, what: str) -> Checksum | None:
    if element is None:
        return None
    algorithm, digest = element.get("type", ""), (element.text or "").strip().lower()
    if algorithm not in _DIGEST:
        raise bad(f"{what} is {algorithm or 'untyped'}: only sha256 and sha512 are trusted")
    if not _DIGEST[algorithm].fullmatch(digest):
        raise bad(f"{what} is not a {algorithm} digest")
    return Checksum(algorithm, digest)


def _size(text: str | None, bad: _Bad) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise bad(f"size {text!r} is not a number")
    return int(text)


def _relative(href: str, bad: _Bad) -> str:
    href = href.removeprefix("./")
    if not href or href.startswith("/") or ".." in href.split("/") or "://" in href:
        raise bad(f"location {href!r} is not a path inside the repository")
    return href


def check_checksum(data: bytes, checksum: Checksum, size: int | None, *, source: str, url: str) -> None:
    """The bytes are the ones repomd.xml lists, or DPM-E298."""
    actual = hashlib.new(checksum.algorithm, data).hexdigest()
    if actual != checksum.hexdigest or (size is not None and len(data) != size):
        raise E.SOURCE_RPM_METADATA_MISMATCH(
            source=source,
            url=url,
            algorithm=checksum.algorithm,
            actual=actual,
            size=len(data),
            expected=checksum.hexdigest,
            expected_size=size if size is not None else "any number of",
        )


def decompress(data: bytes, compression: str | None, *, limit: int, source: str, url: str) -> bytes:
    """``data`` decoded, never more than ``limit`` bytes (DPM-E268); DPM-E299 for an unknown (or
    unavailable) compression, DPM-E288 for a corrupt or truncated stream."""
    if compression is None or (compression == "zstd" and not _zstd_available()):
        raise E.SOURCE_COMPRESSION_UNSUPPORTED(source=source, url=url, compression=url.rsplit(".", 1)[-1])
    try:
        out, complete = _decoded(data, compression, limit)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:  # zstandard.ZstdError: ValueError
        raise E.SOURCE_RPM_METADATA_INVALID(source=source, file=url, reason=f"cannot decompress ({exc})") from None
    if len(out) > limit:
        raise E.SOURCE_RESPONSE_TOO_LARGE(source=source, url=url, limit=limit, what="decompressed primary metadata")
    if not complete:
        raise E.SOURCE_RPM_METADATA_INVALID(source=source, file=url, reason="the compressed stream is truncated")
    return out


def _decoded(data: bytes, compression: str, limit: int) -> tuple[bytes, bool]:
    """(at most limit + 1 decoded bytes, whether the stream ended properly)."""
    if compression == "":
        return data, True
    if compression == "zstd":
        import zstandard  # only when a repository uses it: a dependency, but not one every sync needs

        read = bytearray()
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
            while len(read) <= limit and (chunk := reader.read(CHUNK)):
                read += chunk
        return bytes(read), True  # a truncated zstd stream raises; open-checksum checks the rest
    codec: lzma.LZMADecompressor | bz2.BZ2Decompressor | zlib._Decompress
    codec = {"xz": lzma.LZMADecompressor, "bz2": bz2.BZ2Decompressor}.get(compression, _gzip)()
    out: bytes = codec.decompress(data, limit + 1)
    return out, len(out) > limit or bool(codec.eof)


def _gzip() -> zlib._Decompress:
    return zlib.decompressobj(wbits=31)


def _zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def decoded_metadata(data: bytes, listed: MetadataFile, *, limit: int, source: str, url: str) -> bytes:
    """The plain primary XML of a fetched file: its checksum checked, decompressed within the bound
    (its open-size, else ``limit``), and the result checked against the open-checksum when listed."""
    check_checksum(data, listed.checksum, listed.size, source=source, url=url)
    bound = min(listed.open_size, limit) if listed.open_size is not None else limit
    text = decompress(data, listed.compression, limit=bound, source=source, url=url)
    if listed.open_checksum is not None:
        check_checksum(text, listed.open_checksum, listed.open_size, source=source, url=url + " (decompressed)")
    return text


def evr(epoch: str, version: str, release: str) -> str:
    """rpm's ``[epoch:]version-release``; epoch 0 is left out, as rpm shows it."""
    head = f"{epoch}:" if epoch not in ("", "0") else ""
    return f"{head}{version}-{release}" if release else f"{head}{version}"


def parse_primary(data: bytes, *, source: str, file: str) -> list[PackageEntry]:
    """One entry per ``<package type="rpm">``; one without its name, arch, version, sha256 checksum,
    package size or a location inside the repository is refused (DPM-E288), as a Debian stanza
    without Filename, Size or SHA256 is: a package dpm cannot check is one it must not offer."""
    target = _Primary(lambda package: _entry(package, source=source, file=file))
    root = parse_xml(data, source=source, file=file, target=target)
    if root.tag != f"{_COMMON}metadata":
        raise E.SOURCE_RPM_METADATA_INVALID(source=source, file=file, reason=f"the root element is {root.tag}")
    return target.entries


def _entry(package: ET.Element, *, source: str, file: str) -> PackageEntry:
    name = (package.findtext(f"{_COMMON}name") or "").strip()

    def bad(reason: str) -> Exception:
        return E.SOURCE_RPM_METADATA_INVALID(source=source, file=file, reason=f"{name or '?'}: {reason}")

    arch = (package.findtext(f"{_COMMON}arch") or "").strip()
    version, checksum = package.find(f"{_COMMON}version"), package.find(f"{_COMMON}checksum")
    size, location = package.find(f"{_COMMON}size"), package.find(f"{_COMMON}location")
    missing = [tag for tag, el in (("version", version), ("checksum", checksum), ("size", size),
                                   ("location", location)) if el is None]  # fmt: skip
    if not name or not arch or missing:
        raise bad(f"no {', '.join(missing or ['name or arch'])}")
    assert version is not None and size is not None and location is not None
    digest = _checksum(checksum, bad, what="its checksum")
    if digest is None or digest.algorithm != "sha256":
        raise bad("its checksum is not sha256 (the store is addressed by sha256: createrepo_c -s sha256)")
    if location.get(_XML_BASE):
        raise bad("its file is elsewhere (xml:base); only the repository's own files are fetched")
    length = _size(size.get("package"), bad)
    if length is None or not version.get("ver"):
        raise bad("no package size or no version")
    return PackageEntry(
        package=name,
        version=evr(version.get("epoch", "0"), version.get("ver", ""), version.get("rel", "")),
        architecture=arch,
        filename=_relative(location.get("href", ""), bad),
        size=length,
        sha256=digest.hexdigest,
        description=(package.findtext(f"{_COMMON}summary") or "").strip(),
    )


def wanted(architecture: str, architectures: tuple[str, ...]) -> bool:
    """The source's architecture filter: none means every binary one; noarch always counts, source
    packages (src, nosrc) only when named."""
    if not architectures:
        return architecture not in ("src", "nosrc")
    return architecture in architectures or architecture == "noarch"
