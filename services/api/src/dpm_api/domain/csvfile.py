"""Machine CSV export/import as pure functions: parse (every error names line and column), render,
and plan an import as an idempotent upsert keyed by MAC or SMBIOS UUID. No I/O here."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol

from dpm_api.domain.rules import check_machine_name
from dpm_api.domain.view import MachineRow
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.ids import UnusableMac, normalize_mac
from dpm_schemas.text import control_character

COLUMNS = ("name", "macs", "smbios_uuid", "ip", "group", "os_type")
REQUIRED = ("name", "macs")


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """A machine as an operator describes it (form, CSV row): validated, MACs canonical."""

    name: str
    macs: tuple[str, ...]
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: str = NEW_MACHINES
    os_type: str | None = None
    line: int = 0  # where it came from, for errors found later (unknown group, clashes)

    def fields(self) -> dict[str, object]:
        return {
            "name": self.name,
            "macs": self.macs,
            "smbios_uuid": self.smbios_uuid,
            "ip": str(self.ip) if self.ip else None,
            "group": self.group,
            "os_type": self.os_type,
        }


def row_fields(row: MachineRow) -> dict[str, object]:
    return {
        "name": row.name,
        "macs": tuple(row.macs),
        "smbios_uuid": row.smbios_uuid,
        "ip": row.ip,
        "group": row.group_name,
        "os_type": row.os_type,
    }


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) phones home
# when the export is opened); such a cell gets a leading quote, which shows as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """Every text cell of every CSV export goes through this. A value that already starts with a
    quote gets one more, so ``unquote`` gives back exactly what was exported."""
    if isinstance(value, str) and value[:1] in (*FORMULA_START, "'"):
        return f"'{value}"
    return value


def unquote(cell: str) -> str:
    """The inverse of ``spreadsheet_safe`` for import: ``'=x`` -> ``=x``, ``''x`` -> ``'x``."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in (*FORMULA_START, "'") else cell


