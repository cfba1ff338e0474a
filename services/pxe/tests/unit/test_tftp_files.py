"""The TFTP root as a jail: names inside it are served; traversal attempts, symlinks out and missing
files are refused with the right TFTP error code, whatever the name (fuzzed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpm_netproto import tftp as p
from dpm_pxe.adapters.tftp.files import Refused, resolve


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "efi").mkdir(parents=True)
    (tmp_path / "root" / "undionly.kpxe").write_bytes(b"ipxe")
    (tmp_path / "root" / "efi" / "ipxe.efi").write_bytes(b"efi")
    (tmp_path / "secret").write_text("no")
    (tmp_path / "root" / "leak").symlink_to(tmp_path / "secret")
    return tmp_path / "root"


@pytest.mark.parametrize("name", ["undionly.kpxe", "/undionly.kpxe", "efi\\ipxe.efi", "./efi//ipxe.efi"])
def test_names_inside_the_root_are_served(root: Path, name: str) -> None:
    assert resolve(root, name).read_bytes() in (b"ipxe", b"efi")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../secret", p.E_ACCESS),
        ("efi/../../secret", p.E_ACCESS),
        ("..\\secret", p.E_ACCESS),
        ("leak", p.E_ACCESS),
        ("efi", p.E_NOT_FOUND),
        ("missing", p.E_NOT_FOUND),
        ("/", p.E_ACCESS),
        ("a\x00b", p.E_ACCESS),
    ],
)
def test_traversal_and_missing_files_are_refused(root: Path, name: str, code: int) -> None:
    with pytest.raises(Refused) as err:
        resolve(root, name)
    assert err.value.code == code


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_no_name_escapes_the_root(root: Path, name: str) -> None:  # the fixture is only read, never changed
    try:
        served = resolve(root, name)
    except Refused:
        return
    assert served.is_relative_to(root.resolve())
