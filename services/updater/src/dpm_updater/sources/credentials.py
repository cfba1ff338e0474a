"""Proxy credentials of package sources, from the updater's own settings and never from the log:
``DPM_UPDATER_SOURCE_CREDENTIALS`` names a JSON file (mode 0600, not readable by group or others)
mapping a source's name to ``{"username": ..., "password": ...}``. It is read at every sync, so a
rotated password needs no restart; an unusable file fails the sync with DPM-E295."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from dpm_schemas import E


def credentials_for(path: Path | None, source: str) -> tuple[str, str] | None:
    """(username, password) for ``source``, or None when the file names none (or there is no file)."""
    if path is None:
        return None
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            raise E.SOURCE_CREDENTIALS_INVALID(path=str(path), reason=f"mode {oct(mode & 0o777)}, it must be 0600")
        table = json.loads(path.read_text())
    except OSError as exc:
        raise E.SOURCE_CREDENTIALS_INVALID(path=str(path), reason=exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise E.SOURCE_CREDENTIALS_INVALID(path=str(path), reason=f"not JSON ({exc})") from None
    entry = table.get(source) if isinstance(table, dict) else None
    if entry is None:
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("username", "password")):
        raise E.SOURCE_CREDENTIALS_INVALID(path=str(path), reason=f"{source}: username and password are strings")
    return entry["username"], entry["password"]


def proxy_with(proxy: str, credentials: tuple[str, str] | None) -> str:
    """The proxy URL with the credentials in it (what the HTTP client authenticates with)."""
    if credentials is None:
        return proxy
    parts = urlsplit(proxy)
    user, password = (quote(c, safe="") for c in credentials)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
