"""Passwords for `dpm login` and `dpm users`: never on the command line, where every local account
can read them (ps, /proc/*/cmdline). They come from ``--password-stdin`` (one per line), the
DPM_PASSWORD variable (DPM_CURRENT_PASSWORD for the current one), or a hidden prompt."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

StdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (one line; scripts)."),
]


def read_password(*, stdin: bool, prompt: str = "Password", confirm: bool = False, env: str = "DPM_PASSWORD") -> str:
    """The next line of stdin with ``stdin``, else ``$env``, else a prompt that does not echo."""
    if stdin:
        line = sys.stdin.readline()
        if not line:
            raise typer.BadParameter("no password on standard input", param_hint="--password-stdin")
        return line.rstrip("\r\n")
    if value := os.environ.get(env):
        return value
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))
