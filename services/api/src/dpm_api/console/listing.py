"""The machine list's paging and search, as SQL built by pure functions: the filter and the page run in
PostgreSQL on ``api.machines`` (ordered by ``name, machine_id``, which its index serves), so a page of
a 10,000-machine fleet costs one small query, never the whole table in Python."""

from __future__ import annotations

from dataclasses import dataclass

from dpm_schemas.ids import normalize_mac

PAGE_SIZE = 50
MAX_QUERY = 200  # longer search text is cut: nothing in a name, MAC or IP is that long


@dataclass(frozen=True, slots=True)
class Page:
    """Page ``number`` (from 1) of ``total`` rows, ``size`` per page."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None

    @property
    def first_row(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last_row(self) -> int:
        return min(self.total, self.offset + self.size)


def page_number(raw: str | None) -> int:
    """``?page=`` as a page number: anything not a positive integer is page 1."""
    try:
        number = int(raw or "1")
    except ValueError:
        return 1
    return number if 1 <= number <= 1_000_000 else 1


def clamp(number: int, size: int, total: int) -> Page:
    """The page asked for, or the last one when the list got shorter than that."""
    page = Page(1, size, total)
    return Page(min(number, page.pages), size, total)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def where(q: str | None, group: str | None) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause (or "") and its parameters: ``q`` matches a name by substring (any case), an
    IP address by prefix, or a MAC exactly (any spelling; the GIN index on macs finds it); ``group``
    is one group's exact name."""
    clauses: list[str] = []
    params: list[object] = []
    text = (q or "").strip()[:MAX_QUERY]
    if text:
        alternatives = ["name ILIKE %s", "ip LIKE %s"]
        params += [f"%{_like(text)}%", f"{_like(text)}%"]
        try:
            mac = normalize_mac(text)
        except ValueError:  # UnusableMac is one too: a multicast MAC is no machine's
            mac = None
        if mac is not None:
            alternatives.append("macs @> ARRAY[%s]::text[]")
            params.append(mac)
        clauses.append("(" + " OR ".join(alternatives) + ")")
    if group:
        clauses.append("group_name = %s")
        params.append(group)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
