"""`dpm executions logs ID`: a part as text to stdout or a file, the bundle only into a file (or a
pipe), the plain `dpm executions` listing unchanged, anything else a usage error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dpm_cli import deploylogs, scenarios
from dpm_cli.__main__ import app
from dpm_cli.client import EXIT_USAGE, CliError

EXECUTION = "0f7c4a3e-1111-4222-8333-444455556666"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    made: list[tuple[str, str, Any]] = []

    def request(method: str, path: str, **kwargs: Any) -> Any:
        made.append((method, path, kwargs.get("params")))
        return "@@T 1.0 init\n" if kwargs.get("raw") else []

    monkeypatch.setattr(deploylogs, "request", request)
    monkeypatch.setattr(scenarios, "request", request)
    monkeypatch.setattr(deploylogs, "_bytes", lambda path: made.append(("GET", path, None)) or b"\x1f\x8bbundle")
    return made


def test_a_part_goes_to_stdout_or_a_file(calls: list[tuple[str, str, Any]], tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["executions", "logs", EXECUTION, "--part", "console"])
    assert done.exit_code == 0, done.output
    assert done.output == "@@T 1.0 init\n"
    assert calls == [("GET", f"/executions/{EXECUTION}/logs", {"part": "console"})]
    out = tmp_path / "dmesg.txt"
    done = CliRunner().invoke(app, ["executions", "logs", EXECUTION, "--part", "dmesg", "-o", str(out)])
    assert done.exit_code == 0 and out.read_text() == "@@T 1.0 init\n"
    assert calls[-1][2] == {"part": "dmesg"}


def test_the_bundle_goes_to_a_file_as_bytes(calls: list[tuple[str, str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "logs.tar.gz"
    done = CliRunner().invoke(app, ["executions", "logs", EXECUTION, "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_bytes() == b"\x1f\x8bbundle"
    assert calls == [("GET", f"/executions/{EXECUTION}/logs", None)]


def test_a_bad_part_or_words_are_usage_errors_and_the_listing_still_works(calls: list[tuple[str, str, Any]]) -> None:
    bad_part = CliRunner().invoke(app, ["executions", "logs", EXECUTION, "--part", "kernel"])
    assert bad_part.exit_code != 0 and not calls
    bad_words = CliRunner().invoke(app, ["executions", "show", EXECUTION])
    assert isinstance(bad_words.exception, CliError) and bad_words.exception.exit_code == EXIT_USAGE
    assert "logs EXECUTION_ID" in str(bad_words.exception) and not calls
    listing = CliRunner().invoke(app, ["executions", "--limit", "5"])
    assert listing.exit_code == 0, listing.output
    assert calls == [("GET", "/executions", {"limit": 5})]
