"""``require_position``: a reaction that reads a read model fed by the same events waits (a Retry,
redelivered later) until that projection has applied the event it handles."""

from __future__ import annotations

import pytest

from dpm_runtime.outcome import Retry
from dpm_runtime.projection import checkpoint_key, require_position

pytestmark = pytest.mark.integration


async def test_retry_until_the_projection_has_applied_the_position(pool) -> None:
    async with pool.connection() as conn:
        with pytest.raises(Retry, match="not set up") as unset:
            await require_position(conn, "scheduler.presence", 3, delay=0.25)
        assert unset.value.delay == 0.25
        await conn.execute(
            "INSERT INTO dpm_checkpoints (name, position) VALUES (%s, 2)", (checkpoint_key("scheduler.presence"),)
        )
        with pytest.raises(Retry, match="applied 2, not yet 3") as behind:
            await require_position(conn, "scheduler.presence", 3)
        assert behind.value.delay == 0.5
        await require_position(conn, "scheduler.presence", 2)  # reached: returns
        await require_position(conn, "scheduler.other", 0)  # a timer round (position 0) never waits
        await conn.execute(
            "UPDATE dpm_checkpoints SET position = 7 WHERE name = %s", (checkpoint_key("scheduler.presence"),)
        )
        await require_position(conn, "scheduler.presence", 3)
