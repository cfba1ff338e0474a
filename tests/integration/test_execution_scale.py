"""Scale: 1,000 machines run a simulated scenario with the concurrency limit at 100, to completion.
Prints wall time, events written and how far the execution read model lagged behind the log."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MACHINES = 1000


async def test_1000_machines_with_limit_100(api_service, scheduler_service, auth) -> None:
    scheduler = scheduler_service(scheduler_concurrency=100, scheduler_tick=0.1)
    async with running(api_service(), headers=auth) as api, running(scheduler):
        log = api.runtime.eventlog
        csv = "name,macs\n" + "".join(f"s{i:04d},52:54:00:5c:{i // 256:02x}:{i % 256:02x}\n" for i in range(MACHINES))
        assert (await api.http.post("/machines/import", content=csv, headers={"Content-Type": "text/csv"})).is_success
        ids = [m["machine_id"] for m in (await api.http.get("/machines")).json()]
        assert len(ids) == MACHINES
        spec = {"kind": "simulated", "params": {"seconds": "1"}}
        assert (await api.http.post("/scenarios", json={"name": "sim", "spec": spec})).is_success
        before = (await log.read_all(after=0, limit=1_000_000, metadata=False))[-1].position

        started = time.monotonic()
        run = (await api.http.post("/scenarios/sim/runs", json={"machines": ids})).json()

        async def finished() -> int:
            async with api.runtime.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM api.executions WHERE run_id = %s AND state IN ('completed', 'failed')",
                        (run["run_id"],),
                    )
                ).fetchone()
            return int(row[0]) if row else 0

        await eventually(finished, until=lambda n: n == MACHINES, timeout=300, interval=0.25, what="all finished")
        seen = datetime.now(UTC)
        wall = time.monotonic() - started
        events = await log.read_all(after=before, limit=1_000_000)
        ends = [r for r in events if isinstance(r.event, ExecutionCompleted | ExecutionFailed)]
        lag = (seen - max(r.occurred_at for r in ends)).total_seconds()
    assert len(ends) == MACHINES and not any(isinstance(r.event, ExecutionFailed) for r in ends)
    floor = MACHINES / 100 * 1.0  # ten waves of one-second steps
    print(
        f"\n{MACHINES} machines, limit 100, 1 s steps: {wall:.1f} s wall (floor {floor:.0f} s), "
        f"{len(events)} events written, read model caught up {lag:.2f} s after the last end"
    )
