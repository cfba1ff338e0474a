"""The agent's path rules and file operations, on a real temporary directory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dpm_agent.commands import CommandRefused, inside, run_file_command
from dpm_schemas.agent_protocol import MAX_FILE, Action, Command


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    (tmp_path / "files").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "files" / "link").symlink_to(tmp_path / "elsewhere")
    return [tmp_path / "files"]


@pytest.mark.parametrize(
    "path",
    ["", "relative/x", "{root}/../x", "{root}/link/x", "{root}/a/../../x", "/etc/passwd", "{root}", "{root}\x00/x"],
)
def test_paths_outside_the_allowed_directories_are_refused(roots: list[Path], path: str) -> None:
    with pytest.raises(CommandRefused):
        inside(path.format(root=roots[0]), roots)


def test_paths_inside_are_resolved(roots: list[Path]) -> None:
    assert inside(f"{roots[0]}/a/./b/../c", roots) == roots[0].resolve() / "a" / "c"
    assert inside(str(roots[0]), roots, allow_root=True) == roots[0].resolve()


def cmd(action: Action, path: str, content: bytes | None = None) -> Command:
    return Command(id=uuid.uuid4(), action=action, path=path, content=content, mode=0o4755)


def test_put_list_delete_and_no_setuid_bits(roots: list[Path]) -> None:
    target = f"{roots[0]}/d/f.bin"
    assert run_file_command(cmd(Action.PUT_FILE, target, b"abc"), roots).ok
    assert Path(target).read_bytes() == b"abc" and Path(target).stat().st_mode & 0o7777 == 0o755
    listed = run_file_command(cmd(Action.LIST_DIR, f"{roots[0]}/d"), roots)
    assert [(e.name, e.type, e.size) for e in listed.entries] == [("f.bin", "file", 3)]
    assert run_file_command(cmd(Action.DELETE_FILE, target), roots).ok
    missing = run_file_command(cmd(Action.DELETE_FILE, target), roots)
    assert not missing.ok and missing.code == "DPM-E122" and "no such file" in missing.message


def test_refusals_write_nothing(roots: list[Path], tmp_path: Path) -> None:
    result = run_file_command(cmd(Action.PUT_FILE, f"{roots[0]}/link/evil", b"x"), roots)
    assert not result.ok and list((tmp_path / "elsewhere").iterdir()) == []
    with pytest.raises(ValueError):  # oversize content cannot even be framed
        cmd(Action.PUT_FILE, f"{roots[0]}/big", b"x" * (MAX_FILE + 1))
