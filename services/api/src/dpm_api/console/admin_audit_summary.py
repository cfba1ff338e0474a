"""What each change of an audit page did, in a line: the event's main fields ("username: admin1,
role: admin"), read for the page's positions only (one query per page, at most a page of rows), so
the log's rows say more than a stream id and an event type. Secrets (hashes, tokens, passwords)
are never shown; the template escapes every text."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dpm_runtime.service import Runtime
from dpm_schemas.codec import decode_payload

SECRET = re.compile(r"hash|secret|token|password|salt|digest|signature", re.IGNORECASE)
FIELDS = 4  # fields shown per change
WIDTH = 60  # characters per value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        plain = [str(v) for v in value if isinstance(v, str | int | float)]
        return (
            ", ".join(plain[:3]) + (f" and {len(value) - 3} more" if len(value) > 3 else "")
            if plain
            else f"{len(value)} items"
        )
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in list(value.items())[:3] if not isinstance(v, Mapping | list))
    text = str(value)
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def summary(fields: Mapping[str, Any]) -> str:
    """An event's fields as "name: value" pairs: named values before ids, empty and secret ones left out."""
    kept = [(k, v) for k, v in fields.items() if v not in (None, "", [], {}, ()) and not SECRET.search(k)]
    kept.sort(key=lambda kv: kv[0].endswith("_id"))  # stable: names and values first, then ids
    return "; ".join(f"{k.replace('_', ' ')}: {_text(v)}" for k, v in kept[:FIELDS])


async def summaries(rt: Runtime, positions: Sequence[int]) -> dict[int, str]:
    """The summary of each event at ``positions`` (a page of the audit log)."""
    if not positions:
        return {}
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT position, type, schema_version, data FROM events WHERE position = ANY(%s)",
            (list(positions),),
            binary=True,
        )
        rows = await cur.fetchall()
    out = {}
    for position, type_, version, data in rows:
        try:
            out[int(position)] = summary(decode_payload(type_, version, data).model_dump(mode="json"))
        except Exception:  # an event this api cannot decode still lists, without a summary
            out[int(position)] = ""
    return out
