"""`dpm executions logs ID`: the deploy environment's logs of an execution (ADR 0015) -- one part
as text, or the whole tar.gz bundle into a file."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import httpx

from dpm_cli.client import EXIT_API_ERROR, EXIT_USAGE, CliError, base_url, request, token, unreachable


class LogPart(StrEnum):
    CONSOLE = "console"
    DMESG = "dmesg"
    CLIENT = "client"


def execution_logs(execution: str, part: LogPart | None, output: Path | None) -> None:
    """One part as text (the api has made its control characters visible), or the bundle as bytes --
    never the bundle onto a terminal."""
    if part is not None:
        text = request("GET", f"/executions/{execution}/logs", params={"part": part.value}, raw=True)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text)
        return
    if output is None and sys.stdout.isatty():
        raise CliError("the bundle is a tar.gz: give -o FILE (or --part console|dmesg|client for text)", EXIT_USAGE)
    data = _bytes(f"/executions/{execution}/logs")
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        print(f"wrote {len(data)} bytes to {output}", file=sys.stderr)


def _bytes(path: str) -> bytes:
    """A binary answer (``request`` gives text): the same token and the same error lines."""
    headers = {"Authorization": f"Bearer {tok}"} if (tok := token()) else {}
    try:
        with httpx.Client(base_url=base_url(), timeout=120) as http:
            response = http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise unreachable(f"cannot connect ({exc})") from None
    if response.status_code >= 400:
        request("GET", path)  # raises the api's error as every other command shows it
        raise CliError(f"HTTP {response.status_code}", EXIT_API_ERROR)
    return response.content
