"""Pure helpers of the resource pages: sizes for people, an image's verification state, and turning
a submitted form into the body its REST route takes (the route's own model then validates it, so a
form and a JSON request are refused alike, with the same codes). No I/O: unit-tested exactly."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_LIST = re.compile(r"[\s,]+")
RANGE_FIELDS = ("start", "end", "subnet", "router", "dns", "lease_seconds")


def human_bytes(size: int | None) -> str:
    """``1536`` -> "1.5 KiB"; bytes below 1 KiB exactly ("512 B"); None -> "unknown"."""
    if size is None:
        return "unknown"
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def stored_share(captured: int, stored: int) -> str:
    """What the store keeps of what was captured, as a percentage ("n/a" for an empty capture)."""
    if captured <= 0:
        return "n/a"
    return f"{100 * stored / captured:.0f} %"


def stamp(value: datetime | str | None) -> str:
    """A time (a datetime or an ISO 8601 string, as the routes give them) as "YYYY-MM-DD HH:MM:SS UTC";
    "never" for None, and text that is not a time as it came (cut to 40 characters)."""
    if value is None or value == "":
        return "never"
    try:
        at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return str(value)[:40]
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def verification(image: Mapping[str, Any]) -> tuple[str, str]:
    """(text, css state) of an image's last verification: never, intact, or how many chunks are corrupt."""
    if image.get("verified_at") is None or image.get("verified_ok") is None:
        return "not verified", "unknown"
    if image["verified_ok"]:
        return f"intact (verified {stamp(image['verified_at'])})", "ok"
    corrupt = len(image.get("corrupt") or [])
    chunks = "corrupt chunk" if corrupt == 1 else "corrupt chunks"
    return f"{corrupt} {chunks} (verified {stamp(image['verified_at'])})", "bad"


def words(text: str) -> list[str]:
    """A list typed into one field: separated by commas, spaces or line breaks; blanks dropped."""
    return [w for w in _LIST.split(text) if w]


def or_none(text: str) -> str | None:
    return text or None


def zoned(when: str, timezone: str) -> str:
    """A ``datetime-local`` value read in the schedule's own zone (a naive time means the zone's
    wall clock); left as typed when it is not a time or the zone is unknown, for the route's
    model and checks to refuse it with their own codes."""
    try:
        parsed = datetime.fromisoformat(when)
        zone = ZoneInfo(timezone)
    except (ValueError, ZoneInfoNotFoundError):
        return when
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).isoformat()


def schedule_body(fields: Mapping[str, str]) -> dict[str, Any]:
    """The body of ``POST /schedules`` from the schedule form: the kind picks ``at`` or ``cron``."""
    timezone = fields.get("timezone") or "UTC"
    once = fields.get("when_kind", "cron") == "at"
    return {
        "name": fields.get("name", ""),
        "action": fields.get("action", ""),
        "scenario": or_none(fields.get("scenario", "")) if fields.get("action") == "run" else None,
        "machines": words(fields.get("machines", "")),
        "group": or_none(fields.get("group", "")),
        "at": zoned(fields.get("at", ""), timezone) if once and fields.get("at") else None,
        "cron": None if once else or_none(fields.get("cron", "")),
        "timezone": timezone,
        "enabled": fields.get("enabled") == "on",
    }


def range_rows(fields: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The DHCP ranges of the boot settings form: row i is the i-th value of each ``range_<f>``
    field; a row left wholly blank is dropped, a partly filled one goes to the model as typed."""
    columns = {f: list(fields.get(f"range_{f}", [])) for f in RANGE_FIELDS}
    count = max((len(c) for c in columns.values()), default=0)
    rows = []
    for i in range(count):
        cells = {f: (columns[f][i].strip() if i < len(columns[f]) else "") for f in RANGE_FIELDS}
        if not any(cells.values()):
            continue
        row: dict[str, Any] = {"start": cells["start"], "end": cells["end"], "subnet": cells["subnet"]}
        if cells["router"]:
            row["router"] = cells["router"]
        row["dns"] = words(cells["dns"])
        if cells["lease_seconds"]:
            row["lease_seconds"] = cells["lease_seconds"]
        rows.append(row)
    return rows


def range_cells(ranges: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The saved ranges as the form's rows (strings), plus one blank row to add a range."""
    rows = [
        {
            "start": str(r.get("start") or ""),
            "end": str(r.get("end") or ""),
            "subnet": str(r.get("subnet") or ""),
            "router": str(r.get("router") or ""),
            "dns": ", ".join(str(d) for d in r.get("dns") or ()),
            "lease_seconds": str(r.get("lease_seconds") or ""),
        }
        for r in ranges
    ]
    return [*rows, dict.fromkeys(RANGE_FIELDS, "")]


def package_version(package: Mapping[str, Any]) -> str:
    """The version an operator knows a package by: its display version, else the system package's,
    else major.minor; "" when it has none."""
    if package.get("display_version"):
        return str(package["display_version"])
    if package.get("system_version"):
        return str(package["system_version"])
    major, minor = package.get("major_version"), package.get("minor_version")
    if major is None:
        return ""
    return f"{major}.{minor}" if minor is not None else str(major)


LABELS = {"id": "Package id", "os": "OS", "url": "URL", "sha256": "SHA-256", "cpe": "CPE", "kb": "KB"}
Fact = tuple[str, str | list[tuple[str, str]]]


def label(key: str) -> str:
    """A field name as people read it: "reboot_after_install" -> "Reboot after install"."""
    return LABELS.get(key) or key.replace("_", " ").capitalize()


def plain(value: Any) -> str:
    """One value as text: yes/no for booleans, "none" for an empty one, lists of plain values joined,
    anything deeper as compact JSON."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value in (None, "", [], (), {}):
        return "none"
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def fact_rows(facts: Mapping[str, Any]) -> list[Fact]:
    """A definition's fields as (label, text) rows for a <dl>, empty ones left out; a nested mapping
    (e.g. ``execution``) as its own labelled items (the template escapes every text)."""
    rows: list[Fact] = []
    for key, value in facts.items():
        if value in (None, "", [], (), {}):
            continue
        if isinstance(value, Mapping):
            rows.append((label(key), [(label(k), plain(v)) for k, v in value.items()]))
        else:
            rows.append((label(key), plain(value)))
    return rows
