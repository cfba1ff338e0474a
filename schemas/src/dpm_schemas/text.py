"""Constrained string types for every free-text field of every event, command and agent frame.

A string reaches the log from an HTTP body, a CSV cell, an agent frame or a boot packet, and is
later written into PostgreSQL ``text`` and ``jsonb`` columns by projections. PostgreSQL refuses NUL
in both (and unpaired surrogates in ``jsonb``), so one ``\\u0000`` accepted at an edge used to wedge a
read model for good. Refusing control characters *in the contract* makes every edge (api, CSV,
agent-gateway, pxe) and every decoder of the stored log refuse them the same way.

The checks are patterns, so pydantic-core runs them in Rust: a rebuild decodes the whole log and
must stay fast. pydantic-core also refuses unpaired surrogates for any patterned string (it needs
valid UTF-8 to match). Narrower patterns (MAC, IPv4, username, SHA-256) already exclude control
characters and stay as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

from dpm_schemas.errors import DpmError, E

# C0 controls (incl. NUL, TAB, LF, CR, ESC), DEL, C1 controls (incl. NEL U+0085), and the Unicode
# line/paragraph separators: nothing that breaks a line, a terminal or a PostgreSQL column.
SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
# The same, but TAB, LF and CR are allowed: descriptions and reports that span lines.
MULTI_LINE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

NAME_MAX = 200
LABEL_MAX = 100
TEXT_MAX = 1000
LONG_TEXT_MAX = 10_000
JSON_TEXT_MAX = 1_000_000

# Another bound for one field: ``Annotated[Text, Field(max_length=500)]`` (the outer bound wins,
# the pattern stays).


# One line: names operators give (machines, scenarios, schedules, tokens), at least one character.
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=SINGLE_LINE_PATTERN)]
# One short line: codes, kinds, drivers, OS types, versions, package entries.
Label = Annotated[str, StringConstraints(max_length=LABEL_MAX, pattern=SINGLE_LINE_PATTERN)]
# One line of prose: reasons, messages, paths.
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX, pattern=SINGLE_LINE_PATTERN)]
# Several lines of prose.
LongText = Annotated[str, StringConstraints(max_length=LONG_TEXT_MAX, pattern=MULTI_LINE_PATTERN)]


_SINGLE_LINE_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MULTI_LINE_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character the text types refuse, for edges that report where (a CSV cell)."""
    found = (_MULTI_LINE_BAD if multiline else _SINGLE_LINE_BAD).search(value)
    return found.group() if found else None


def _refuse_bad_strings(value: Any, path: str = "$") -> None:
    if isinstance(value, str):
        if control_character(value, multiline=True):
            raise ValueError(f"JSON string at {path} contains a control character or an unpaired surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_bad_strings(key, f"{path} (key)")
            _refuse_bad_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_bad_strings(item, f"{path}[{index}]")


def _valid_json_text(value: str) -> str:
    """JSON escapes (``\\u0000``, ``\\ud800``) hide from a pattern but not from a ``jsonb`` column."""
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    _refuse_bad_strings(parsed)
    return value


# A JSON document held as text, whose own strings are clean too (it lands in a ``jsonb`` column).
JsonText = Annotated[
    str,
    StringConstraints(max_length=JSON_TEXT_MAX, pattern=MULTI_LINE_PATTERN),
    AfterValidator(_valid_json_text),
]


_CONTROL_REASON = (
    "contains a control character (NUL, ESC, DEL, C1, or a line break where one line is expected) "
    "or an unpaired surrogate"
)
# Length refusals stay DPM-E100 (a plain invalid request); E005 is for characters that cannot be stored.
_TEXT_ERRORS = {"string_unicode"}


def refusal(errors: Sequence[Mapping[str, Any]], model: str = "") -> DpmError:
    """The catalogued error for a pydantic refusal of input: DPM-E005 naming the field for text
    (control characters, length), else DPM-E100. Never echoes the input (it may hold a NUL)."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    field = ".".join(str(p) for p in first.get("loc", ()))
    field = f"{model}.{field}" if model and field else (field or model or "body")
    pattern = (first.get("ctx") or {}).get("pattern")
    if first.get("type") == "string_pattern_mismatch" and pattern in (SINGLE_LINE_PATTERN, MULTI_LINE_PATTERN):
        return E.TEXT_INVALID(field=field, reason=_CONTROL_REASON)
    if first.get("type") in _TEXT_ERRORS or str(first.get("msg", "")).startswith("Value error, JSON string"):
        return E.TEXT_INVALID(field=field, reason=first.get("msg", "invalid text"))
    return E.INVALID_REQUEST(reason=f"{field}: {first.get('msg', 'invalid')}")


__all__ = [
    "JSON_TEXT_MAX",
    "LABEL_MAX",
    "LONG_TEXT_MAX",
    "MULTI_LINE_PATTERN",
    "NAME_MAX",
    "SINGLE_LINE_PATTERN",
    "TEXT_MAX",
    "JsonText",
    "Label",
    "LongText",
    "Name",
    "Text",
    "control_character",
    "refusal",
]
