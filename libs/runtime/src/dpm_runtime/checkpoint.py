"""Projection checkpoints by full name, and the guard a reaction uses before it reads a read model.

A projection is named "<service>.<projection>" (e.g. "scheduler.presence"); its checkpoint row in
``dpm_checkpoints`` is "projection:<full name>". A reaction handler (a NATS consumer) that reads a
read model fed by the same events may run before the projection has applied the event it handles:
``require_position`` turns that race into a redelivery instead of a decision on stale rows.
"""

from __future__ import annotations

from dpm_runtime.eventlog import Conn
from dpm_runtime.outcome import Retry

PREFIX = "projection:"


def checkpoint_key(full_name: str) -> str:
    """The ``dpm_checkpoints`` row of the projection ``full_name`` ("service.projection")."""
    return f"{PREFIX}{full_name}"


async def applied_position(conn: Conn, full_name: str) -> int | None:
    """The last position the projection has applied; None when it was never set up."""
    cur = await conn.execute("SELECT position FROM dpm_checkpoints WHERE name = %s", (checkpoint_key(full_name),))
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def require_position(conn: Conn, name: str, position: int, *, delay: float = 0.5) -> None:
    """Raise ``Retry`` (the consumer redelivers after ``delay``) until the projection ``name``
    ("service.projection") has applied ``position``. A plain read: it never waits on the runner's
    checkpoint lock, and inside the handler's transaction it sees the last committed batch."""
    if position <= 0:  # a timer round: no event to wait for
        return
    reached = await applied_position(conn, name)
    if reached is None:
        raise Retry(f"projection {name} is not set up yet", delay=delay)
    if reached < position:
        raise Retry(f"projection {name} has applied {reached}, not yet {position}", delay=delay)
