"""An order's reports to the updater: progress while the agent works, then the final one, which must
not be lost.

The final report goes into the outbox (``outbox.json`` beside the scheduled installs; rewritten
whole and atomically, 0600) *before* it is sent, and leaves it once the updater has answered: an
agent restart -- or the reboot a package asked for -- between the install and the delivery loses
nothing, because the agent's start-up and its timer send what is left (``flush``). Progress
reports are only tried for a short while: a lost one costs a percentage on a screen, not a step.

The updater answers 202. 401/403 (the token is no longer valid: the step is over) and 409 (a report
after the final one) are final answers: logged, never retried, and the order stops reporting.
5xx, 429 and connection errors are retried with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from dpm_agent.packages.download import Clock, RetryPolicy, Sleep
from dpm_agent.packages.install import InstallResult
from dpm_agent.packages.pending import write_atomic
from dpm_schemas import E
from dpm_schemas.agent_protocol import OUTPUT_TAIL_MAX, REPORT_PATH, InstallItem, InstallReport
from dpm_schemas.events.packages import PackageOutcome
from dpm_schemas.text import LONG_TEXT_MAX

log = logging.getLogger("dpm_agent.reports")

# What the report's text fields refuse (dpm_schemas.text): C0 but TAB/LF/CR, DEL, C1, lone surrogates.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
REPORT_MESSAGE_MAX = 1000
PROGRESS_POLICY = RetryPolicy(retry_for=10.0, first_delay=0.5, max_delay=5.0, timeout=15.0)
FINAL_POLICY = RetryPolicy(retry_for=60.0, first_delay=0.5, max_delay=10.0, timeout=15.0)


class Delivery(StrEnum):
    DELIVERED = "delivered"
    CLOSED = "closed"  # the updater takes no more reports on this step (401/403/409, another 4xx)
    KEPT = "kept"  # not delivered yet: in the outbox (a final report) or dropped (progress)


def clean(text: str, limit: int) -> str:
    """``text`` as a report may carry it: control characters other than TAB, LF and CR replaced by
    U+FFFD (an installer's output is whatever its terminal codes were), the last ``limit`` kept."""
    return _CONTROL.sub("\ufffd", text)[-limit:]


def outcome(item: InstallItem, result: InstallResult) -> PackageOutcome:
    """The report's view of one install (or of a download that failed before it)."""
    return PackageOutcome(
        package_id=item.package.id,
        revision=max(item.package.revision, 1),
        ok=result.ok,
        code=result.code,
        exit_code=result.exit_code,
        message=clean(result.message, LONG_TEXT_MAX),
        output_tail=clean(result.output_tail, OUTPUT_TAIL_MAX),
        reboot_required=result.reboot_required,
        seconds=max(result.seconds, 0.0),
    )


def report(execution_id: object, status: str, *, message: str = "", **fields: object) -> InstallReport:
    """An ``InstallReport`` whose message is cleaned and cut to what the protocol admits."""
    body = {"execution_id": execution_id, "status": status, "message": clean(message, REPORT_MESSAGE_MAX)}
    return InstallReport.model_validate(body | fields)


class Letter(BaseModel):
    """One undelivered final report, with where and how to send it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    token: str
    report: InstallReport


_LETTERS: TypeAdapter[list[Letter]] = TypeAdapter(list[Letter])


@dataclass
class Reporter:
    """Sends reports; ``outbox``: the file of undelivered final reports."""

    outbox: Path
    progress_policy: RetryPolicy = PROGRESS_POLICY
    final_policy: RetryPolicy = FINAL_POLICY
    transport: httpx.AsyncBaseTransport | None = None
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    _file: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def progress(self, server: str, token: str, body: InstallReport) -> Delivery:
        return await self._send(server, token, body, self.progress_policy)

    async def final(self, server: str, token: str, body: InstallReport) -> Delivery:
        """Into the outbox, then to the updater; KEPT (still in the outbox) when it cannot be reached."""
        letter = Letter(server=server, token=token, report=body)
        async with self._file:
            self._save([*self._load(), letter])
        delivery = await self._send(server, token, body, self.final_policy)
        if delivery is not Delivery.KEPT:
            await self._drop(letter)
        return delivery

    async def flush(self) -> int:
        """One try for each undelivered final report; how many are left."""
        async with self._file:
            letters = self._load()
        for letter in letters:
            once = RetryPolicy(retry_for=0.0, timeout=self.final_policy.timeout)
            if await self._send(letter.server, letter.token, letter.report, once) is not Delivery.KEPT:
                await self._drop(letter)
        async with self._file:
            return len(self._load())

    async def _drop(self, letter: Letter) -> None:
        async with self._file:
            self._save([kept for kept in self._load() if kept != letter])

    async def _send(self, server: str, token: str, body: InstallReport, policy: RetryPolicy) -> Delivery:
        """POST until an answer that is not transient, or ``policy.retry_for`` seconds have passed."""
        url = server.rstrip("/") + REPORT_PATH
        headers = {"Authorization": f"Bearer {token}"}
        start, attempt = self.clock(), 0
        async with httpx.AsyncClient(headers=headers, timeout=policy.timeout, transport=self.transport) as client:
            while True:
                try:
                    answer = await client.post(url, json=body.model_dump(mode="json"))
                    if answer.status_code < 300:
                        return Delivery.DELIVERED
                    if answer.status_code != 429 and answer.status_code < 500:
                        log.warning("%s refused the %s report: HTTP %s %s", url, body.status.value,
                                    answer.status_code, answer.text[:300])  # fmt: skip
                        return Delivery.CLOSED
                    why = f"HTTP {answer.status_code}"
                except httpx.TransportError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                delay = policy.delay(attempt)
                if self.clock() + delay > start + policy.retry_for:
                    log.warning("%s report to %s not delivered yet: %s", body.status.value, url, why)
                    return Delivery.KEPT
                await self.sleep(delay)
                attempt += 1

    def _load(self) -> list[Letter]:
        """The outbox; an unreadable one is moved aside and logged (DPM-E239), not fatal."""
        try:
            raw = self.outbox.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return _LETTERS.validate_python(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            moved = self.outbox.with_name(f"{self.outbox.name}.unreadable")
            os.replace(self.outbox, moved)
            err = E.PACKAGE_REPORTS_UNREADABLE(path=str(self.outbox), reason=str(exc).splitlines()[0], moved=moved)
            log.error("%s %s", err.code, err.message)
            return []

    def _save(self, letters: list[Letter]) -> None:
        if letters or self.outbox.exists():
            write_atomic(self.outbox, _LETTERS.dump_json(letters, indent=1))
