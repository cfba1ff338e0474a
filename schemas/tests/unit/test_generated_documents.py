"""The checked-in JSON Schema and error catalogue must equal what the code generates (`make docs`)."""

from __future__ import annotations

from pathlib import Path

from dpm_schemas import CATALOGUE, errors, jsonschema

ROOT = Path(__file__).resolve().parents[3]


def test_json_schema_is_current() -> None:
    assert (ROOT / "schemas/events.schema.json").read_text() == jsonschema.render(), "stale: run `make docs`"


def test_error_catalogue_document_is_current() -> None:
    assert (ROOT / "docs/errors.md").read_text() == errors.render_markdown(), "stale: run `make docs`"


def test_every_code_has_message_remedy_and_a_unique_stable_form() -> None:
    for code, entry in CATALOGUE.items():
        assert code.startswith("DPM-E") and code[5:].isdigit()
        assert entry.message and entry.remedy and 400 <= entry.http_status < 600


def test_errors_render_their_details_into_message_and_remedy() -> None:
    err = errors.E.PORT_IN_USE(service="api", host="127.0.0.1", port=8080, setting="DPM_API_PORT")
    assert err.to_dict()["message"] == "api: port 8080 on 127.0.0.1 is already in use."
    assert "DPM_API_PORT" in err.remedy and "8080" in err.remedy
