"""Power-on is verified: a lab machine woken by its magic packet starts its agent and is recorded as
answered; a machine that never answers shows remote-power-on-error with DPM-E113 after the timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running
from dpm_schemas.events import PowerOnFailed, PowerOnSucceeded

from .conftest import ENROLMENT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
]

MACHINE = Path(__file__).with_name("lab_machine.py")


async def test_woken_machine_answers_and_a_dead_one_is_a_power_on_error(
    api_service, gateway_service, scheduler_service, auth, tmp_path
) -> None:
    wol_port = free_port()
    gateway = gateway_service(
        agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=2.0, http_host="0.0.0.0"
    )
    scheduler = scheduler_service(scheduler_wol_port=wol_port, scheduler_power_on_timeout=4.0, scheduler_wol_repeats=1)
    with netlab.NetLab(hosts_wanted=2) as lab:
        alive, dead = lab.hosts
        config = tmp_path / "agent.toml"
        config.write_text(
            f'server = "http://{lab.host_ip}:{gateway.port}"\nenrolment_token = "{ENROLMENT}"\n'
            f'state_dir = "{tmp_path / "state"}"\nmacs = ["{alive.mac}"]\nhostname = "alive"\n'
            "inventory = false\nmax_backoff = 1.0\n"
        )
        with open(tmp_path / "machine.log", "wb") as log:
            machine = lab.popen(
                alive,
                [sys.executable, str(MACHINE), str(wol_port), alive.mac, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            async with running(api_service(), headers=auth) as api, running(gateway), running(scheduler):
                await api.http.put("/groups/lab", json={"subnet": str(lab.subnet)})
                ids = {}
                for name, host in (("alive", alive), ("dead", dead)):
                    r = await api.http.post("/machines", json={"name": name, "macs": [host.mac], "group": "lab"})
                    ids[name] = r.json()["machine_id"]

                async def show(name: str):
                    return (await api.http.get(f"/machines/{ids[name]}")).json()

                assert (await show("alive"))["power_state"] == "off"
                for name in ids:
                    assert (await api.http.post(f"/machines/{ids[name]}/power/on")).status_code == 202
                on = await eventually(
                    lambda: show("alive"),
                    until=lambda m: m["power_state"] == "on",
                    timeout=30,
                    what="the woken machine online",
                )
                failed = await eventually(
                    lambda: show("dead"),
                    until=lambda m: m["power_error"] is not None,
                    timeout=20,
                    what="power-on error of the dead machine",
                )
                # powering on a machine that is already running answers at once
                assert (await api.http.post(f"/machines/{ids['alive']}/power/on")).status_code == 202

                async def succeeded():
                    return [
                        e.event for e in await api.runtime.eventlog.read_all() if isinstance(e.event, PowerOnSucceeded)
                    ]

                await eventually(succeeded, until=lambda s: len(s) == 2, timeout=3, what="already-on answered")
                events = [e.event for e in await api.runtime.eventlog.read_all()]
        finally:
            machine.kill()
            machine.wait()
    assert on["online"] and on["power_error"] is None
    assert failed["power_state"] == "remote-power-on-error" and failed["power_error"] == "DPM-E113"
    ok, already = [e for e in events if isinstance(e, PowerOnSucceeded)]
    (bad,) = [e for e in events if isinstance(e, PowerOnFailed)]
    assert str(ok.machine_id) == ids["alive"] and ok.via == "agent"
    assert str(already.machine_id) == ids["alive"] and already.via == "already-on"
    assert str(bad.machine_id) == ids["dead"] and "dead" in bad.reason and "4 s" in bad.reason
