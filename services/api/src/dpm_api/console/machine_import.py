"""The CSV import with its preview, and the export. The CSV is an uploaded file (multipart, read with
python-multipart as Starlette's ``request.form()`` does; at most MAX_CSV, DPM-E435; UTF-8, DPM-E178)
or text pasted into the form. The preview (``machine_diff``, the REST import's
own parser and plan) shows what the file would add and change, what it leaves alone and which rows
would be refused with their codes; applying sends exactly the previewed rows to the REST import's
own function, after checking that the file and the fleet still give the preview that was shown
(DPM-E433 otherwise). The export is the REST export itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

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
MAX_CSV = 5 * 1024 * 1024  # the CSV one preview takes, uploaded or pasted (a 10,000-machine export is ~1 MiB)
# a multipart form carries the file and the pasted text as they are; a urlencoded one (a form posted
# without the page's enctype) takes up to three bytes per byte of CSV
MAX_BODY = 3 * MAX_CSV + 64 * 1024
ROUTE = "POST /machines/import"


@dataclass(frozen=True, slots=True)
class Posted:
    """A checked import form: the visitor, its text fields, and the uploaded file (name, bytes) if any."""

    who: pages.Visitor
    fields: dict[str, list[str]]
    upload: tuple[str, bytes] | None

    def text(self) -> str:
        """The CSV to preview: the uploaded file's text when a file was chosen, else the pasted text;
        DPM-E435 past MAX_CSV, DPM-E178 for a file that is not UTF-8."""
        if self.upload is None:
            return _sized(pages.one(self.fields, "csv") or "")
        name, data = self.upload
        if len(data) > MAX_CSV:
            raise E.CONSOLE_CSV_TOO_LARGE(size=len(data), limit=MAX_CSV)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            reason = f"byte {exc.start + 1} (0x{data[exc.start]:02x}) starts no UTF-8 character"
            raise E.CONSOLE_CSV_NOT_TEXT(file=name[:100], reason=reason) from None


def _sized(text: str) -> str:
    if (size := len(text.encode())) > MAX_CSV:
        raise E.CONSOLE_CSV_TOO_LARGE(size=size, limit=MAX_CSV)
    return text


async def _read(request: Request) -> tuple[dict[str, list[str]], tuple[str, bytes] | None]:
    """The form, multipart (the page's own, with its file) or urlencoded: text fields, and the chosen
    file's name and first MAX_CSV + 1 bytes (enough to tell it is too large). A body no form of ours
    sends is DPM-E431."""
    try:
        async with request.form(max_files=1, max_fields=8, max_part_size=MAX_BODY) as form:
            fields: dict[str, list[str]] = {}
            upload = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if value.filename:  # a file input left empty sends a part without a name
                        upload = (value.filename, await value.read(MAX_CSV + 1))
                else:
                    fields.setdefault(key, []).append(value)
    except HTTPException:
        raise E.CONSOLE_FORM_REFUSED(reason="its body is not a form the console's pages send") from None
    return fields, upload


async def _posted(request: Request, rt: Runtime) -> Posted:
    """``pages.posted`` with the multipart reader: logged in, our origin, this session's CSRF token,
    then the REST import's role, before the CSV is looked at."""
    uploads: list[tuple[str, bytes] | None] = []

    async def read(req: Request) -> dict[str, list[str]]:
        fields, upload = await _read(req)
        uploads.append(upload)
        return fields

    who, fields = await pages.posted(request, rt, Role.OPERATOR, ROUTE, read=read)
    return Posted(who, fields, uploads[0] if uploads else None)


async def _preview(rt: Runtime, text: str) -> machine_diff.Preview:
    """The preview against the fleet as it is now; a file the REST import refuses whole is DPM-E110."""
    async with rt.pool.connection() as conn:
        groups = await machine_data.group_names(conn)
    existing = await machine_routes.machine_rows(rt)
    return machine_diff.preview(text.lstrip("\ufeff"), existing, groups)


def _page(
    who: pages.Visitor, text: str, shown: machine_diff.Preview | None, error: DpmError | None, *, pasted: bool = True
) -> Response:
    """The import page: the preview (its apply form carries ``text``), the error, and the form again
    (the pasted text in its box; a file's text is not copied there)."""
    return pages.render(
        "machine_import.html", status=error.error.http_status if error else 200, visitor=who,
        title="Import machines from CSV", nav="machines", csv=text, pasted=text if pasted else "",
        preview=shown, error=error.to_dict() if error else None, show=machine_diff.show, limit=MAX_CSV,
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


async def _step(request: Request, then: Callable[[Runtime, Posted], Awaitable[Response]]) -> Response:
    """A checked import form handed to ``then``; a refusal before it is a refusal page."""
    rt = get_runtime(request)
    try:
        posted = await _posted(request, rt)
    except DpmError as err:
        return pages.refusal(err)
    try:
        return await then(rt, posted)
    except DpmError as err:
        return pages.refusal(err, posted.who)


@router.post("/console/machines/import")
@max_body(MAX_BODY)
async def preview(request: Request) -> Response:
    """The diff of the uploaded or pasted CSV against the fleet; nothing is changed. A CSV the
    console cannot take (too large, not UTF-8) or the REST import refuses whole is shown on the form."""

    async def show(rt: Runtime, posted: Posted) -> Response:
        pasted = posted.upload is None
        try:
            text = posted.text()
        except DpmError as err:
            return _page(posted.who, "", None, err)
        try:
            return _page(posted.who, text, await _preview(rt, text), None, pasted=pasted)
        except DpmError as err:
            return _page(posted.who, text, None, err, pasted=pasted)

    return await _step(request, show)


@router.post("/console/machines/import/apply")
@max_body(MAX_BODY)
async def apply(request: Request) -> Response:
    """Import the previewed rows, if the preview is still what the file and the fleet give."""

    async def run(rt: Runtime, posted: Posted) -> Response:
        text = _sized(pages.one(posted.fields, "csv") or "")
        shown = await _preview(rt, text)
        if shown.digest() != pages.one(posted.fields, "digest"):  # shown again as it is now, to check and apply
            stale = E.CONSOLE_IMPORT_STALE(reason="the machines or the file changed since the preview was shown")
            return _page(posted.who, text, shown, stale)
        if not shown.records:
            raise E.CONSOLE_IMPORT_STALE(reason="the preview has no row to import")
        done = await machine_routes.import_machines(_body(shown.accepted_csv()), rt, posted.who.principal.username)
        return pages.redirect(f"{HOME}?done=imported&count={len(done['create']) + len(done['update'])}")

    return await _step(request, run)


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
