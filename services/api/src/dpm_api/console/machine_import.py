"""The CSV import with its preview, and the export. The preview (``machine_diff``, the REST import's
own parser and plan) shows what the file would add and change, what it leaves alone and which rows
would be refused with their codes; applying sends exactly the previewed rows to the REST import's
own function, after checking that the file and the fleet still give the preview that was shown
(DPM-E433 otherwise). The export is the REST export itself."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response

from dpm_api.console import machine_data, machine_diff, pages, security
from dpm_api.deps import get_runtime
from dpm_api.routes import machines as machine_routes
from dpm_runtime.http import max_body
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/machines"
MAX_CSV = 512 * 1024  # the CSV text one preview takes (it travels twice: pasted, then in the apply form)
MAX_BODY = 4 * MAX_CSV  # urlencoded, a CSV's commas and spaces take three bytes each
ROUTE = "POST /machines/import"


async def _posted(request: Request, rt: Runtime) -> tuple[pages.Visitor, dict[str, list[str]]]:
    """``pages.posted`` for a form larger than ``pages.MAX_FORM``: logged in, our origin, this
    session's CSRF token, then the REST import's role; the CSV at most MAX_CSV (DPM-E435)."""
    who = await pages.visitor(request, rt)
    if who is None:
        raise E.UNAUTHENTICATED()
    if not security.same_origin(request.headers, pages.origin(request)):
        raise E.CONSOLE_FORM_REFUSED(reason="it did not come from this console's own pages")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise E.CONSOLE_CSV_TOO_LARGE(size=len(raw), limit=MAX_CSV)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    if not security.csrf_ok(who.token, pages.one(fields, "csrf")):
        raise E.CONSOLE_FORM_REFUSED(reason="its CSRF token is missing or not this session's")
    who.principal.require(Role.OPERATOR, ROUTE)
    size = len((pages.one(fields, "csv") or "").encode())
    if size > MAX_CSV:
        raise E.CONSOLE_CSV_TOO_LARGE(size=size, limit=MAX_CSV)
    return who, fields


async def _preview(rt: Runtime, text: str) -> machine_diff.Preview:
    """The preview against the fleet as it is now; a file the REST import refuses whole is DPM-E110."""
    async with rt.pool.connection() as conn:
        groups = await machine_data.group_names(conn)
    existing = await machine_routes.machine_rows(rt)
    return machine_diff.preview(text.lstrip("\ufeff"), existing, groups)


def _page(who: pages.Visitor, text: str, shown: machine_diff.Preview | None, error: DpmError | None) -> Response:
    return pages.render(
        "machine_import.html", status=error.error.http_status if error else 200, visitor=who,
        title="Import machines from CSV", nav="machines", csv=text, preview=shown,
        error=error.to_dict() if error else None, show=machine_diff.show, limit=MAX_CSV,
    )  # fmt: skip


@router.get("/console/machines/import")
async def import_page(request: Request) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(Role.OPERATOR, ROUTE)
    except DpmError as err:
        return pages.refusal(err, who)
    return _page(who, "", None, None)


@router.post("/console/machines/import")
@max_body(MAX_BODY + 1024)
async def preview(request: Request) -> Response:
    """The diff of the pasted CSV against the fleet; nothing is changed."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await _posted(request, rt)
    except DpmError as err:
        return pages.refusal(err, who)
    text = pages.one(fields, "csv") or ""
    try:
        return _page(who, text, await _preview(rt, text), None)
    except DpmError as err:
        return _page(who, text, None, err)


@router.post("/console/machines/import/apply")
@max_body(MAX_BODY + 1024)
async def apply(request: Request) -> Response:
    """Import the previewed rows, if the preview is still what the file and the fleet give."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await _posted(request, rt)
        text = pages.one(fields, "csv") or ""
        shown = await _preview(rt, text)
        if shown.digest() != pages.one(fields, "digest"):  # shown again as it is now, to check and apply
            stale = E.CONSOLE_IMPORT_STALE(reason="the machines or the file changed since the preview was shown")
            return _page(who, text, shown, stale)
        if not shown.records:
            raise E.CONSOLE_IMPORT_STALE(reason="the preview has no row to import")
        done = await machine_routes.import_machines(_body(shown.accepted_csv()), rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    count = len(done["create"]) + len(done["update"])
    return pages.redirect(f"{HOME}?done=imported&count={count}")


def _body(text: str) -> Request:
    """The REST import reads its CSV from the request body: a request carrying exactly this text."""
    data = text.encode()

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": data, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/machines/import", "headers": [], "query_string": b""}
    return Request(scope, receive)


@router.get("/console/machines/export.csv")
async def export(request: Request) -> Response:
    """The REST export (same columns, same spreadsheet-safe cells), with the console's session."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    out = await machine_routes.export_machines(rt, who.principal)
    out.headers.update(security.HEADERS)
    return out
