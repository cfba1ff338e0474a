"""One trace spans an HTTP request to the api, the event it appends, the relay's publish and the
scheduler's handler (spans asserted from an in-memory exporter shared by both services)."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import ScheduleSaved

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_one_trace_from_http_request_to_another_services_handler(
    api_service, scheduler_service, auth, tracing
) -> None:
    provider, exporter = tracing
    async with (
        running(api_service(), tracer_provider=provider, headers=auth) as api,
        running(scheduler_service(relay_enabled=False), tracer_provider=provider),
    ):
        # the machine directory is a projection now (read from the log, no span of its own): the trace
        # goes to a reaction, the scheduler's schedules consumer -- a schedule that fires on 1 January
        r = await api.http.post("/machines", json={"name": "t1", "macs": ["52-54-00-00-00-77"]})
        assert r.status_code == 201
        headers = {**auth, "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        body = {"name": "new-year", "action": "power-on", "machines": ["t1"], "cron": "0 3 1 1 *"}
        r = await api.http.post("/schedules", headers=headers, json=body)
        assert r.status_code == 201
        (stored,) = [e for e in await api.runtime.eventlog.read_all() if isinstance(e.event, ScheduleSaved)]
        assert stored.metadata.traceparent.split("-")[1] == TRACE_ID

        def handled():
            return [
                s
                for s in exporter.get_finished_spans()
                if s.name == "handle ScheduleSaved" and s.attributes.get("dpm.consumer") == "scheduler-schedules"
            ]

        async def probe():
            return handled()

        await eventually(probe, what="the scheduler's handler span")
        spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
        (handle,) = handled()
        publish = spans[handle.parent.span_id]
        server = spans[publish.parent.span_id]
        assert (server.kind, publish.kind, handle.kind) == (SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER)
        assert server.name == "POST /schedules" and publish.name == "publish ScheduleSaved"
        assert {format(s.context.trace_id, "032x") for s in (server, publish, handle)} == {TRACE_ID}
