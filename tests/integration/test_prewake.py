"""Checks before waking (issue 15) through the whole stack: a restore that cannot work on a target
(the image is missing, or bigger than the disk or partition its last disk check reported, or of
another sector size or partition table) is refused with its code when it is requested, and its dry
run says why, so no machine of the lab is woken for it. A disk check run right after wakes each lab
machine once: the lab was listening, and the refused restores sent nothing. A backup is weighed
against the room the imager reported for its store."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import httpx
import pytest

from dpm_agent.deploy.layout import DiskLayout, Partition
from dpm_lab.sim import Lab, fleet
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import DiskLayoutReported, ScenarioRunRequested
from dpm_schemas.ids import stream_id

from .conftest import lab_setup, run_until_done
from .facts import GIB, captured

pytestmark = pytest.mark.integration


async def facts(api, machine_id: str) -> None:
    """pc's last disk check (one 8 GiB GPT disk: a 1 GiB and a 6 GiB partition) and four images."""
    layout = DiskLayout("/dev/sda", 8 * GIB, 512, 512, "gpt", partitions=(
        Partition(1, 2048, GIB // 512, "EF00"), Partition(2, 2048 + GIB // 512, 6 * GIB // 512, "8300"),
    ))  # fmt: skip
    report = DiskLayoutReported(machine_id=uuid.UUID(machine_id), disks_json=f"[{_json(layout)}]")
    log, meta = api.runtime.eventlog, Metadata.new(actor="test")
    await log.append(stream_id(subjects.DISKS, uuid.UUID(machine_id)), ANY_VERSION, [NewEvent(report, meta)])
    for image in (
        captured("fits", 8 * GIB),
        captured("huge", 8 * GIB + 1),
        captured("foursk", 4 * GIB, sector=4096),
        captured("dospart", GIB, source="partition", label="dos"),
    ):
        await log.append(stream_id(subjects.IMAGE, image.image_id), ANY_VERSION, [NewEvent(image, meta)])

    async def projected() -> int:
        async with api.runtime.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM api.images) + (SELECT count(*) FROM api.disk_layouts)"
            )
            return (await cur.fetchone())[0]

    await eventually(projected, until=lambda n: n == 5, what="the images and the disk layout projected")


def _json(layout: DiskLayout) -> str:
    import json

    return json.dumps(layout.to_dict(), sort_keys=True)


async def test_a_restore_that_cannot_fit_is_refused_before_any_machine_is_woken(lab_stack, auth) -> None:
    api, pxe, scheduler, config = lab_stack(concurrency=2)
    machines = fleet(2)
    stop = asyncio.Event()
    async with running(api, headers=auth) as a, running(pxe), running(scheduler), httpx.AsyncClient(timeout=10) as http:
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            await lab_setup(a.http, machines)
            ids = {m["name"]: m["machine_id"] for m in (await a.http.get("/machines")).json()}
            target = machines[0].name
            await facts(a, ids[target])
            cases = {
                "missing": ({"image": "nowhere"}, "DPM-E158"),
                "huge": ({"image": "huge"}, "DPM-E174"),
                "foursk": ({"image": "foursk"}, "DPM-E175"),
                "nodisk": ({"image": "fits", "disk": "2"}, "DPM-E176"),
                "nopart": ({"image": "dospart", "partition": "3"}, "DPM-E176"),
                "dos": ({"image": "dospart", "partition": "2"}, "DPM-E177"),
            }
            for name, (params, code) in cases.items():
                made = await a.http.post(
                    "/scenarios", json={"name": name, "spec": {"kind": "restore", "params": params}}
                )
                assert made.status_code == 201, made.text
                dry = await a.http.post(f"/scenarios/{name}/runs?dry_run=true", json={"machines": [target]})
                assert dry.is_success and not dry.json()["would_run"], dry.text
                (line,) = dry.json()["machines"]
                assert line["problem"].startswith(code), (name, line)
                refused = await a.http.post(f"/scenarios/{name}/runs", json={"group": "loop"})
                assert refused.status_code in (404, 409) and refused.json()["error"]["code"] == code, refused.text
            # the image that fits: the dry run would run it, and warns about the machine never checked
            await a.http.post(
                "/scenarios", json={"name": "ok", "spec": {"kind": "restore", "params": {"image": "fits"}}}
            )
            dry = (await a.http.post("/scenarios/ok/runs?dry_run=true", json={"group": "loop"})).json()
            assert dry["would_run"], dry
            warned = {m["machine"]: m["warnings"] for m in dry["machines"]}
            assert warned[target] == [] and "no disk check" in warned[machines[1].name][0]
            requested = [r for r in await a.runtime.eventlog.read_all() if isinstance(r.event, ScenarioRunRequested)]
            assert requested == []  # nothing was asked of the scheduler
            await a.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
            rows = await run_until_done(a.http, "check", {"group": "loop"}, 2)
        finally:
            stop.set()
            await lab_task
    assert [r["state"] for r in rows] == ["completed", "completed"], [m.stages for m in machines]
    assert [m.wakes for m in machines] == [1, 1]  # woken by the disk check only


async def test_a_whole_disk_backup_the_store_cannot_hold_is_refused_at_the_request(
    api_service, imager_service, auth, tmp_path
) -> None:
    (tmp_path / "store").mkdir()
    # the imager may use about 2 GiB of this file system (its reserve takes the rest)
    reserve = shutil.disk_usage(tmp_path).free - 2 * GIB
    async with running(api_service(), headers=auth) as a, running(imager_service(imager_reserve_bytes=reserve)):
        machines = fleet(2)
        await lab_setup(a.http, machines)
        ids = {m["name"]: m["machine_id"] for m in (await a.http.get("/machines")).json()}
        await facts(a, ids[machines[0].name])  # one 8 GiB disk

        async def room() -> tuple | None:
            async with a.runtime.pool.connection() as conn:
                return await (await conn.execute("SELECT free_bytes, free_factor FROM api.store_space")).fetchone()

        free, factor = await eventually(room, until=lambda r: r is not None, what="the imager reported its room")
        assert GIB < free < 3 * GIB and factor == 1.0
        for name, mode in (("whole", "full"), ("used", "used")):
            spec = {"kind": "backup", "params": {"image": f"{name}-{{machine}}", "mode": mode}}
            assert (await a.http.post("/scenarios", json={"name": name, "spec": spec})).status_code == 201
        refused = await a.http.post("/scenarios/whole/runs", json={"machines": [machines[0].name]})
        assert refused.status_code == 507 and refused.json()["error"]["code"] == "DPM-E159", refused.text
        dry = (await a.http.post("/scenarios/whole/runs?dry_run=true", json={"group": "loop"})).json()
        lines = {m["machine"]: m for m in dry["machines"]}
        assert not dry["would_run"] and lines[machines[0].name]["problem"].startswith("DPM-E159")
        assert lines[machines[1].name]["problem"] is None  # never checked: the imager decides at its start
        used = (await a.http.post("/scenarios/used/runs?dry_run=true", json={"group": "loop"})).json()
        assert (
            used["would_run"]
            and "dedup" in {m["machine"]: m for m in used["machines"]}[machines[0].name]["warnings"][0]
        )
        requested = [r for r in await a.runtime.eventlog.read_all() if isinstance(r.event, ScenarioRunRequested)]
        assert requested == []
