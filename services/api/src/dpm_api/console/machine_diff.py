"""The CSV import's preview, as pure functions: what a file would add, change and leave alone, and
which rows would be refused and why, computed with the REST import's own parser and plan
(``dpm_api.domain.csvfile``). The REST import refuses a whole file for its first bad row; the preview
judges every row alone, so an operator sees all the problems at once and can apply the rest: the
accepted rows, exactly as they were written, go to the REST import (all of them, or none)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from dpm_api.domain import csvfile
from dpm_api.domain.csvfile import MachineSpec
from dpm_api.domain.view import MachineRow
from dpm_schemas import E
from dpm_schemas.errors import DpmError


@dataclass(frozen=True, slots=True)
class Refused:
    line: int
    name: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Changed:
    line: int
    machine_id: str
    name: str
    changes: tuple[tuple[str, str, str], ...]  # field, before, after


@dataclass
class Preview:
    header: list[str]
    added: list[MachineSpec] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)
    unchanged: list[tuple[int, str]] = field(default_factory=list)  # line, name
    refused: list[Refused] = field(default_factory=list)
    records: dict[int, list[str]] = field(default_factory=dict)  # line -> cells, of the rows not refused

    def accepted_csv(self) -> str:
        """The rows that were not refused, as written (for the REST import to parse again)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(cells for _line, cells in sorted(self.records.items()))
        return out.getvalue()

    def digest(self) -> str:
        """What the operator was shown, in one value: the apply step recomputes it and refuses to
        import when it differs (the file or the fleet changed meanwhile)."""
        shown = {
            "added": [[s.line, show(s.fields())] for s in self.added],
            "changed": [[c.line, c.machine_id, c.changes] for c in self.changed],
            "unchanged": self.unchanged,
            "refused": [[r.line, r.code, r.reason] for r in self.refused],
        }
        return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()


def show(fields: dict[str, object]) -> dict[str, str]:
    return {k: _text(v) for k, v in fields.items()}


def _text(value: object) -> str:
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _reason(err: DpmError) -> str:
    """A refusal without the REST's "Nothing was imported." (here the other rows can be)."""
    d = err.details
    if err.code == E.CSV_INVALID.code:
        return f"column {d.get('column')} ({d.get('field')}): {d.get('reason')}"
    return err.message


def preview(text: str, existing: Sequence[MachineRow], groups: Collection[str]) -> Preview:
    """Every row of ``text`` judged: a malformed header or CSV syntax refuses the file (DPM-E110, as
    the REST import would); a bad row, a row claiming a MAC or UUID an earlier row has, an unknown
    group, MACs of several machines, or a name another machine holds refuses that row only."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = csvfile._header(reader)
    out = Preview(header=header)
    specs = _rows(reader, header, out, set(groups))
    _plan(specs, existing, out)
    return out


def _rows(reader: Any, header: list[str], out: Preview, groups: set[str]) -> list[MachineSpec]:
    owners: dict[str, int] = {}
    specs: list[MachineSpec] = []
    for line, cells in _records(reader):
        if not any(c.strip() for c in cells):
            continue
        try:
            if len(cells) != len(header):
                reason = f"{len(cells)} cells, the header has {len(header)}"
                raise E.CSV_INVALID(line=line, column=min(len(cells), len(header)) + 1, field="-", reason=reason)
            spec = csvfile._row(dict(zip(header, cells, strict=True)), header, line)
            claimed = dict(owners)
            csvfile._claim(claimed, spec, header)
            if spec.group not in groups:
                column = header.index("group") + 1 if "group" in header else len(header) + 1
                raise E.CSV_INVALID(line=line, column=column, field="group", reason=f"no group named “{spec.group}”")
        except DpmError as err:
            out.refused.append(Refused(line, _name(cells, header), err.code, _reason(err)))
            continue
        owners = claimed
        specs.append(spec)
        out.records[line] = cells
    return specs


def _records(reader: Any) -> list[tuple[int, list[str]]]:
    """The data rows and the line each ends on (as the REST import counts lines); a CSV syntax
    error refuses the file, since what follows it cannot be trusted."""
    rows = []
    while True:
        try:
            cells = next(reader)
            rows.append((reader.line_num, cells))
        except StopIteration:
            return rows
        except csv.Error as exc:
            raise E.CSV_INVALID(line=reader.line_num, column=1, field="-", reason=str(exc)) from None


def _name(cells: list[str], header: list[str]) -> str:
    return cells[header.index("name")].strip()[:253] if len(cells) > header.index("name") else ""


def _plan(specs: list[MachineSpec], existing: Sequence[MachineRow], out: Preview) -> None:
    """The REST import's plan; a row whose MACs/UUID belong to several machines is refused alone."""
    while True:
        try:
            plan = csvfile.plan_import(specs, existing)
            break
        except DpmError as err:
            line = err.details.get("line")
            spec = next(s for s in specs if s.line == line)
            _refuse(out, spec, err)
            specs = [s for s in specs if s is not spec]
    names = {row.name.lower(): str(row.machine_id) for row in existing}
    for spec in plan.create:
        if not _take(names, spec, None, out):
            out.added.append(spec)
    for row, spec, changes in plan.update:
        if _take(names, spec, str(row.machine_id), out):
            continue
        if row.name.lower() != spec.name.lower():  # renamed: its old name is free for later rows
            names.pop(row.name.lower(), None)
        shown = tuple((k, _text(a), _text(b)) for k, (a, b) in changes.items())
        out.changed.append(Changed(spec.line, str(row.machine_id), row.name, shown))
    matched = {spec.line for spec in plan.create} | {spec.line for _r, spec, _c in plan.update}
    out.unchanged = [(s.line, s.name) for s in specs if s.line not in matched]


def _take(names: dict[str, str], spec: MachineSpec, machine_id: str | None, out: Preview) -> bool:
    """Claim the row's name as the import would (creates first, then updates, in file order);
    True, and the row refused, when another machine holds it (the REST import's DPM-E111)."""
    holder = names.get(spec.name.lower())
    if holder is not None and holder != machine_id:
        _refuse(out, spec, E.MACHINE_NAME_TAKEN(name=spec.name, machine_id=holder))
        return True
    names[spec.name.lower()] = machine_id or f"line {spec.line}"
    return False


def _refuse(out: Preview, spec: MachineSpec, err: DpmError) -> None:
    """A row refused after it parsed: as the REST import names such a problem, with its line."""
    if err.code != E.CSV_INVALID.code:
        err = E.CSV_INVALID(line=spec.line, column=1, field=err.code, reason=err.message)
    out.refused.append(Refused(spec.line, spec.name, err.code, _reason(err)))
    out.records.pop(spec.line, None)
    out.refused.sort(key=lambda r: r.line)
