"""The api's request models type every name and free-text field that reaches SQL with the
``dpm_schemas.text`` types, so a control character is refused before any lookup, with DPM-E005
naming the request field, and an overlong value with DPM-E100 naming it -- not a 401/404 from a
lookup that ran with it, nor an error that leaves the caller guessing which field was wrong."""

from __future__ import annotations

import pytest

from dpm_runtime.testing.services import running

pytestmark = pytest.mark.integration

ESC = "esc\u001b[2J"  # an escaped control character: valid JSON that the edge's NUL check lets through
# (method, path, body builder, field): the field holds the bad value.
FIELDS = [
    ("POST", "/auth/login", lambda v: {"username": v, "password": "x"}, "username"),
    ("POST", "/auth/tokens", lambda v: {"name": v}, "name"),
    ("POST", "/agents/enrolment-tokens", lambda v: {"machine": v}, "machine"),
    ("POST", "/clear", lambda v: {"state": v}, "state"),
    ("POST", "/clear", lambda v: {"machines": ["m1", v]}, "machines.1"),
    ("POST", "/scenarios/s/runs", lambda v: {"machines": [v]}, "machines.0"),
    ("POST", "/scenarios/s/runs", lambda v: {"group": v}, "group"),
    ("POST", "/groups/lab/rename", lambda v: {"new_name": v}, "new_name"),
    ("PUT", "/groups/lab", lambda v: {"description": v}, "description"),
    ("POST", "/machines", lambda v: {"name": v, "macs": ["52:54:00:00:00:01"]}, "name"),
    ("POST", "/machines", lambda v: {"name": "m", "macs": ["52:54:00:00:00:01"], "group": v}, "group"),
    ("POST", "/schedules", lambda v: {"name": v, "action": "run"}, "name"),
    ("POST", "/schedules", lambda v: {"name": "n", "action": "run", "machines": [v]}, "machines.0"),
]


async def test_control_characters_and_overlong_names_are_refused_naming_the_field(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        wrong = []
        for method, path, body, field in FIELDS:
            for value, code in ((ESC, "DPM-E005"), ("n" * 5000, "DPM-E100")):
                r = await api.http.request(method, path, json=body(value))
                error = r.json().get("error", {}) if r.status_code == 422 else {}
                if error.get("code") != code or f"body.{field}" not in error.get("message", ""):
                    wrong.append((method, path, field, code, r.status_code, r.text[:200]))
        assert not wrong, wrong
        assert (await api.http.get("/machines")).status_code == 200  # still serving
