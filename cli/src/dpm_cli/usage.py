"""How `dpm` fails: a line on stderr and a stable exit code, never a traceback.

Scripts tell the cases apart by the code: 1 the server said no (or a named file failed), 2 a usage
error -- unknown command or option, missing or malformed argument, a named file that does not
exist -- and 3 no server. Click's own display of a usage error is four lines (usage, hint, blank,
error); here it is one, naming the command, the problem and where help is.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from dpm_cli.client import EXIT_API_ERROR, EXIT_USAGE, CliError


def run(app: typer.Typer) -> None:
    """Run the CLI; every failure becomes its line and exit code."""
    try:
        app(standalone_mode=False, prog_name="dpm")
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("dpm: aborted", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except OSError as exc:  # a file named on the command line that cannot be read or written
        print(f"dpm: {exc}", file=sys.stderr)
        sys.exit(EXIT_API_ERROR)
    except Exception as exc:
        if not _is_click_error(exc):
            raise
        sys.exit(_show_click_error(exc))


def _is_click_error(exc: Exception) -> bool:
    from click.exceptions import ClickException

    return isinstance(exc, ClickException | typer.TyperException)  # typer vendors its own click


def _show_click_error(exc: Any) -> int:
    """One line for a usage error (``dpm machines add: Missing argument 'NAME'. (see ... --help)``);
    a command group called bare shows its help, as before. Returns the exit code."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()
        return EXIT_USAGE
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "dpm"
    text = " ".join(exc.format_message().split())  # one line, whatever the message held
    if getattr(exc, "exit_code", 1) == EXIT_USAGE or ctx is not None:
        print(f"{where}: {text} (see '{where} --help')", file=sys.stderr)
        return EXIT_USAGE
    print(f"{where}: {text}", file=sys.stderr)
    return int(getattr(exc, "exit_code", EXIT_API_ERROR))
