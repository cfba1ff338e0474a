"""`dpm admin rebuild SERVICE.PROJECTION`: replay the event log into fresh read-model tables.

The api rebuilds its own projections while the request waits (200, the figures). Another service's
projection is rebuilt by that service, which alone has its code: the api answers 202 with a request,
and the CLI follows it (``GET /admin/rebuilds/{id}``) until it is done, failed, or ``--timeout``.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from dpm_cli.client import EXIT_API_ERROR, CliError, request
from dpm_cli.output import JsonOpt
from dpm_schemas import E
from dpm_schemas.errors import DpmError

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0, help="Seconds to wait for a rebuild another service carries out.")
]
POLL = (0.2, 2.0)  # first and longest pause between two looks at a request


def admin_rebuild(projection: str, timeout: TimeoutOpt = 600.0, as_json: JsonOpt = False) -> None:
    """Replay the event log from position 0 into fresh read-model tables and swap them in
    (PROJECTION is "<service>.<name>", e.g. pxe.directory; the api's own may be named short)."""
    answer = request("POST", f"/admin/projections/{projection}/rebuild")
    if "status" in answer:  # 202: a request carried out by the service that owns the projection
        answer = follow(answer, timeout)
        answer = {**answer, "name": answer["projection"], "events_per_second": _rate(answer)}
    if as_json:
        print(json.dumps(answer))
        return
    print(
        f"rebuilt {projection}: {answer['events']} events up to position {answer['position']} "
        f"in {answer['seconds']:.2f} s ({answer['events_per_second']:.0f} events/s)"
    )


def follow(asked: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Poll the request until it is done (returned) or failed, or ``timeout`` passes (CliError)."""
    deadline, pause, current = time.monotonic() + timeout, POLL[0], asked
    while current["status"] not in ("done", "failed"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _failure(E.REBUILD_NOT_FINISHED(name=current["projection"], id=current["id"],
                                                  status=current["status"], seconds=timeout))  # fmt: skip
        time.sleep(min(pause, left))
        pause = min(pause * 2, POLL[1])
        current = request("GET", f"/admin/rebuilds/{asked['id']}")
    if current["status"] == "failed":
        raise _failure(E.REBUILD_FAILED(name=current["projection"], id=current["id"], error=current["error"]))
    return current


def _rate(done: dict[str, Any]) -> float:
    return done["events"] / done["seconds"] if done["seconds"] else 0.0


def _failure(err: DpmError) -> CliError:
    return CliError(f"{err.code} {err.message}\n  remedy: {err.remedy}", EXIT_API_ERROR)
