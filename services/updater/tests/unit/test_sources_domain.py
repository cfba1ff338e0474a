"""The pure parsers of a package source and the change decision between two snapshots."""

from __future__ import annotations

import pytest

from dpm_schemas import DpmError
from dpm_updater.sources.domain.changes import diff
from dpm_updater.sources.domain.packages import Index, parse_packages
from dpm_updater.sources.domain.release import parse_release

H1, H2 = "a" * 64, "b" * 64
RELEASE = f"""Suite: stable
Codename: dpm
Date: Wed, 02 Dec 2026 18:00:00 UTC
Components: main
Architectures: amd64
SHA256:
 {H1} 120 main/binary-amd64/Packages
 {H2} 80 main/binary-amd64/Packages.gz
""".encode()


def stanza(name: str, version: str, sha: str) -> str:
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nFilename: ./pool/{name}_{version}_all.deb\n"
        f"Size: 10\nSHA256: {sha}\nDepends: libc6\nDescription: {name} test\n"
    )


def test_release_lists_suite_components_and_hashes() -> None:
    r = parse_release(RELEASE, source="s")
    assert (r.suite, r.codename, r.components, r.architectures) == ("stable", "dpm", ("main",), ("amd64",))
    listed = r.listed("main/binary-amd64/Packages.gz")
    assert listed is not None and (listed.size, listed.sha256) == (80, H2)


def test_clearsigned_release_is_unwrapped() -> None:
    signed = (
        b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        + RELEASE
        + b"-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n"
    )
    assert parse_release(signed, source="s").suite == "stable"


@pytest.mark.parametrize(
    "text",
    [b"Suite: x\nMD5Sum:\n " + b"0" * 32 + b" 1 main/Packages\n", RELEASE.replace(b"main/binary", b"../binary")],
)
def test_release_without_sha256_or_with_escaping_path_is_refused(text: bytes) -> None:
    with pytest.raises(DpmError) as err:
        parse_release(text, source="s")
    assert err.value.code == "DPM-E266"


def test_packages_stanzas_parse_and_missing_hash_is_refused() -> None:
    entries = parse_packages(
        (stanza("foo", "1.0", H1) + "\n" + stanza("bar", "2:1.0~rc1", H2)).encode(), source="s", file="P"
    )
    assert [(e.package, e.version, e.filename, e.size) for e in entries] == [
        ("foo", "1.0", "pool/foo_1.0_all.deb", 10),
        ("bar", "2:1.0~rc1", "pool/bar_2:1.0~rc1_all.deb", 10),
    ]
    with pytest.raises(DpmError) as err:
        parse_packages(b"Package: foo\nVersion: 1\nArchitecture: all\n", source="s", file="P")
    assert err.value.code == "DPM-E266"


def test_diff_finds_added_changed_and_removed() -> None:
    def index(*stanzas: str) -> Index:
        return Index.of(parse_packages("\n".join(stanzas).encode(), source="s", file="P"))

    before = index(stanza("foo", "1.0", H1), stanza("old", "1", H1))
    after = index(stanza("foo", "1.0", H2), stanza("new", "1", H1))
    d = diff(before, after)
    assert [e.package for e in d.added] == ["new"]
    assert [(b.sha256, a.sha256) for b, a in d.changed] == [(H1, H2)]
    assert [e.package for e in d.removed] == ["old"]
    assert diff(after, after).empty
    assert [e.package for e in diff(None, after).added] == ["foo", "new"]
