"""Every command the api appends carries its request's metadata (dpm_api.requestmeta): the
correlation id the client sent in ``X-Correlation-Id`` (a new one when it sent none or a malformed
one, which is ignored, never refused), the request span's ``traceparent`` and the authenticated
actor -- so a client finds the events of its request, and what they cause, under an id it chose."""

from __future__ import annotations

import uuid

import pytest

from dpm_runtime.testing.services import running
from dpm_schemas import subjects

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def _events_of(api, category: str) -> list:
    return [r for r in await api.runtime.eventlog.read_all() if r.stream_id.startswith(f"{category}-")]


async def test_a_command_carries_the_requests_correlation_id_trace_and_actor(api_service, auth, tracing) -> None:
    provider, _exporter = tracing
    async with running(api_service(), tracer_provider=provider, headers=auth) as api:
        created = await api.http.post(
            "/users", json={"username": "otto", "password": "otto-secret-1", "role": "operator"}
        )
        assert created.status_code == 201, created.text
        login = await api.http.post("/auth/login", json={"username": "otto", "password": "otto-secret-1"}, headers={})
        otto = {"Authorization": f"Bearer {login.json()['token']}"}

        chosen = uuid.uuid4()
        headers = {**otto, "X-Correlation-Id": str(chosen), "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        r = await api.http.post("/machines", headers=headers, json={"name": "c1", "macs": ["52:54:00:00:0c:01"]})
        assert r.status_code == 201, r.text
        assert r.headers["X-Correlation-Id"] == str(chosen)
        machine_id = r.json()["machine_id"]
        stream = f"{subjects.MACHINE}-{machine_id}"
        registered = [rec for rec in await _events_of(api, subjects.MACHINE) if rec.stream_id == stream]
        assert registered and {rec.metadata.correlation_id for rec in registered} == {chosen}
        assert {rec.metadata.actor for rec in registered} == {"otto"}
        assert {rec.metadata.traceparent.split("-")[1] for rec in registered} == {TRACE_ID}

        # a group, a scenario and its run: other handlers, same rule
        same = {**otto, "X-Correlation-Id": str(chosen)}
        assert (await api.http.put("/groups/lab-c", headers=same, json={})).status_code == 200
        saved = await api.http.post("/scenarios", headers=same, json={"name": "look", "spec": {"kind": "disk-check"}})
        assert saved.status_code == 201, saved.text
        ran = await api.http.post("/scenarios/look/runs", headers=same, json={"machines": ["c1"]})
        assert ran.status_code == 202, ran.text
        for category in (subjects.GROUP, subjects.SCENARIO, subjects.ASSIGNMENT):
            (event,) = await _events_of(api, category)
            assert (event.metadata.correlation_id, event.metadata.actor) == (chosen, "otto"), category


@pytest.mark.parametrize("header", ["not-a-uuid", "", "x" * 500, "123e4567-e89b-12d3-a456-42661417400Z"])
async def test_a_malformed_correlation_id_is_ignored(api_service, auth, header: str) -> None:
    async with running(api_service(), headers=auth) as api:
        before = {rec.metadata.correlation_id for rec in await api.runtime.eventlog.read_all()}
        machine = {"name": "c2", "macs": ["52:54:00:00:0c:02"]}
        r = await api.http.post("/machines", headers={**auth, "X-Correlation-Id": header}, json=machine)
        assert r.status_code == 201, r.text  # a hint from the client, never a reason to refuse
        (registered,) = [
            rec for rec in await _events_of(api, subjects.MACHINE) if rec.metadata.correlation_id not in before
        ]
        assert registered.metadata.actor == "bootstrap"
        assert str(registered.metadata.correlation_id) == r.headers["X-Correlation-Id"] != header


async def test_requests_without_the_header_get_a_conversation_each(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        for n in (1, 2):
            r = await api.http.post("/machines", json={"name": f"c{n}", "macs": [f"52:54:00:00:0d:0{n}"]})
            assert r.status_code == 201, r.text
        ids = [rec.metadata.correlation_id for rec in await _events_of(api, subjects.MACHINE)]
        assert len(ids) == 2 and len(set(ids)) == 2