def render(rows: Iterable[MachineRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in sorted(rows, key=lambda r: (r.name, str(r.machine_id))):
        cells = [r.name, " ".join(r.macs), r.smbios_uuid or "", r.ip or "", r.group_name, r.os_type or ""]
        writer.writerow([spreadsheet_safe(c) for c in cells])
    return out.getvalue()


def parse(text: str) -> list[MachineSpec]:
    """Every row, validated; the first problem raises DPM-E110 naming line, column and field."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _header(reader)
    specs: list[MachineSpec] = []
    owners: dict[str, int] = {}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise E.CSV_INVALID(line=reader.line_num, column=1, field="-", reason=str(exc)) from None
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise E.CSV_INVALID(
                line=reader.line_num,
                column=min(len(cells), len(header)) + 1,
                field="-",
                reason=f"{len(cells)} cells, the header has {len(header)}",
            )
        spec = _row(dict(zip(header, cells, strict=True)), header, reader.line_num)
        _claim(owners, spec, header)
        specs.append(spec)
    return specs


def _header(reader: Iterator[list[str]]) -> list[str]:
    """The header line, lower-cased: known columns, each once, the required ones present."""
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise E.CSV_INVALID(line=1, column=1, field="header", reason=str(exc)) from None
    if not header:
        raise E.CSV_INVALID(line=1, column=1, field="header", reason="the file is empty")
    header = [h.strip().lower() for h in header]
    for col, name in enumerate(header, start=1):
        if name not in COLUMNS:
            raise E.CSV_INVALID(line=1, column=col, field=name, reason=f"unknown column; expected {', '.join(COLUMNS)}")
        if header.index(name) != col - 1:
            raise E.CSV_INVALID(line=1, column=col, field=name, reason="column given twice")
    for name in REQUIRED:
        if name not in header:
            raise E.CSV_INVALID(line=1, column=len(header) + 1, field=name, reason="required column missing")
    return header


def _claim(owners: dict[str, int], spec: MachineSpec, header: Sequence[str]) -> None:
    """Record the row's identities (MACs, SMBIOS UUID); one a previous row has is DPM-E110."""
    for identity in identities(spec):
        if identity in owners:
            raise E.CSV_INVALID(
                line=spec.line,
                column=list(header).index(identity.split(":", 1)[0].replace("mac", "macs")) + 1,
                field=identity,
                reason=f"also on line {owners[identity]}",
            )
        owners[identity] = spec.line


def _row(cells: Mapping[str, str], header: Sequence[str], line: int) -> MachineSpec:
    def fail(column: str, reason: str) -> DpmError:
        return E.CSV_INVALID(line=line, column=header.index(column) + 1, field=column, reason=reason)

    for column, value in cells.items():  # before anything else: a NUL must never reach the log
        if (bad := control_character(value)) is not None:
            raise fail(column, f"contains the control character U+{ord(bad):04X}; remove it")
    name = cells["name"].strip()
    os_type = unquote(cells.get("os_type", "").strip()) or None
    try:
        check_machine_name(name, os_type)
    except DpmError as exc:
        raise fail("name", exc.message) from None
    macs: list[str] = []
    for raw in cells["macs"].replace(";", " ").replace(",", " ").split():
        try:
            mac = normalize_mac(raw)
        except UnusableMac as exc:
            raise fail("macs", f"{exc}: no network card has it as its own address") from None
        except ValueError:
            raise fail("macs", f"“{raw}” is not a MAC address") from None
        if mac not in macs:
            macs.append(mac)
    if not macs:
        raise fail("macs", "at least one MAC address is required")
    smbios = None
    if raw_uuid := cells.get("smbios_uuid", "").strip():
        try:
            smbios = uuid.UUID(raw_uuid)
        except ValueError:
            raise fail("smbios_uuid", f"“{raw_uuid}” is not a UUID") from None
    ip = None
    if raw_ip := cells.get("ip", "").strip():
        try:
            ip = ip_address(raw_ip)
        except ValueError:
            raise fail("ip", f"“{raw_ip}” is not an IP address") from None
    group = unquote(cells.get("group", "").strip()) or NEW_MACHINES
    return MachineSpec(name=name, macs=tuple(macs), smbios_uuid=smbios, ip=ip, group=group, os_type=os_type, line=line)


class HasIdentity(Protocol):
    @property
    def macs(self) -> Sequence[str]: ...

    @property
    def smbios_uuid(self) -> uuid.UUID | None: ...


def identities(spec: HasIdentity) -> list[str]:
    """The natural keys a machine claims: each MAC and its SMBIOS UUID."""
    keys = [f"mac:{m}" for m in spec.macs]
    if spec.smbios_uuid is not None:
        keys.append(f"smbios:{spec.smbios_uuid}")
    return keys


@dataclass
class ImportPlan:
    create: list[MachineSpec] = field(default_factory=list)
    update: list[tuple[MachineRow, MachineSpec, dict[str, tuple[object, object]]]] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "create": [s.fields() for s in self.create],
            "update": [
                {
                    "machine_id": str(row.machine_id),
                    "name": row.name,
                    "changes": {k: [_show(a), _show(b)] for k, (a, b) in changes.items()},
                }
                for row, _spec, changes in self.update
            ],
            "unchanged": self.unchanged,
        }


def _show(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return None if value is None else value if isinstance(value, str) else str(value)


def plan_import(specs: Sequence[MachineSpec], existing: Sequence[MachineRow]) -> ImportPlan:
    """Match each row to the machine owning any of its MACs or its UUID; create, update or leave it."""
    owner = {identity: row for row in existing for identity in identities(row)}
    plan = ImportPlan()
    for spec in specs:
        matches = {owner[i].machine_id: owner[i] for i in identities(spec) if i in owner}
        if len(matches) > 1:
            raise E.CSV_INVALID(
                line=spec.line,
                column=2,
                field="macs",
                reason="its MACs/UUID belong to several machines: " + ", ".join(r.name for r in matches.values()),
            )
        if not matches:
            plan.create.append(spec)
            continue
        (row,) = matches.values()
        before, after = row_fields(row), spec.fields()
        changes = {k: (before[k], after[k]) for k in before if _norm(before[k]) != _norm(after[k])}
        if changes:
            plan.update.append((row, spec, changes))
        else:
            plan.unchanged += 1
    return plan


def _norm(value: object) -> object:
    return str(value) if isinstance(value, uuid.UUID) else value
