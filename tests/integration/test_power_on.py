"""Power on through the whole stack: the api records PowerOnRequested, the scheduler reacts with a
Wake-on-LAN burst to the machine's group broadcast, and a "machine" in a lab namespace receives it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running
from dpm_schemas.events import PowerOnSent

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2")]

LISTENER = Path(__file__).resolve().parents[2] / "services/scheduler/tests/integration/wol_listener.py"


async def test_power_on_reaches_the_machine_and_is_recorded(api_service, scheduler_service, auth) -> None:
    port = free_port()
    with netlab.NetLab(hosts_wanted=1) as lab:
        (machine,) = lab.hosts
        listener = lab.popen(
            machine, [sys.executable, str(LISTENER), str(port), machine.mac, "2"], stdout=-1, text=True
        )
        try:
            assert json.loads(listener.stdout.readline()) == {"listening": port}
            scheduler = scheduler_service(scheduler_wol_port=port, scheduler_wol_repeats=2)
            async with running(api_service(), headers=auth) as api, running(scheduler):
                assert (await api.http.put("/groups/lab", headers=auth, json={"subnet": str(lab.subnet)})).is_success
                r = await api.http.post(
                    "/machines", headers=auth, json={"name": "lab-01", "macs": [machine.mac], "group": "lab"}
                )
                machine_id = r.json()["machine_id"]
                on = await api.http.post(f"/machines/{machine_id}/power/on", headers=auth)
                assert on.status_code == 202
                # read in a thread: the services under test run on this event loop
                packets = [json.loads(await asyncio.to_thread(listener.stdout.readline)) for _ in range(2)]

                async def sent():
                    return [e.event for e in await api.runtime.eventlog.read_all() if isinstance(e.event, PowerOnSent)]

                (event,) = await eventually(sent, what="PowerOnSent recorded")
                missing = await api.http.post("/machines/00000000-0000-0000-0000-000000000000/power/on", headers=auth)
        finally:
            listener.kill()
            listener.wait()
    assert all(p["to"] == str(lab.broadcast) and p["magic_for_me"] for p in packets)
    assert event.destination == f"{lab.broadcast}:{port}" and event.macs == (machine.mac,) and event.driver == "wol"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "DPM-E102"
