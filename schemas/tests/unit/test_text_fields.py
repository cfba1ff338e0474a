"""Every string of every event, command and agent frame refuses control characters and is bounded.

A NUL accepted at any edge used to reach the log and wedge the read model that stores it (PostgreSQL
refuses NUL in ``text`` and ``jsonb``). The walk goes through the validation JSON Schema, so nested
models, tuples, pairs and mappings are covered without listing fields by hand: a new field that is a
plain ``str`` fails here.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from dpm_schemas import agent_protocol
from dpm_schemas.base import REGISTRY
from dpm_schemas.events import ApiTokenIssued, DiskLayoutReported, GroupDefined, ScenarioSaved
from dpm_schemas.text import Label, LongText, Name, Text

BAD = ("\x00", "\x07", "\x1b", "\x7f", "\u0085")
GOOD = "Größe 日本"
# Strings pydantic types itself (uuid, date-time, addresses...) and enumerations are not free text.
TYPED_FORMATS = {
    "binary",
    "uuid",
    "date-time",
    "date",
    "time",
    "duration",
    "ipv4",
    "ipv6",
    "ipvanyaddress",
    "ipv4network",
}
FRAMES: list[type[BaseModel]] = [
    c for c in vars(agent_protocol).values() if isinstance(c, type) and issubclass(c, agent_protocol.Frame)
]
MODELS: list[type[BaseModel]] = [*REGISTRY.all(), *FRAMES]
# A directory listing's names are the machine's file names (POSIX allows any byte but NUL and "/"):
# they go back to the caller only, never into the log, and are escaped where shown.
EXEMPT = {"Entry.name", "CommandResult.entries<Entry>.name"}
# Patterns of fixed shape (MAC, SHA-256, IPv4) bound the length themselves.
BOUNDED_SHAPE = re.compile(r"^\^[^*+]*\$$")


def _string_nodes(node: Any, path: str, defs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, schema) of every free-text string node reachable from ``node``."""
    if isinstance(node, list):
        return [hit for i, item in enumerate(node) for hit in _string_nodes(item, f"{path}[{i}]", defs)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _string_nodes(defs[name], f"{path}<{name}>", defs)
    hits = []
    free = "enum" not in node and "const" not in node and node.get("format") not in TYPED_FORMATS
    if node.get("type") == "string" and free:
        hits.append((path, node))
    for key, child in node.items():
        if key in ("properties", "$defs"):
            hits += [h for name, sub in child.items() for h in _string_nodes(sub, f"{path}.{name}", defs)]
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "additionalProperties", "propertyNames"):
            hits += _string_nodes(child, path, defs)
    return hits


def _nodes_of(model: type[BaseModel]) -> list[tuple[str, dict[str, Any]]]:
    schema = model.model_json_schema(mode="validation")
    return _string_nodes({"properties": schema.get("properties", {})}, model.__name__, schema.get("$defs", {}))


CASES = [(path, node) for model in MODELS for path, node in _nodes_of(model) if path not in EXEMPT]


def test_the_walk_finds_the_fields_that_wedged_read_models() -> None:
    paths = {path for path, _ in CASES}
    for expected in (
        "ApiTokenIssued.name",
        "MachineRegistered.os_type",
        "GroupDefined.description",
        "ScheduleSaved.name",
        "ImageCaptured.label",
        "DiskLayoutReported.disks_json",
        "ScenarioSaved.spec<ScenarioSpec>.params",
    ):
        assert any(p.startswith(expected) for p in paths), expected


@pytest.mark.parametrize(("path", "node"), CASES, ids=[re.sub(r"[\[\]]", "_", path) for path, _ in CASES])
def test_every_string_field_refuses_control_characters_and_is_bounded(path: str, node: dict[str, Any]) -> None:
    assert "maxLength" in node or BOUNDED_SHAPE.match(node.get("pattern", "")), f"{path}: unbounded string"
    assert "pattern" in node, f"{path}: plain str; use a dpm_schemas.text type"
    checker = TypeAdapter(Annotated[str, StringConstraints(pattern=node["pattern"])])
    for bad in BAD:
        with pytest.raises(ValidationError):
            checker.validate_python(f"a{bad}b")


@pytest.mark.parametrize("kind", [Name, Label, Text, LongText])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=50))
def test_ordinary_text_passes_and_control_characters_never_do(kind: Any, sample: str) -> None:
    adapter = TypeAdapter(kind)
    assert adapter.validate_python(sample) == sample
    assert adapter.validate_python(GOOD) == GOOD
    for bad in BAD:
        with pytest.raises(ValidationError):
            adapter.validate_python(sample + bad)


def test_the_reported_attacks_are_refused_by_the_contract() -> None:
    token = {"token_id": uuid.uuid4(), "username": "viewer", "token_sha256": "0" * 64}
    assert ApiTokenIssued(**token, name=GOOD).name == GOOD
    with pytest.raises(ValidationError):
        ApiTokenIssued(**token, name="x\x00y")
    with pytest.raises(ValidationError):
        GroupDefined(name="lab", description="a\x00")
    spec = {"kind": "simulated", "params": {"seconds": "1\x00"}}
    with pytest.raises(ValidationError):
        ScenarioSaved(scenario_id=uuid.uuid4(), revision=1, name="s", spec=spec)
    with pytest.raises(ValidationError):
        ScenarioSaved(
            scenario_id=uuid.uuid4(), revision=1, name="s", spec={"kind": "simulated", "params": {"\x00": "1"}}
        )


@pytest.mark.parametrize("disks", ['[{"model": "a\\u0000"}]', '[{"model": "\\ud800"}]', '[{"\\u001b": 1}]', "not json"])
def test_a_disk_report_whose_json_hides_a_nul_is_refused(disks: str) -> None:
    with pytest.raises(ValidationError):
        DiskLayoutReported(machine_id=uuid.uuid4(), disks_json=disks)
    ok = DiskLayoutReported(machine_id=uuid.uuid4(), disks_json='[{"model": "Größe 日本\\n"}]')
    assert ok.disks_json
