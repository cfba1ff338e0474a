"""The audit log page (admins): who did what, from ``GET /audit``'s own function (the event log, each
change with its actor), filtered by actor, action (event type), stream category and a time range,
a page at a time by position. The REST route filters by position, not time: the start of a time
range is found by bisecting positions with that same function (the log's positions and record
times grow together), the end by cutting the page. Each row's summary (what the change did) is read
for the page's positions only (admin_audit_summary). "Previous page" works by the trail of earlier
cursors the page's address carries (``back``), as the REST route pages forward only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import admin_audit_summary, pages, res_kit, res_text
from dpm_api.routes import auth as auth_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/audit"
SIZES = (25, 50, 100, 200)
TRAIL = 50  # earlier pages remembered for "Previous page"
Probe = Callable[[int], Awaitable[datetime | None]]  # the record time of the first event after a position


@dataclass(frozen=True, slots=True)
class Filters:
    actor: str = ""
    action: str = ""
    category: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after: int = 0
    size: int = 50
    back: tuple[int, ...] = ()  # the cursors of the pages before this one, oldest first

    def query(self, **changed: Any) -> str:
        """This filter's page address, with ``changed`` fields replaced (blank ones left out)."""
        values = {
            "actor": self.actor, "action": self.action, "category": self.category, "since": moment(self.since),
            "until": moment(self.until), "after": self.after or "", "size": self.size,
            "back": ",".join(str(b) for b in self.back), **changed,
        }  # fmt: skip
        return f"{HOME}?{urlencode({k: v for k, v in values.items() if v not in ('', None)})}"


def moment(at: datetime | None) -> str:
    """A time as a ``datetime-local`` field shows it (UTC, to the minute)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if at else ""


def parse_time(text: str, field: str) -> datetime | None:
    """A ``datetime-local`` value (a time without zone means UTC); blank: None; else DPM-E441."""
    if not text.strip():
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise E.CONSOLE_FIELD_INVALID(field=field, reason="not a date and time (YYYY-MM-DDTHH:MM)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse(params: dict[str, str]) -> Filters:
    """The filters of the page's query string, or DPM-E441 naming the field that is wrong."""
    try:
        after = int(params.get("after") or 0)
        size = int(params.get("size") or 50)
    except ValueError:
        raise E.CONSOLE_FIELD_INVALID(field="after/size", reason="not a whole number") from None
    if after < 0 or size not in SIZES:
        raise E.CONSOLE_FIELD_INVALID(field="after/size", reason=f"a position >= 0, and a size of {SIZES}")
    since, until = parse_time(params.get("since", ""), "since"), parse_time(params.get("until", ""), "until")
    if since and until and until < since:
        raise E.CONSOLE_FIELD_INVALID(field="until", reason="the range ends before it starts")
    clip = {k: params.get(k, "").strip()[:100] for k in ("actor", "action", "category")}
    trail = [b for b in params.get("back", "").split(",")[-TRAIL:] if b.strip()]
    if not all(b.strip().isdigit() for b in trail):
        raise E.CONSOLE_FIELD_INVALID(field="back", reason="not a list of positions")
    back = tuple(int(b) for b in trail)
    return Filters(**clip, since=since, until=until, after=after, size=size, back=back)


def pager(f: Filters, following: int | None) -> dict[str, Any]:
    """The pager's addresses: the next page (its trail extended by this one), the previous page (the
    trail's last), and the first page when the previous one is not already it."""
    trail = ",".join(str(b) for b in (*f.back, f.after)[-TRAIL:])
    previous = f.query(after=f.back[-1] or "", back=",".join(str(b) for b in f.back[:-1])) if f.back else None
    return {
        "next_url": f.query(after=following, back=trail) if following is not None else None,
        "prev_url": (previous or f.query(after="", back="")) if f.after else None,
        "first_url": f.query(after="", back="") if f.after and f.back and f.back[-1] else None,
    }


async def start(probe: Probe, since: datetime, head: int) -> int:
    """The smallest position ``a`` in [0, head] whose next event was recorded at or after ``since``
    (no next event counts as after): the cursor from which the range's events are listed."""
    low, high = 0, head
    while low < high:
        middle = (low + high) // 2
        at = await probe(middle)
        if at is None or at >= since:
            high = middle
        else:
            low = middle + 1
    return low


async def entries(rt: Runtime, admin: str, f: Filters) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the filtered log, and the cursor of the next page (None: this is the last)."""

    async def probe(after: int) -> datetime | None:
        found = await auth_routes.audit(rt, admin, None, None, None, after, 1)
        return found[0].recorded_at if found else None

    after = f.after
    if f.since is not None:
        after = max(after, await start(probe, f.since, await rt.eventlog.head()))
    found = await auth_routes.audit(rt, admin, f.actor or None, f.action or None, f.category or None, after, f.size + 1)
    rows = [e for e in found if (f.since is None or e.recorded_at >= f.since)]
    cut = [e for e in rows if f.until is None or e.recorded_at <= f.until]
    more = len(cut) == len(rows) and len(rows) > f.size
    page = cut[: f.size]
    said = await admin_audit_summary.summaries(rt, [e.position for e in page])
    shown = [
        {**e.model_dump(mode="json"), "at": res_text.stamp(e.recorded_at), "summary": said.get(e.position, "")}
        for e in page
    ]
    return shown, (page[-1].position if more and page else None)


@router.get("/console/audit")
async def audit_page(request: Request) -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "GET /audit")
    if isinstance(got, Response):
        return got
    rt, who = got
    params = dict(request.query_params)
    try:
        f = parse(params)
        rows, following = await entries(rt, who.principal.username, f)
    except DpmError as err:
        typed: dict[str, Any] = {k: params.get(k, "")[:100] for k in ("actor", "action", "category", "since", "until")}
        return pages.render(
            "audit.html", status=err.error.http_status, visitor=who, title="Audit log", nav="audit", rows=[],
            problem=res_kit.problem(err), values={**typed, "size": 50}, sizes=SIZES, next_url=None, first_url=None,
            prev_url=None,
        )  # fmt: skip
    values: dict[str, Any] = {"actor": f.actor, "action": f.action, "category": f.category, "since": moment(f.since)}
    values |= {"until": moment(f.until), "size": f.size}
    return pages.render(
        "audit.html", visitor=who, title="Audit log", nav="audit", rows=rows, problem=None, values=values,
        sizes=SIZES, **pager(f, following),
    )  # fmt: skip
