"""Validate a raw package information dict (an API body, an uploaded info file) into a :class:`Package`.

A form wants every problem with its field, not the first one, so :func:`package_problems` returns
all coded errors and :func:`parse_package` raises one ``DPM-E213`` whose details list them (each with
its own code and field). The seed rules checked here (byte limits, strict dates, service-pack rules,
the "re-delivered forever" identification trap) are the ones pydantic's types cannot express.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from dpm_schemas.errors import DpmError, E
from dpm_schemas.packages import (
    AGENT_PACKAGE_ID,
    COMPANY_MAX,
    MS_NUMBER_MAX,
    PACKAGE_ID_MAX,
    SUMMARY_MAX,
    WINDOWS_COMMAND_MAX,
    WINDOWS_TYPES,
    ChangeType,
    Package,
    PackageType,
    Urgency,
)
from dpm_schemas.version import DPM_VERSION

_ID = re.compile(r"[A-Za-z0-9_-]+")
_DATE = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})")


def _bytes(value: object) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


def parse_release_date(value: object) -> dt.date | None:
    """``YYYY-MM-DD`` or the seed's ``YYYY/MM/DD``; anything else (2026/2/30, 26-1-1) is refused."""
    if value is None or value == "" or isinstance(value, dt.date):
        return value or None  # type: ignore[return-value]
    match = _DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None or value[4] != value[7]:  # type: ignore[index]
        raise E.PACKAGE_RELEASE_DATE_INVALID(field="release_date", value=value)
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise E.PACKAGE_RELEASE_DATE_INVALID(field="release_date", value=value) from None


def _seed_rules(raw: Mapping[str, Any]) -> list[DpmError]:
    problems: list[DpmError] = []
    pid = raw.get("id", "")
    if not isinstance(pid, str) or not pid:
        problems.append(E.PACKAGE_ID_INVALID(field="id", value=pid, reason="it is required"))
    elif _bytes(pid) > PACKAGE_ID_MAX:
        problems.append(E.PACKAGE_ID_INVALID(field="id", value=pid, reason=f"it is {_bytes(pid)} bytes (max 63)"))
    elif not _ID.fullmatch(pid):
        problems.append(E.PACKAGE_ID_INVALID(field="id", value=pid, reason="only A-Z a-z 0-9 - _ are allowed"))
    for field, limit, code in (
        ("company", COMPANY_MAX, E.PACKAGE_COMPANY_TOO_LONG),
        ("summary", SUMMARY_MAX, E.PACKAGE_SUMMARY_TOO_LONG),
        ("ms_number", MS_NUMBER_MAX, E.PACKAGE_MS_NUMBER_TOO_LONG),
    ):
        if _bytes(raw.get(field)) > limit:
            problems.append(code(field=field, actual=_bytes(raw.get(field)), limit=limit))
    return problems + _choice_rules(raw)


def _choice_rules(raw: Mapping[str, Any]) -> list[DpmError]:
    """Enumerations, the release date and the service-pack rules."""
    problems: list[DpmError] = []
    try:
        parse_release_date(raw.get("release_date"))
    except DpmError as exc:
        problems.append(exc)
    kind = raw.get("type")
    if kind not in {t.value for t in PackageType}:
        allowed = ", ".join(t.value for t in PackageType)
        problems.append(E.PACKAGE_TYPE_UNKNOWN(field="type", value=kind, allowed=allowed))
    if "urgency" in raw and raw["urgency"] not in {u.value for u in Urgency}:
        problems.append(E.PACKAGE_URGENCY_UNKNOWN(field="urgency", value=raw["urgency"]))
    if kind == PackageType.SERVICE_PACK:
        for field in ("major_version", "minor_version"):
            if raw.get(field) is None:
                problems.append(E.PACKAGE_SERVICE_PACK_VERSION_REQUIRED(field=field))
        for field in ("base_service_pack", "absorbed_service_packs", "identification"):
            if raw.get(field):
                problems.append(E.PACKAGE_SERVICE_PACK_FIELD_NOT_ALLOWED(field=field))
    if raw.get("id") == AGENT_PACKAGE_ID and agent_release(raw.get("system_version")) != DPM_VERSION:
        problems.append(
            E.AGENT_PACKAGE_VERSION(
                field="system_version", package=AGENT_PACKAGE_ID, server=DPM_VERSION, value=raw.get("system_version")
            )
        )
    if bool(raw.get("display_name")) != bool(raw.get("display_version")):
        field = "display_version" if raw.get("display_name") else "display_name"
        problems.append(E.PACKAGE_DISPLAY_VERSION_REQUIRED(field=field))
    return problems + _type_rules(raw, kind)


