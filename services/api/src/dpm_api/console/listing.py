"""The machine list's paging and search, as SQL built by pure functions: the filter and the page run in
PostgreSQL on ``api.machines`` (ordered by ``name, machine_id``, which its index serves), so a page of
a 10,000-machine fleet costs one small query, never the whole table in Python."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class GroupNode:
    """One group of the sidebar's tree: a name split on ``.`` (``site.floor1`` sits under ``site``);
    ``count`` is its own machines, ``total`` those of it and every group below it. A node that is
    only a prefix of other groups' names (no group of its own) has ``real`` False and no link."""

    name: str  # the full group name
    label: str  # the last part, what the tree shows
    count: int = 0
    real: bool = False
    children: list[GroupNode] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.count + sum(c.total for c in self.children)


def group_tree(groups: Iterable[str], counts: Mapping[str, int]) -> list[GroupNode]:
    """The groups (and any group name machines carry without a group of its own) as a tree, each
    level ordered by name, with machine counts."""
    roots: list[GroupNode] = []
    index: dict[str, GroupNode] = {}
    for name in sorted(set(groups) | set(counts)):
        parts = name.split(".") if all(name.split(".")) else [name]
        siblings, path = roots, ""
        for part in parts:
            path = f"{path}.{part}" if path else part
            if path not in index:
                index[path] = GroupNode(name=path, label=part)
                siblings.append(index[path])
            siblings = index[path].children
        index[path].real, index[path].count = True, counts.get(name, 0)
    return roots
