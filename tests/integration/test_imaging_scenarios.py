"""Backup, restore and disk check as scenarios, driven by the scheduler: simulated machines are
woken, network-boot through pxe, and run the real deploy client against their disk-image files,
which talks to the api (step, transfer, reports) and the imager (chunks). Results are executions
with their codes; images carry each machine's name; the disk viewer shows the check."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import pytest

from agent.tests.deploy.disks import blank, ext_files, mkext4, need_tools, sfdisk, tree
from dpm_lab.sim import Lab, fleet
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

from .conftest import lab_setup, run_until_done

pytestmark = [pytest.mark.integration, need_tools]
MiB = 1024 * 1024


async def test_backup_then_restore_scenarios_on_lab_machines(lab_stack, imager_service, auth, tmp_path) -> None:
    imager = imager_service()
    api, pxe, scheduler, config = lab_stack(concurrency=2, api_imager_url=f"http://127.0.0.1:{imager.port}")
    machines = fleet(3, prefix="img")
    src, dst, small = machines
    src.disk = blank(tmp_path / "src.img", 48 * MiB)
    sfdisk(str(src.disk), "label: gpt\nsize=40MiB, type=L\n")
    mkext4(src.disk, MiB, 40 * MiB, tree(tmp_path / "content"))
    dst.disk = blank(tmp_path / "dst.img", 64 * MiB)
    small.disk = blank(tmp_path / "small.img", 16 * MiB)
    stop = asyncio.Event()
    async with (
        running(api, headers=auth) as a,
        running(pxe),
        running(scheduler),
        running(imager),
        httpx.AsyncClient(timeout=30) as http,
    ):
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            await lab_setup(a.http, machines)
            transfers: list[dict] = []

            async def watch() -> None:  # the live stream an operator's `dpm run --wait` follows
                async with a.http.stream("GET", "/executions/stream") as sse:
                    event = ""
                    async for line in sse.aiter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "transfer":
                            transfers.append(json.loads(line[5:]))

            watcher = asyncio.create_task(watch())
            spec = {"kind": "backup", "params": {"image": "golden/{machine}", "mode": "used"}}
            assert (await a.http.post("/scenarios", json={"name": "take", "spec": spec})).status_code == 201
            rows = await run_until_done(a.http, "take", {"machines": [src.name]}, 1)
            assert rows[0]["state"] == "completed", rows

            async def listed() -> list[str]:
                return [r["name"] for r in (await a.http.get("/images")).json()]

            await eventually(listed, until=lambda names: names == ["golden/img0000"], what="image listed")

            async def forwarded() -> list[dict]:
                return transfers

            await eventually(forwarded, timeout=10, what="the transfer's progress on the stream")
            watcher.cancel()
            first = transfers[0]
            assert first["direction"] == "backup" and first["image"] == "golden/img0000"
            assert first["execution_id"] == rows[0]["execution_id"] and first["bytes_done"] > 0

            spec = {"kind": "restore", "params": {"image": "golden/img0000"}}
            assert (await a.http.post("/scenarios", json={"name": "put", "spec": spec})).status_code == 201
            rows = await run_until_done(a.http, "put", {"machines": [dst.name, small.name]}, 2)
            by_machine = {r["machine"]: r for r in rows}
            assert by_machine[dst.name]["state"] == "completed", rows
            assert by_machine[small.name]["state"] == "failed" and by_machine[small.name]["code"] == "DPM-E152"

            assert (await a.http.post("/scenarios", json={"name": "look", "spec": {"kind": "disk-check"}})).is_success
            looked = await run_until_done(a.http, "look", {"machines": [dst.name]}, 1)
            assert looked[0]["state"] == "completed", looked

            async def disk_view() -> dict:
                return (await a.http.get(f"/machines/{dst.name}/disks")).json()

            viewer = await eventually(disk_view, until=lambda v: "disks" in v, timeout=10, what="the disk viewer")
        finally:
            stop.set()
            await lab_task
    disk = viewer["disks"][0]
    assert disk["label"] == "gpt" and [p["filesystem"] for p in disk["partitions"]] == ["ext4"]
    subprocess.run(["e2fsck", "-fn", f"{dst.disk}?offset={MiB}"], check=True, capture_output=True)
    assert ext_files(dst.disk, MiB, tmp_path / "a") == ext_files(src.disk, MiB, tmp_path / "b")
    assert small.disk.read_bytes() == bytes(16 * MiB)  # refused before any write
