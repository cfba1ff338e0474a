"""The agents' side of a delivery: downloading a package's content and reporting on the step, each
with the token the install order carried. The token is checked against the updater's projection of
its deliveries (``domain.delivery.check_grant``): it opens only that delivery's contents and reports
only on its own execution, and nothing once the execution ended -- so an agent can neither fetch
another machine's packages nor report another machine's step.

Reports become the step's StepReported (an automatic delivery has no step: its final report is its
AutoUpdateEnded), and each package's outcome a PackageInstallReported (the machine's update
history), on the delivery's ``delivery-<id>`` stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.service import Runtime
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.agent_protocol import InstallReport
from dpm_schemas.base import Event
from dpm_schemas.events import AutoUpdateEnded, PackageInstallReported, StepReported
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import ScenarioKind
from dpm_schemas.ids import stream_id
from dpm_updater.adapters.content import ContentStore
from dpm_updater.domain.delivery import Grant, check_grant
from dpm_updater.projections import grant_by_token

DELIVERIES = "deliveries"


@dataclass
class Downloads:
    rt: Runtime
    store: ContentStore
    clock: Callable[[], datetime]

    @property
    def eventlog(self) -> EventLog:
        return self.rt.eventlog

    async def content(self, token: str, sha256: str) -> Path:
        """The stored file of ``sha256`` if the token's delivery includes it (DPM-E281, E284)."""
        check_grant(await self._grant(token), self.clock(), sha256=sha256)
        path = self.store.path_of(sha256)
        if not path.is_file():
            raise E.PACKAGE_CONTENT_GONE(sha256=sha256, package="(this delivery)")
        return path

    async def authorize(self, token: str) -> Grant:
        """The token's delivery, while it runs (DPM-E281)."""
        return check_grant(await self._grant(token), self.clock())

    async def report(self, token: str, report: InstallReport) -> int:
        """Append the report as the step's (and each outcome as the machine's history); the position."""
        grant = check_grant(await self._grant(token), self.clock(), execution_id=report.execution_id)
        if grant.purpose == "file":
            raise E.DELIVERY_TOKEN_REFUSED(what="reports", reason="it was given for one file's download")
        foreign = [o.package_id for o in report.outcomes if o.package_id not in grant.packages]
        if foreign:
            raise E.DELIVERY_TOKEN_REFUSED(what=f"outcomes of {foreign[0]!r}", reason="not part of this delivery")
        final = report.status is not StepStatus.PROGRESS
        events: list[Event] = [  # outcomes count in a final report only: the history is not a scratchpad
            PackageInstallReported(execution_id=grant.execution_id, machine_id=grant.machine_id, outcome=o)
            for o in (report.outcomes if final else ())
        ]
        if grant.purpose == "remote-update":
            events.insert(0, _step_report(report))
        elif final:  # no step waits on an automatic or deferred delivery: its end
            ok = report.status is StepStatus.COMPLETED
            events.append(AutoUpdateEnded(delivery_id=grant.execution_id, machine_id=grant.machine_id, ok=ok,
                                          code=report.code, message=report.message))  # fmt: skip
        if not events:
            return 0
        meta = Metadata.new(actor=f"agent:{grant.machine_id}")
        done = await self.eventlog.append(
            stream_id(subjects.DELIVERY, grant.execution_id), ANY_VERSION, [NewEvent(e, meta) for e in events]
        )
        return done.position

    async def _grant(self, token: str) -> Grant | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        grant = await self._lookup(digest)
        if grant is None:  # granted a moment ago: the projection may not have applied it yet
            await self.rt.projections[DELIVERIES].wait_for(await self.eventlog.head(), timeout=5)
            grant = await self._lookup(digest)
        return grant

    async def _lookup(self, digest: str) -> Grant | None:
        async with self.rt.pool.connection() as conn:
            return await grant_by_token(conn, digest)


def _step_report(report: InstallReport) -> StepReported:
    return StepReported(
        execution_id=report.execution_id,
        step=ScenarioKind.REMOTE_UPDATE.value,
        status=report.status,
        percent=report.percent,
        code=report.code,
        message=report.message,
    )
