"""The api over HTTP for the CLI: base URL and token from the environment, errors with code and remedy."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from dpm_schemas import E, ports

# Stable exit codes: scripts can tell "the server said no" from "no server".
EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CliError(Exception):
    def __init__(self, text: str, exit_code: int) -> None:
        super().__init__(text)
        self.exit_code = exit_code


class StreamLost(CliError):
    """The event stream broke in a way a later connection may not: lost, refused, or a 5xx."""


def base_url() -> str:
    return os.environ.get("DPM_API_URL", f"http://127.0.0.1:{ports.API_HTTP}").rstrip("/")


def session_file() -> Path:
    return Path(os.environ.get("DPM_SESSION_FILE", Path.home() / ".config" / "dpm" / "token"))


def save_token(value: str) -> None:
    """Write the session token to a new 0600 file (created with that mode, never chmod-ed later) and
    rename it over the old one: a pre-existing file, whatever its mode, is replaced, not reused."""
    path = session_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # O_CREAT | O_EXCL, mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(value)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def forget_token() -> None:
    session_file().unlink(missing_ok=True)


def token() -> str | None:
    """DPM_API_TOKEN, else the session of `dpm login`, else the token `dpm up` wrote into var/api-token."""
    if value := os.environ.get("DPM_API_TOKEN"):
        return value
    if session_file().exists():
        return session_file().read_text().strip()
    path = Path(os.environ.get("DPM_TOKEN_FILE", Path(os.environ.get("DPM_STACK_VAR_DIR", "var")) / "api-token"))
    return path.read_text().strip() if path.exists() else None


def unreachable(reason: str) -> CliError:
    """DPM-E022 (not ready) with the CLI's remedy: the API is usually just not started."""
    err = E.NOT_READY(service=f"the dpm API at {base_url()}", reason=reason)
    return CliError(f"{err.code} {err.message}\n  remedy: start it with `make up` (or `dpm up`), or set DPM_API_URL.",
                    EXIT_UNREACHABLE)  # fmt: skip


def request(method: str, path: str, *, raw: bool = False, anonymous: bool = False, **kwargs: Any) -> Any:
    """Call the API; JSON back (or the text with ``raw``); errors become CliError with code and remedy."""
    headers = kwargs.pop("headers", {})
    if not anonymous and (tok := token()):
        headers["Authorization"] = f"Bearer {tok}"
    try:
        with httpx.Client(base_url=base_url(), timeout=float(os.environ.get("DPM_CLI_TIMEOUT", "120"))) as http:
            response = http.request(method, path, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise unreachable(f"cannot connect ({exc})") from None
    if response.status_code >= 400:
        try:
            err = response.json()["error"]
            text = f"{err['code']} {err['message']}\n  remedy: {err['remedy']}"
        except (ValueError, KeyError, TypeError):
            text = f"HTTP {response.status_code}: {response.text[:500]}"
        raise CliError(text, EXIT_API_ERROR)
    if raw:
        return response.text
    return response.json() if response.content else None


def stream_events(path: str, params: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Server-sent events from the API as (event, data) pairs, data decoded from JSON."""
    headers = {"Authorization": f"Bearer {tok}"} if (tok := token()) else {}
    try:
        with (
            httpx.Client(base_url=base_url(), timeout=httpx.Timeout(30, read=None)) as http,
            http.stream("GET", path, params=params, headers=headers) as response,
        ):
            if response.status_code >= 400:
                response.read()
                kind = StreamLost if response.status_code >= 500 else CliError
                raise kind(f"HTTP {response.status_code}: {response.text[:500]}", EXIT_API_ERROR)
            event, data = "message", ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    yield event, json.loads(data)
                    event, data = "message", ""
    except httpx.HTTPError as exc:
        lost = unreachable(f"the connection was lost ({exc or type(exc).__name__})")
        raise StreamLost(str(lost), lost.exit_code) from None


def reconnecting_events(
    path: str,
    params: dict[str, Any],
    *,
    reconnect_for: float,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[str, Any]]:
    """``stream_events``, connected again (with backoff) whenever the stream breaks or ends early --
    an api restart takes about a second -- until ``reconnect_for`` seconds pass without a working
    connection; then the loss is the caller's. It ends after the stream's ``end`` event. Each new
    connection repeats the current state, so callers skip what they have already shown."""
    attempt, lost_at = 0, None
    while True:
        try:
            for event, data in stream_events(path, params):
                attempt, lost_at = 0, None
                yield event, data
                if event == "end":
                    return
            reason = "the stream ended early"
        except StreamLost as exc:
            reason = str(exc).splitlines()[0]
        lost_at = lost_at if lost_at is not None else time.monotonic()
        attempt += 1
        delay = min(0.5 * 2.0 ** (attempt - 1), 5.0)
        if time.monotonic() - lost_at + delay > reconnect_for:
            raise unreachable(f"no connection for {reconnect_for:.0f} s ({reason})")
        say(f"lost the API connection ({reason}); reconnecting in {delay:.1f} s (attempt {attempt})")
        sleep(delay)