def _type_rules(raw: Mapping[str, Any], kind: object) -> list[DpmError]:
    """Rules that depend on the package type and on the nested lists."""
    problems: list[DpmError] = []
    execution = raw.get("execution") or {}
    if kind in WINDOWS_TYPES and isinstance(execution, Mapping):
        line = f"{execution.get('command', '')} {execution.get('parameters', '')}".strip()
        if _bytes(line) > WINDOWS_COMMAND_MAX:
            problems.append(
                E.PACKAGE_COMMAND_TOO_LONG(field="execution.command", actual=_bytes(line), limit=WINDOWS_COMMAND_MAX)
            )
    for index, entry in enumerate(raw.get("identification") or ()):
        unversioned = isinstance(entry, Mapping) and not entry.get("version")
        if unversioned and entry.get("change") in (ChangeType.REWRITE, ChangeType.VERSION_UP):
            problems.append(
                E.PACKAGE_IDENTIFICATION_UNVERSIONED(
                    field=f"identification[{index}]", path=entry.get("path", ""), change=entry.get("change")
                )
            )
    for index, cond in enumerate(raw.get("conditions") or ()):
        compared = isinstance(cond, Mapping) and cond.get("kind") == "package-installed"
        if compared and cond.get("operator", "exists") not in ("exists", "not-exists") and not cond.get("version"):
            problems.append(
                E.PACKAGE_CONDITION_INVALID(
                    field=f"conditions[{index}].version", reason="a comparison operator needs a version"
                )
            )
    return problems


def agent_release(system_version: object) -> str:
    """The dpm release an agent package installs: its version without a packaging epoch or
    revision ("1:0.2.0-1" and "0.2.0-1.el9" are release 0.2.0), as the agent reports it."""
    if not isinstance(system_version, str):
        return ""
    return system_version.split(":", 1)[-1].split("-", 1)[0]


_SEED_FIELDS = {"id", "type", "urgency", "release_date", "company", "summary", "ms_number"}


def package_problems(raw: Mapping[str, Any]) -> tuple[tuple[DpmError, ...], Package | None]:
    """Every problem of ``raw`` (coded, each with ``field``), and the package when there are none."""
    problems = _seed_rules(raw)
    data = dict(raw)
    try:
        data["release_date"] = parse_release_date(raw.get("release_date"))
    except DpmError:
        data.pop("release_date", None)
    try:
        package = Package.model_validate(data)
    except ValidationError as exc:
        seen = {p.details.get("field") for p in problems}
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            if field in seen or (str(err["loc"][0]) in _SEED_FIELDS and str(err["loc"][0]) in seen):
                continue
            if str(err["loc"][0]) in ("id", "type", "urgency") and problems:
                continue
            problems.append(E.PACKAGE_FIELD_INVALID(field=field, reason=err["msg"]))
        return tuple(problems), None
    return tuple(problems), (None if problems else package)


def parse_package(raw: Mapping[str, Any]) -> Package:
    """The package, or ``DPM-E213`` listing every problem (``details['problems']``, each a coded dict)."""
    problems, package = package_problems(raw)
    if package is not None:
        return package
    if len(problems) == 1:
        raise problems[0]
    summary = "; ".join(f"{p.details.get('field')}: {p.code}" for p in problems)
    error = E.PACKAGE_INVALID(count=len(problems), summary=summary)
    error.details["problems"] = [p.to_dict() | {"field": p.details.get("field")} for p in problems]
    return _raise(error)


def _raise(error: DpmError) -> Package:
    raise error
