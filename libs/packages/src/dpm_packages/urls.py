"""What is wrong with a package source's URL, if anything (pure): the one rule the api applies when
a source is saved and the updater's sync applies to its settings, each raising its own code."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def url_problem(url: str, *, schemes: tuple[str, ...], proxy: bool = False) -> str | None:
    """None for an absolute URL of one of ``schemes`` with a host and a valid port (a proxy: no
    path either), else why not, in words for an error message."""
    if _CONTROL.search(url):
        return "spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        return f"the scheme must be {' or '.join(schemes)}"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname or port == 0:
        return "no host" if not parts.hostname else "port 0"
    if proxy and (parts.path not in ("", "/") or parts.query or parts.fragment):
        return "a proxy URL has no path"
    return None
