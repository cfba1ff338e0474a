"""Crash safety: SIGKILL the scheduler in the middle of a 50-machine run. After a restart every
execution reaches its final state, none is started twice, nothing is lost."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys

import httpx
import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed, ExecutionQueued, ExecutionStarted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MACHINES = 50


def start_scheduler(env: dict[str, str], log) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dpm_scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_sigkill_mid_run_then_restart_finishes_every_execution_once(
    api_service, service_env, auth, tmp_path
) -> None:
    port = free_port()
    env = {
        **service_env,
        "DPM_SCHEDULER_PORT": str(port),
        "DPM_SCHEDULER_CONCURRENCY": "10",
        "DPM_SCHEDULER_TICK": "0.1",
        "DPM_RELAY_ENABLED": "false",  # the api relays; the killed process holds nothing but its own work
    }
    async with running(api_service(), headers=auth) as api:
        log = api.runtime.eventlog
        csv = "name,macs\n" + "".join(f"c{i:03d},52:54:00:cc:00:{i:02x}\n" for i in range(MACHINES))
        imported = await api.http.post("/machines/import", content=csv, headers={"Content-Type": "text/csv"})
        assert imported.is_success, imported.text
        ids = [m["machine_id"] for m in (await api.http.get("/machines")).json()]
        spec = {"kind": "simulated", "params": {"seconds": "1"}}
        assert (await api.http.post("/scenarios", json={"name": "sim", "spec": spec})).is_success

        async def of(kind) -> list:
            return [r.event for r in await log.read_all(limit=100_000) if isinstance(r.event, kind)]

        with open(tmp_path / "scheduler-1.log", "wb") as out:
            first = start_scheduler(env, out)
        try:
            async with httpx.AsyncClient() as http:

                async def ready() -> bool:
                    try:
                        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await eventually(ready, timeout=30, what="scheduler ready")
            run = (await api.http.post("/scenarios/sim/runs", json={"machines": ids})).json()
            await eventually(lambda: of(ExecutionStarted), until=lambda s: len(s) >= 15, timeout=60, what="15 started")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_at = len(await of(ExecutionStarted))
        assert killed_at < MACHINES, "the run ended before the kill; nothing was tested"

        with open(tmp_path / "scheduler-2.log", "wb") as out:
            second = start_scheduler(env, out)
        try:

            async def done() -> list:
                rows = (await api.http.get("/executions", params={"run_id": run["run_id"], "limit": 1000})).json()
                return rows if sum(r["state"] in ("completed", "failed") for r in rows) == MACHINES else []

            rows = await eventually(done, timeout=120, interval=0.5, what="every execution finished")
        finally:
            second.terminate()
            second.wait(30)
        assert {r["state"] for r in rows} == {"completed"}
        per_execution: collections.Counter[tuple[str, object]] = collections.Counter()
        for kind in (ExecutionQueued, ExecutionStarted, ExecutionCompleted, ExecutionFailed):
            for e in await of(kind):
                per_execution[(kind.__name__, e.execution_id)] += 1
    assert all(count == 1 for count in per_execution.values()), "an execution was queued, started or ended twice"
    assert sum(1 for kind, _ in per_execution if kind == "ExecutionStarted") == MACHINES
    print(f"\nkilled with {killed_at}/{MACHINES} started; all {MACHINES} completed once after the restart")
