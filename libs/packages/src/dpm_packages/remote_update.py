"""A remote-update step's parameters (``packages=ID[,ID...]``, ``when=now|next-boot|at-time``,
``at=<ISO 8601 time with a zone>``), parsed one way for the api, which refuses a bad scenario when it
is saved, and for the updater, which delivers the step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from dpm_schemas import E
from dpm_schemas.agent_protocol import MAX_ITEMS, InstallWhen
from dpm_schemas.events.scenarios import ScenarioSpec

_AT: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


@dataclass(frozen=True, slots=True)
class Request:
    """The step's parameters: ``packages=ID[,ID...]``, ``when=now|next-boot|at-time``, ``at=<ISO time>``."""

    package_ids: tuple[str, ...]
    when: InstallWhen
    at: datetime | None


def request_of(spec: ScenarioSpec) -> Request:
    """The step's parameters, or DPM-E282 naming the bad one (also how the api checks a save)."""
    raw = spec.param("packages", "")
    ids = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not ids:
        raise E.REMOTE_UPDATE_PARAMS_INVALID(param="packages", reason="name at least one package ID")
    bad = [p for p in ids if not _valid_id(p)]
    if bad:
        raise E.REMOTE_UPDATE_PARAMS_INVALID(param="packages", reason=f"not a package ID: {bad[0]!r}")
    if len(ids) > MAX_ITEMS:
        raise E.REMOTE_UPDATE_PARAMS_INVALID(
            param="packages", reason=f"{len(ids)} packages; one step takes {MAX_ITEMS}"
        )
    try:
        when = InstallWhen(spec.param("when", InstallWhen.NOW.value))
    except ValueError:
        raise E.REMOTE_UPDATE_PARAMS_INVALID(param="when", reason="one of now, next-boot, at-time") from None
    at_text = spec.param("at", "")
    if (when is InstallWhen.AT_TIME) != bool(at_text):
        raise E.REMOTE_UPDATE_PARAMS_INVALID(param="at", reason="required with when=at-time, and only then")
    return Request(ids, when, _parse_at(at_text) if at_text else None)


def _valid_id(text: str) -> bool:
    return 0 < len(text) <= 63 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def _parse_at(text: str) -> datetime:
    try:
        return _AT.validate_python(text)
    except ValidationError:
        raise E.REMOTE_UPDATE_PARAMS_INVALID(
            param="at", reason=f"{text!r} is not an ISO 8601 time with a zone"
        ) from None
