"""A CLI usage error -- unknown command or option, missing or malformed argument, a named file that
does not exist -- is one line on stderr naming the command and the problem, and exit code 2: never
a traceback, never exit 1 (which scripts read as "the server said no")."""

from __future__ import annotations

import pytest

from dpm_cli.__main__ import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["machines", "list", "--bogus"], "dpm machines list: No such option: --bogus"),
        (["machines", "add"], "dpm machines add: Missing argument 'name'."),
        (["power", "on"], "dpm power on: Missing argument 'MACHINE...'."),
        (["lab", "up", "--machines", "abc"], "dpm lab up: Invalid value for '--machines'"),
        (["machines", "import", "/nonexistent.csv"], "file '/nonexistent.csv' does not exist"),
        (["nosuch"], "dpm: No such command 'nosuch'."),
        (["run", "check", "--on"], "Option '--on' requires an argument."),
    ],
)
def test_a_usage_error_is_one_line_and_exit_code_2(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["dpm", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert err.count("\n") == 1 and says in err and "--help" in err, err
    assert "Traceback" not in err
