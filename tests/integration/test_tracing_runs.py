"""One trace id spans a scenario run (issue 13): from ``POST /scenarios/{id}/runs`` through the
queued execution, its start and step (appended by the scheduler's timer rounds, which take the
correlation and trace stored with the run) to its completion, recorded after the commit by the
effect of "power off at end". Spans from an in-memory exporter shared by api and scheduler."""

from __future__ import annotations

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionQueued,
    ExecutionStarted,
    ScenarioRunRequested,
    StepRequested,
)

pytestmark = pytest.mark.integration

TRACE_ID = "5af7183fb1d4cf5f1e8b2ab2a0b37c21"
RUN_EVENTS = (ScenarioRunRequested, ExecutionQueued, ExecutionStarted, StepRequested, ExecutionCompleted)


def trace_id(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


async def test_one_trace_from_the_run_request_to_the_completion(api_service, scheduler_service, auth, tracing) -> None:
    provider, exporter = tracing
    async with (
        running(api_service(), tracer_provider=provider, headers=auth) as api,
        running(scheduler_service(relay_enabled=False, scheduler_tick=0.1), tracer_provider=provider),
    ):
        r = await api.http.post("/machines", json={"name": "tr1", "macs": ["52-54-00-00-07-01"]})
        assert r.status_code == 201, r.text
        machine_id = r.json()["machine_id"]
        spec = {"kind": "simulated", "params": {"seconds": "0.2"}, "power_off_at_end": True}
        r = await api.http.post("/scenarios", json={"name": "traced", "spec": spec})
        assert r.is_success, r.text
        scenario_id = r.json()["scenario_id"]

        headers = {**auth, "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        r = await api.http.post(f"/scenarios/{scenario_id}/runs", headers=headers, json={"machines": [machine_id]})
        assert r.status_code == 202, r.text

        async def run_events() -> dict[type, object]:
            found = {type(rec.event): rec for rec in await api.runtime.eventlog.read_all(limit=10_000)}
            return {cls: found[cls] for cls in RUN_EVENTS if cls in found}

        recs = await eventually(run_events, until=lambda f: len(f) == len(RUN_EVENTS), timeout=30, what="the run")

    requested = recs[ScenarioRunRequested]
    for cls, rec in recs.items():  # the same trace and conversation at every stage
        assert trace_id(rec.metadata.traceparent) == TRACE_ID, cls.__name__  # type: ignore[attr-defined]
        assert rec.metadata.correlation_id == requested.metadata.correlation_id, cls.__name__  # type: ignore[attr-defined]
    assert recs[ExecutionCompleted].event.power_off  # type: ignore[attr-defined]  # recorded by the effect's outcome

    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID]
    names = {s.name for s in spans}
    assert f"POST /scenarios/{scenario_id}/runs" in names
    assert "handle ScenarioRunRequested" in names  # the scheduler's reaction: queued
    assert {"start", "simulated step", "effect Shutdown", "effect outcome"} <= names  # its rounds and effect
