"""Run one installer: its own process group (so a timeout kills what it started too), no stdin (an
installer that asks a question gets end-of-file, not a hang), and only the tail of its output kept
(an installer may print megabytes; the end is where the reason for a failure is)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL = 64 * 1024
CHUNK = 1 << 16
DRAIN_GRACE = 2.0  # seconds to read what is left after exit (a daemon it started may hold the pipe)


@dataclass(frozen=True, slots=True)
class Ran:
    exit_code: int | None  # None: killed at the timeout
    output: str  # stdout and stderr interleaved, the last OUTPUT_TAIL bytes, decoded leniently
    timed_out: bool


class _Tail:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


async def run_bounded(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float, tail: int = OUTPUT_TAIL
) -> Ran:
    """Run ``argv`` to its end or ``timeout`` seconds, whichever is first; on timeout (or when the
    caller is cancelled) the whole process group is killed."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    output = _Tail(tail)
    assert proc.stdout is not None
    reader = asyncio.create_task(_drain(proc.stdout, output))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
        await proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        reader.cancel()
        raise
    await _finish(reader)
    return Ran(None if timed_out else proc.returncode, output.text(), timed_out)


async def _drain(stream: asyncio.StreamReader, output: _Tail) -> None:
    while chunk := await stream.read(CHUNK):
        output.add(chunk)


async def _finish(reader: asyncio.Task[None]) -> None:
    with contextlib.suppress(TimeoutError):  # wait_for cancels the reader; what it read is kept
        await asyncio.wait_for(reader, DRAIN_GRACE)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
