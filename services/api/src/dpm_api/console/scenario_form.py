"""The scenario form (pure): its fields per kind, what a posted form means as the REST body
(``ScenarioIn``), a saved spec as form values, and every refusal -- pydantic's, field by field, and
the save's DpmError -- mapped to the field it is about, with the code and message the API answers.

One form serves every kind: the options every kind has, the multicast conditions, and one fieldset
of parameters per kind (named ``<kind>.<key>``), so switching the kind keeps what was typed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dpm_api.domain.scenarios import PARAMS
from dpm_schemas import E, text
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import UNAVAILABLE_KINDS, ScenarioKind, ScenarioSpec

FORM = "form"  # a refusal about no one field: shown above the form
FLAGS = ("reboot_at_start", "power_off_at_end")
MULTICAST = ("group", "max_targets", "max_wait_seconds", "max_rate_mbps")
Fields = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Param:
    """One kind-specific parameter as the form shows it."""

    key: str
    label: str
    widget: str = "text"  # text | number | flag | choice
    choices: tuple[str, ...] = ()
    hint: str = ""


_IMAGE = Param("image", "Image name", hint="a name or a template with {machine}, {mac}, {uuid}")
_DISK = Param("disk", "Disk number", "number", hint="1-999, default 1")
_PARTITION = Param("partition", "Partition number", "number", hint="1-999; empty: the whole disk")
_HIDDEN = Param("ignore_hidden", "Ignore hidden partitions", "flag")
# The parameters each kind's model (domain.scenarios.PARAMS) takes, in the form's order.
KIND_PARAMS: dict[ScenarioKind, tuple[Param, ...]] = {
    ScenarioKind.BACKUP: (_IMAGE, _DISK, _PARTITION, Param("mode", "Mode", "choice", ("used", "full")), _HIDDEN),
    ScenarioKind.RESTORE: (_IMAGE, _DISK, _PARTITION, _HIDDEN, Param("grow_gpt", "Grow the GPT to the disk", "flag")),
    ScenarioKind.DISK_CHECK: (),
    ScenarioKind.OS_INSTALL: (),
    ScenarioKind.REMOTE_UPDATE: (
        Param("packages", "Package IDs", hint="comma-separated registered package IDs"),
        Param("when", "When", "choice", ("now", "next-boot", "at-time")),
        Param("at", "At", hint="ISO 8601 time with a zone, only with when = at-time"),
    ),
    ScenarioKind.FIRMWARE: (),
    ScenarioKind.SIMULATED: (Param("seconds", "Seconds", "number", hint="0-604800, default 1"),),
}


@dataclass(frozen=True)
class Kind:
    value: str
    available: bool
    params: tuple[Param, ...]


KINDS = tuple(Kind(k.value, k not in UNAVAILABLE_KINDS, KIND_PARAMS[k]) for k in ScenarioKind)


def _one(fields: Fields, name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


def _kind(value: str) -> ScenarioKind | None:
    try:
        return ScenarioKind(value)
    except ValueError:
        return None


def params_of(fields: Fields, kind: ScenarioKind | None) -> dict[str, str]:
    """The chosen kind's parameters as typed; an empty field is left out (the kind's default)."""
    out: dict[str, str] = {}
    for p in KIND_PARAMS[kind] if kind is not None else ():
        raw = _one(fields, f"{kind}.{p.key}")
        value = ("true" if raw else "") if p.widget == "flag" else raw.strip() if p.widget == "number" else raw
        if value:
            out[p.key] = value
    return out


def body_of(fields: Fields) -> dict[str, Any]:
    """The posted form as the JSON body of ``POST /scenarios`` (validated by ``ScenarioIn``)."""
    kind = _one(fields, "kind")
    spec: dict[str, Any] = {"kind": kind, **{flag: bool(_one(fields, flag)) for flag in FLAGS}}
    if timeout := _one(fields, "timeout_seconds").strip():
        spec["timeout_seconds"] = timeout
    if _one(fields, "multicast"):
        spec["multicast"] = {k: v for k in MULTICAST if (v := _one(fields, f"multicast.{k}").strip())}
    spec["params"] = params_of(fields, _kind(kind))
    return {"name": _one(fields, "name"), "spec": spec}


def values_of(name: str, spec: ScenarioSpec) -> dict[str, str]:
    """A saved scenario as the form's values (a flag's value is "on" when set)."""
    values = {"name": name, "kind": spec.kind.value, "timeout_seconds": str(spec.timeout_seconds)}
    values.update({flag: "on" for flag in FLAGS if getattr(spec, flag)})
    if spec.multicast is not None:
        values["multicast"] = "on"
        for k in MULTICAST:
            if (v := getattr(spec.multicast, k)) is not None:
                values[f"multicast.{k}"] = str(v)
    for key, value in spec.params:
        if not _is_flag(spec.kind, key):
            values[f"{spec.kind.value}.{key}"] = value
        elif value == "true":
            values[f"{spec.kind.value}.{key}"] = "on"
    return values


def posted_values(fields: Fields) -> dict[str, str]:
    """What the operator typed, to show again beside the refusals."""
    return {k: v[0] for k, v in fields.items() if v and k != "csrf"}


def _is_flag(kind: ScenarioKind, key: str) -> bool:
    return any(p.key == key and p.widget == "flag" for p in KIND_PARAMS.get(kind, ()))


def field_of_loc(loc: Sequence[str | int], body: Mapping[str, Any]) -> str:
    """The form field a pydantic error location of ``ScenarioIn`` is about."""
    if not loc or loc[0] != "spec":
        return str(loc[0]) if loc and loc[0] == "name" else FORM
    rest = list(loc[1:])
    spec = body.get("spec") or {}
    if not rest:
        return FORM
    if rest[0] == "multicast":
        return f"multicast.{rest[1]}" if len(rest) > 1 and rest[1] in MULTICAST else "multicast"
    if rest[0] == "params":
        pairs = sorted((spec.get("params") or {}).items())  # the model holds them sorted (Params)
        if len(rest) > 1 and isinstance(rest[1], int) and rest[1] < len(pairs):
            return f"{spec.get('kind')}.{pairs[rest[1]][0]}"
        return FORM
    return str(rest[0]) if rest[0] in ("kind", "timeout_seconds", *FLAGS) else FORM


def pydantic_problems(exc: ValidationError, body: Mapping[str, Any]) -> dict[str, DpmError]:
    """Each refused field's first error, as the API answers it (``text.refusal`` of the body's error)."""
    out: dict[str, DpmError] = {}
    for err in exc.errors(include_input=False):
        field = field_of_loc(err["loc"], body)
        out.setdefault(field, text.refusal([{**err, "loc": ("body", *err["loc"])}]))
    return out


def field_of_error(err: DpmError, kind: str) -> str:
    """The form field a save-time refusal (``check_spec``, the name and group checks) is about."""
    reason = str(err.details.get("reason", ""))
    by_code = {
        E.SCENARIO_PARAM_INVALID.code: f"{kind}.{err.details.get('key', '')}",
        E.IMAGE_INVALID.code: f"{kind}.image",
        E.REMOTE_UPDATE_PARAMS_INVALID.code: f"{kind}.{err.details.get('param', '')}",
        E.MULTICAST_GROUP_IN_USE.code: "multicast.group",
        E.KIND_NOT_AVAILABLE.code: "multicast" if "multicast" in reason else "kind",
    }
    if err.code in by_code:
        return by_code[err.code]
    if err.code == E.SCENARIO_INVALID.code:
        if reason.startswith("the name"):
            return "name"
        return "multicast.group" if "usable multicast group" in reason else "multicast"
    return FORM


def known_field(field: str) -> str:
    """``field`` if the form has it, else FORM (a refusal is never lost for want of a place)."""
    names = {"name", "kind", "timeout_seconds", "multicast", *FLAGS, *(f"multicast.{k}" for k in MULTICAST)}
    names |= {f"{k.value}.{p.key}" for k in KINDS for p in k.params}
    return field if field in names else FORM


def model_keys(kind: ScenarioKind) -> set[str]:
    """The keys the kind's parameter model takes (the unit test pins the form to them)."""
    model = PARAMS.get(kind)
    return set(model.model_fields) if model is not None else set()
