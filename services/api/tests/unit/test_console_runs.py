"""The console's scenario and execution pages, their pure parts: the scenario form (a posted form as
the REST body, a saved spec as form values, every refusal put beside its field with the API's own
code), the executions page's filters, live-stream and new-row rules, where an action returns to,
the multicast sessions' grouping, and the executions table rendered with an HTML name as text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dpm_api.console import execution_actions, executions, pages, scenario_form, session_pages
from dpm_api.routes.scenarios import ScenarioIn
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec

XSS = "<img src=x onerror=alert(1)>"
RUN = "7d3c1f4e-8f3a-4c39-9a51-0d8e1a8b2c11"


def form(**values: str) -> dict[str, list[str]]:
    return {k.replace("__", "."): [v] for k, v in values.items()}


def test_the_form_has_exactly_each_kinds_model_parameters() -> None:
    for kind in ScenarioKind:
        assert {p.key for p in scenario_form.KIND_PARAMS[kind]} == scenario_form.model_keys(kind), kind


def test_a_posted_form_is_the_rest_body_and_a_saved_spec_comes_back_as_the_same_form() -> None:
    fields = form(name="golden", kind="restore", timeout_seconds=" 600 ", reboot_at_start="on", multicast="on",
                  multicast__group="239.1.1.1", multicast__max_targets="4", restore__image="lab/{machine}",
                  restore__grow_gpt="on", backup__image="ignored: another kind's field")  # fmt: skip
    body = scenario_form.body_of(fields)
    assert body == {"name": "golden", "spec": {
        "kind": "restore", "reboot_at_start": True, "power_off_at_end": False, "timeout_seconds": "600",
        "multicast": {"group": "239.1.1.1", "max_targets": "4"},
        "params": {"image": "lab/{machine}", "grow_gpt": "true"}}}  # fmt: skip
    saved = ScenarioIn.model_validate(body).spec
    values = scenario_form.values_of("golden", saved)
    assert scenario_form.body_of({k: [v] for k, v in values.items()}) == {**body, "spec": {**body["spec"],
           "timeout_seconds": "600"}}  # fmt: skip
    assert values["restore.grow_gpt"] == "on" and values["multicast.max_targets"] == "4"


def test_each_refused_field_gets_the_apis_own_refusal_beside_it() -> None:
    body = scenario_form.body_of(form(name="", kind="simulated", timeout_seconds="5", multicast="on",
                                      multicast__max_targets="0", simulated__seconds="x"))  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        ScenarioIn.model_validate(body)
    problems = scenario_form.pydantic_problems(caught.value, body)
    assert {"name", "timeout_seconds", "multicast.group", "multicast.max_targets"} <= set(problems)
    assert all(err.code == "DPM-E100" for err in problems.values())
    assert "timeout_seconds" in problems["timeout_seconds"].message


def test_a_save_time_refusal_is_put_on_its_field() -> None:
    taken = E.SCENARIO_INVALID(reason="the name 'a' is taken")
    assert scenario_form.field_of_error(taken, "restore") == "name"
    group = E.SCENARIO_INVALID(reason="224.0.0.1 is not a usable multicast group (224.0.1.0-239.255.255.255)")
    assert scenario_form.field_of_error(group, "restore") == "multicast.group"
    unavailable = E.KIND_NOT_AVAILABLE(kind="firmware", reason="no service")
    assert scenario_form.known_field(scenario_form.field_of_error(unavailable, "firmware")) == "kind"
    bad = E.SCENARIO_PARAM_INVALID(key="disk", kind="restore", reason="not a number")
    assert scenario_form.known_field(scenario_form.field_of_error(bad, "restore")) == "restore.disk"
    assert scenario_form.known_field("restore.nothing") == scenario_form.FORM


def test_the_filters_are_checked_as_the_rest_route_would() -> None:
    assert executions.filters_of("failed", "check", "", RUN.upper()) == {
        "state": "failed", "scenario": "check", "run_id": RUN}  # fmt: skip
    for bad in (("exploded", "", "", ""), ("", "x" * 254, "", ""), ("", "", "", "not-a-uuid")):
        with pytest.raises(DpmError) as caught:
            executions.filters_of(*bad)
        assert caught.value.code == "DPM-E100"


def test_the_live_stream_and_which_pushed_rows_a_page_adds() -> None:
    assert executions.stream_url({"run_id": RUN, "machine": "pc"}) == f"{executions.STREAM}?run_id={RUN}"
    assert executions.stream_url({"machine": "pc 1"}) == f"{executions.STREAM}?machine=pc+1"
    assert executions.stream_url({"state": "failed"}) == executions.STREAM
    assert (
        executions.new_rows_match({"state": "failed", "scenario": "a&b", "machine": "pc"})
        == "state=failed&scenario=a%26b"
    )
    rows = [{"queued_at": f"2026-01-01 00:00:0{i}+00:00"} for i in range(3)]
    assert executions.since(rows, {}) == ""  # the whole history is on the page: every other row is new
    full = rows * (executions.LIMIT // 3 + 1)
    assert executions.since(full, {}) == "2026-01-01 00:00:00+00:00"
    assert executions.since(full, {"run_id": RUN}) == ""
    assert executions.export_url({"run_id": RUN, "machine": "pc"}) == "/console/executions/export?machine=pc"


def test_an_action_returns_only_to_an_executions_page() -> None:
    for evil in ("https://evil.example/console/executions", "//evil.example/x", "/console/machines", None, ""):
        assert execution_actions.back_to(evil) == "/console/executions"
    back = execution_actions.back_to("/console/executions?state=failed&done=cleared&count=3")
    assert execution_actions.done_url(back, "cleared", 2) == "/console/executions?state=failed&done=cleared&count=2"
    assert execution_actions.notice("cleared", "<b>") == "Error cleared on 0 machines: they may take a scenario again."
    assert execution_actions.notice("suspended", "1") == "Suspend requested for 1 execution."  # no "(s)"
    assert execution_actions.notice("suspended", "2") == "Suspend requested for 2 executions."
    assert execution_actions.notice("nothing", "1") is None
    assert execution_actions.selected({"execution": [RUN, RUN]}) == [execution_actions.uuid.UUID(RUN)]
    for bad in ({}, {"execution": ["x"]}, {"execution": [RUN] * (pages.MAX_SELECTED + 1)}):
        with pytest.raises(DpmError):
            execution_actions.selected(bad)


def test_sessions_are_a_multicast_scenarios_open_executions() -> None:
    row = ("s1", "golden", "restore", "239.1.1.1", {"group": "239.1.1.1", "max_targets": 3})
    rows = [(*row, "e1", "m1", "pc-1", "waiting", None), (*row, "e2", "m2", None, "running", 40),
            ("s2", "upd", "remote-update", "239.1.1.2", None, "e3", "m3", "pc-3", "waiting", None)]  # fmt: skip
    golden, update = session_pages.sessions_of(rows)
    assert (golden.gathering, len(golden.members), golden.can_start_now) == (1, 2, True)
    assert golden.members[1]["machine"] == "m2"  # a machine the read model no longer names: its id
    assert golden.conditions["max_targets"] == 3
    assert update.gathering == 1 and not update.can_start_now  # the API refuses it (DPM-E147)


def test_the_executions_table_shows_an_html_name_as_text() -> None:
    row = {"execution_id": RUN, "run_id": RUN, "machine_id": RUN, "machine": XSS, "scenario": XSS, "revision": 1,
           "kind": "simulated", "state": "failed", "percent": None, "code": "DPM-E116", "reason": XSS,
           "remedy": "Clear it.", "cleared": False, "queued_at": "2026",
           "started_at": None, "ended_at": None}  # fmt: skip
    macros = pages.templates().get_template("execution_macros.html").module
    html = str(macros.row(row, True))  # type: ignore[attr-defined]
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'name="suspend"' in html and 'name="clear"' in html
    assert 'name="execution"' not in str(macros.row(row, False))  # type: ignore[attr-defined]


def test_the_spec_the_form_shows_for_each_kind_renders() -> None:
    template = pages.templates().get_template("scenario_form.html")
    for kind in ScenarioKind:
        values = scenario_form.values_of(XSS, ScenarioSpec(kind=kind))
        html = template.render(user=None, csrf="t", version="0", title="t", ref=None, values=values, errors={},
                               summary=None, kinds=scenario_form.KINDS, action="/console/scenarios/new")  # fmt: skip
        assert XSS not in html and f'value="{kind.value}" selected' in html
