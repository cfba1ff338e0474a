"""The pure parsers of an RPM source: repomd.xml, primary.xml (with every DTD, and so every entity
expansion, refused), the checks of a fetched metadata file, and the architecture filter."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma

import pytest
import zstandard

from dpm_schemas import DpmError, E
from dpm_updater.sources.domain.rpmmd import (
    Checksum,
    MetadataFile,
    decoded_metadata,
    evr,
    parse_primary,
    parse_repomd,
    wanted,
)

H1, H2 = "a" * 64, "b" * 64


def repomd(*data: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" '
        'xmlns:rpm="http://linux.duke.edu/metadata/rpm"><revision>1</revision>' + "".join(data) + "</repomd>"
    ).encode()


def data(kind: str = "primary", href: str = "repodata/x-primary.xml.gz", algorithm: str = "sha256") -> str:
    return (
        f'<data type="{kind}"><checksum type="{algorithm}">{H1}</checksum>'
        f'<open-checksum type="sha256">{H2}</open-checksum><location href="{href}"/>'
        "<timestamp>1</timestamp><size>550</size><open-size>1047</open-size></data>"
    )


def package(name: str = "hello", *, epoch: str = "0", checksum: str = "sha256", extra: str = "") -> str:
    return (
        f'<package type="rpm"><name>{name}</name><arch>noarch</arch>'
        f'<version epoch="{epoch}" ver="1.0" rel="1.el9"/><checksum type="{checksum}" pkgid="YES">{H1}</checksum>'
        f"<summary>{name} summary</summary><description>long</description>"
        f'<size package="6064" installed="6" archive="268"/><location href="Packages/{name}-1.0-1.el9.noarch.rpm"'
        f"{extra}/><format/></package>"
    )


def primary(*packages: str, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}<metadata xmlns="http://linux.duke.edu/metadata/common" '
        f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{len(packages)}">'
        + "".join(packages)
        + "</metadata>"
    ).encode()


def code(call: object, *args: object, **kw: object) -> str:
    with pytest.raises(DpmError) as err:
        call(*args, **kw)  # type: ignore[operator]
    return err.value.code


def test_repomd_gives_the_primary_entry() -> None:
    found = parse_repomd(repomd(data("filelists", "repodata/f.xml.gz"), data()), source="s")
    assert found == MetadataFile(
        href="repodata/x-primary.xml.gz",
        checksum=Checksum("sha256", H1),
        size=550,
        open_checksum=Checksum("sha256", H2),
        open_size=1047,
    )
    assert found.compression == "gz"
    assert parse_repomd(repomd(data(algorithm="sha512").replace(H1, "c" * 128)), source="s").checksum.algorithm == (
        "sha512"
    )


def test_repomd_refusals_have_their_codes() -> None:
    assert code(parse_repomd, repomd(data("filelists")), source="s") == E.SOURCE_RPM_PRIMARY_MISSING.code
    bad = E.SOURCE_RPM_METADATA_INVALID.code
    assert code(parse_repomd, b"<repomd", source="s") == bad  # not XML
    assert code(parse_repomd, b"<other/>", source="s") == bad
    assert code(parse_repomd, repomd(data(algorithm="sha1")), source="s") == bad  # sha1 is not trusted
    assert code(parse_repomd, repomd(data(algorithm="md5")), source="s") == bad
    for href in ("/etc/passwd", "repodata/../../x.xml.gz", "http://elsewhere/x.xml.gz", ""):
        assert code(parse_repomd, repomd(data(href=href)), source="s") == bad, href
    with pytest.raises(DpmError) as err:
        parse_repomd(repomd(data("other")), source="s")
    assert "other" in err.value.message and "primary" in err.value.message


def test_primary_gives_entries_with_rpm_evr() -> None:
    entries = parse_primary(primary(package("hello"), package("tool", epoch="2")), source="s", file="p")
    assert [(e.package, e.version, e.architecture, e.size, e.sha256) for e in entries] == [
        ("hello", "1.0-1.el9", "noarch", 6064, H1),
        ("tool", "2:1.0-1.el9", "noarch", 6064, H1),
    ]
    assert entries[0].filename == "Packages/hello-1.0-1.el9.noarch.rpm"
    assert entries[0].description == "hello summary"
    assert evr("", "1.0", "") == "1.0" and evr("0", "1.0", "3") == "1.0-3"


def test_primary_refuses_packages_it_cannot_check() -> None:
    bad = E.SOURCE_RPM_METADATA_INVALID.code
    assert code(parse_primary, primary(package(checksum="sha1")), source="s", file="p") == bad
    assert code(parse_primary, primary(package().replace("<arch>noarch</arch>", "")), source="s", file="p") == bad
    assert code(parse_primary, primary(package().replace('package="6064"', 'package="x"')), source="s", file="p") == (
        bad
    )
    elsewhere = package(extra=' xml:base="http://other.example/"')
    assert code(parse_primary, primary(elsewhere), source="s", file="p") == bad
    dotdot = package().replace("Packages/hello", "../hello")
    assert code(parse_primary, primary(dotdot), source="s", file="p") == bad


@pytest.mark.parametrize(
    "prolog",
    [
        # the billion laughs: entities that expand to gigabytes
        '<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
        # an external entity: a file of this machine read into the document
        '<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        # an external DTD
        '<!DOCTYPE m SYSTEM "http://127.0.0.1:1/evil.dtd">',
    ],
)
def test_a_dtd_is_refused_before_any_entity_is_expanded(prolog: str) -> None:
    body = package().replace("hello summary", "&c;" if "ENTITY c" in prolog else "&x;" if "ENTITY x" in prolog else "")
    with pytest.raises(DpmError) as err:
        parse_primary(primary(body, prolog=prolog), source="s", file="p")
    assert err.value.code == E.SOURCE_RPM_METADATA_INVALID.code
    assert "DTD" in err.value.message
    assert code(parse_repomd, repomd(data()).replace(b"<repomd", prolog.encode() + b"<repomd", 1), source="s") == (
        E.SOURCE_RPM_METADATA_INVALID.code
    )


def test_an_undeclared_entity_is_not_expanded_either() -> None:
    body = package().replace("hello summary", "&undeclared;")
    assert code(parse_primary, primary(body), source="s", file="p") == E.SOURCE_RPM_METADATA_INVALID.code


def listed(plain: bytes, packed: bytes, href: str) -> MetadataFile:
    return MetadataFile(
        href=href,
        checksum=Checksum("sha256", hashlib.sha256(packed).hexdigest()),
        size=len(packed),
        open_checksum=Checksum("sha256", hashlib.sha256(plain).hexdigest()),
        open_size=len(plain),
    )


PLAIN = primary(package())
PACKED = {
    "x-primary.xml": PLAIN,
    "x-primary.xml.gz": gzip.compress(PLAIN),
    "x-primary.xml.xz": lzma.compress(PLAIN),
    "x-primary.xml.bz2": bz2.compress(PLAIN),
    "x-primary.xml.zst": zstandard.ZstdCompressor().compress(PLAIN),
}


@pytest.mark.parametrize("href", sorted(PACKED))
def test_each_compression_is_decoded_and_checked(href: str) -> None:
    packed = PACKED[href]
    assert decoded_metadata(packed, listed(PLAIN, packed, href), limit=1 << 20, source="s", url=href) == PLAIN


def test_metadata_that_differs_from_repomd_is_refused() -> None:
    packed = PACKED["x-primary.xml.gz"]
    meta = listed(PLAIN, packed, "x-primary.xml.gz")
    mismatch = E.SOURCE_RPM_METADATA_MISMATCH.code
    assert code(decoded_metadata, packed[:-1] + b"!", meta, limit=1 << 20, source="s", url="u") == mismatch
    other = gzip.compress(PLAIN.replace(b"hello", b"hullo"))  # right outer checksum, wrong content
    forged = MetadataFile(meta.href, Checksum("sha256", hashlib.sha256(other).hexdigest()), len(other),
                          meta.open_checksum, meta.open_size)  # fmt: skip
    assert code(decoded_metadata, other, forged, limit=1 << 20, source="s", url="u") == mismatch


def test_decompression_is_bounded_and_unknown_compressions_refused() -> None:
    bomb = gzip.compress(b"<" * (8 << 20))
    meta = MetadataFile("x.xml.gz", Checksum("sha256", hashlib.sha256(bomb).hexdigest()), len(bomb))
    assert code(decoded_metadata, bomb, meta, limit=1 << 20, source="s", url="u") == E.SOURCE_RESPONSE_TOO_LARGE.code
    odd = MetadataFile("x.xml.lz4", Checksum("sha256", hashlib.sha256(b"x").hexdigest()), 1)
    assert code(decoded_metadata, b"x", odd, limit=1 << 20, source="s", url="x.xml.lz4") == (
        E.SOURCE_COMPRESSION_UNSUPPORTED.code
    )
    cut = gzip.compress(PLAIN)[:-12]
    truncated = MetadataFile("x.xml.gz", Checksum("sha256", hashlib.sha256(cut).hexdigest()), len(cut))
    assert code(decoded_metadata, cut, truncated, limit=1 << 20, source="s", url="u") == (
        E.SOURCE_RPM_METADATA_INVALID.code
    )


def test_the_architecture_filter() -> None:
    assert wanted("x86_64", ()) and wanted("noarch", ()) and not wanted("src", ())
    assert wanted("noarch", ("x86_64",)) and wanted("x86_64", ("x86_64",)) and not wanted("aarch64", ("x86_64",))
    assert wanted("src", ("src",))
