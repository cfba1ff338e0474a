"""Carry out the updater's install orders on this machine, outside any WebSocket session: an install
outlasts the command that asked for it, a gateway restart, and (scheduled ones, and undelivered
final reports) an agent restart.

One order at a time: every order runs under the agent's one install lock, so installs never overlap.
That is how an ``exclusive`` package is honoured on the machine -- nothing else is being installed
while it is (its "reboot before" is the step's to arrange). Within an order the items go in order,
each downloaded into the cache (state_dir/packages/cache) and installed, stopping at the first
failure; progress is reported before each download and each install, then the final report:
``completed`` (every item installed) or ``failed`` (the failed item's code and message, and every
outcome so far).

``next-boot`` and ``at-time`` orders are downloaded at once (the content is on the machine when
their time comes), reported as scheduled and kept in the durable queue (``pending``); ``run_due``
-- at start-up and on the timer -- runs those whose time has come. An entry leaves the queue only
after its final report is in the outbox: an agent that dies during the install runs it again
(at least once, never lost). The clock and the boot id are injected: tests need no reboot.

After an install round that changed the machine, ``on_change`` (the agent re-sends its inventory);
when an installed package asks for a reboot, ``reboot`` -- after the final report was sent (or, if
the updater cannot be reached, kept in the outbox, which survives the reboot). When the agent's own
package (``dpm-agent``) installed, ``restart`` after the final report, still under the install lock
(no other order starts in the old agent): the new agent's hello at its version is what the updater
waits for. The package replaces the agent's files and does not restart the agent during its install.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from dpm_agent.config import AgentConfig
from dpm_agent.packages import pending
from dpm_agent.packages.download import RetryPolicy, download
from dpm_agent.packages.install import InstallOptions, InstallResult, install
from dpm_agent.packages.pending import Pending, When
from dpm_agent.packages.reports import Delivery, Reporter, outcome, report
from dpm_schemas import DpmError, E
from dpm_schemas.agent_protocol import CONTENT_PATH, InstallItem, InstallOrder, InstallReport, InstallWhen
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.packages import AGENT_PACKAGE_ID

SEEN_MAX = 1000  # orders remembered as taken, so one sent again is not run twice
log = logging.getLogger("dpm_agent.orders")

Hook = Callable[[], Awaitable[None]]
Done = tuple[InstallItem, InstallResult]
DOWNLOAD_POLICY = RetryPolicy()


async def _nothing() -> None:
    return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _StepOver(Exception):
    """The updater takes no more reports on this order's step: stop working on it."""


class Installer:
    """The agent's installer: ``submit`` orders (from a command), ``run`` it beside the sessions."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        on_change: Hook = _nothing,
        reboot: Hook = _nothing,
        restart: Hook = _nothing,
        reporter: Reporter | None = None,
        download_policy: RetryPolicy = DOWNLOAD_POLICY,
        boot_id: Callable[[], str] = pending.current_boot_id,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.on_change, self.reboot, self.restart = on_change, reboot, restart
        self.reporter = reporter or Reporter(config.packages_dir / "outbox.json")
        self.download_policy = download_policy
        self.boot_id, self.now = boot_id, now
        self.cache = config.packages_dir / "cache"
        self.queue = config.packages_dir / "pending.json"
        self.lock = asyncio.Lock()  # one install at a time on this machine
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[uuid.UUID] = set()
        self.restarting = False  # set once the agent's own package installed, until the process is replaced
        self._seen: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()  # recent orders

    def submit(self, order: InstallOrder) -> None:
        """Start ``order`` in the background (not in the caller's task group); it waits for the lock.
        An order this agent took already is ignored (the updater asks again when an answer was lost),
        whether it is still under way or done since."""
        if order.execution_id in self._active or order.execution_id in self._seen:
            log.info("install order %s was taken already", order.execution_id)
            return
        if self.restarting:  # not remembered: the updater asks the new agent again
            log.info("install order %s not taken: the agent is restarting into its upgrade", order.execution_id)
            return
        self._active.add(order.execution_id)
        self._seen[order.execution_id] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        task = asyncio.create_task(self._guarded(order), name=f"install {order.execution_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: undelivered reports and due installs at start-up, then every
        ``install_poll`` seconds. Orders still running when it stops are cancelled (their
        installer's process group is killed); scheduled ones stay in the queue."""
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.install_poll)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def tick(self) -> None:
        """One look: send the outbox, run the due installs. A failure is logged, never fatal."""
        try:
            await self.reporter.flush()
            await self.run_due()
        except Exception:
            log.exception("scheduled installs or reports failed")

    async def idle(self) -> None:
        """Wait until every submitted order has ended (tests, and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _guarded(self, order: InstallOrder) -> None:
        try:
            await self.handle(order)
        except Exception:
            log.exception("install order %s failed", order.execution_id)
        finally:
            self._active.discard(order.execution_id)

    async def handle(self, order: InstallOrder) -> InstallReport | None:
        """``order`` as its ``when`` says: carried out now, or downloaded and scheduled. The final
        report, or None when the order was scheduled or its step was over."""
        if order.when is InstallWhen.NOW:
            return await self.carry_out(order)
        await self.schedule(order)
        return None

    async def carry_out(self, order: InstallOrder, done: Callable[[], object] = lambda: None) -> InstallReport | None:
        """Every item of ``order`` now, under the lock; ``done`` runs once the final report is in the
        outbox (a scheduled entry leaves the queue). Then the inventory hook, then a reboot if asked."""
        async with self.lock:
            results = await self._items(order)
            if results is None:
                done()
                return None
            final = _final(order, results)
            delivery = await self.reporter.final(order.server, order.token, final)
            done()
            log.info("install order %s %s (report %s)", order.execution_id, final.status.value, delivery.value)
            reboot = any(r.ok and r.reboot_required for _item, r in results)
            if not reboot and any(r.ok and item.package.id == AGENT_PACKAGE_ID for item, r in results):
                self.restarting = True  # still under the lock: no other order starts in the old agent
                try:
                    await self.restart()  # replaces the process; the new agent says hello at its version
                finally:
                    self.restarting = False  # it returned (no restart configured): this agent goes on
        if any(r.exit_code is not None or r.ok for _item, r in results):
            await self.on_change()
        if reboot:
            await self.reboot()  # the agent starts again with the machine, whatever it installed
        return final

    async def _items(self, order: InstallOrder) -> list[Done] | None:
        """Each item downloaded and installed, up to the first failure; None when the step is over."""
        results: list[Done] = []
        options = InstallOptions(root=self.config.install_root, timeout=order.timeout_seconds)
        try:
            for i, item in enumerate(order.items):
                await self._progress(order, f"downloading {_name(item)}", _percent(order, i, 0))
                results.append((item, await self._one(order, i, item, options)))
                if not results[-1][1].ok:
                    break
        except _StepOver:
            log.warning("install order %s: its step is over; stopped", order.execution_id)
            return None
        return results

    async def _one(self, order: InstallOrder, i: int, item: InstallItem, options: InstallOptions) -> InstallResult:
        """One item fetched and installed; whatever goes wrong becomes a failed result (E236), so the
        order always ends with a final report rather than leaving its step to time out."""
        try:
            files = await self._fetch(order, item)
            if isinstance(files, InstallResult):
                return files
            await self._progress(order, f"installing {_name(item)}", _percent(order, i, 1))
            return await install(item.package, files, options)
        except _StepOver:
            raise
        except Exception as exc:
            log.exception("install order %s: %s failed unexpectedly", order.execution_id, item.package.id)
            err = E.PACKAGE_INSTALL_INVALID(package=item.package.id, reason=f"the agent failed: {exc!r}"[:500])
            return InstallResult(False, err.code, None, "", False, 0.0, err.message)

    async def _progress(self, order: InstallOrder, message: str, percent: int | None) -> None:
        body = report(order.execution_id, StepStatus.PROGRESS, percent=percent, message=message)
        if await self.reporter.progress(order.server, order.token, body) is Delivery.CLOSED:
            raise _StepOver(order.execution_id)

    async def _fetch(self, order: InstallOrder, item: InstallItem) -> dict[str, Path] | InstallResult:
        """The item's file in the cache, by the name its installer expects; a failed result (E230-E233,
        E237) when it cannot be had. An item without content has no files (a command-only script)."""
        if item.sha256 is None:
            return {}
        url = order.server + CONTENT_PATH.format(sha256=item.sha256)
        start = time.monotonic()
        try:
            path = await download(url, token=order.token, sha256=item.sha256, size=item.size,
                                  cache_dir=self.cache, policy=self.download_policy)  # fmt: skip
        except DpmError as exc:
            return InstallResult(False, exc.code, None, "", False, time.monotonic() - start, exc.message)
        except OSError as exc:  # the cache's disk failed or filled while writing
            err = E.PACKAGE_DOWNLOAD_FAILED(url=url, reason=f"{type(exc).__name__}: {exc}", seconds=0)
            return InstallResult(False, err.code, None, "", False, time.monotonic() - start, err.message)
        files = item.package.execution.files
        return {item.file_name or (files[0] if files else item.sha256): path}

    async def schedule(self, order: InstallOrder) -> None:
        """Download every item now, then queue the order; a download failure fails the order at once."""
        async with self.lock:
            try:
                for i, item in enumerate(order.items):
                    await self._progress(order, f"downloading {_name(item)}", _percent(order, i, 0))
                    got = await self._fetch(order, item)
                    if isinstance(got, InstallResult):  # the order fails now, not at its time
                        await self.reporter.final(order.server, order.token, _final(order, [(item, got)]))
                        return
                when = f"for {order.at.isoformat()}" if order.at is not None else "for next boot"
                queued = await self._queued(order, f"scheduled {when}")
            except _StepOver:
                return
            pending.add(self.queue, self._entry(queued))

    async def _queued(self, order: InstallOrder, message: str) -> InstallOrder:
        """What goes in the queue. With ``order.later`` the step ends now (completed: the files are
        here, the install is queued) and the install reports, when it runs, as its own delivery; an
        order without it keeps its step open with a progress report (the step's timeout then bounds it)."""
        if order.later is None:
            await self._progress(order, message, None)
            return order
        done = report(order.execution_id, StepStatus.COMPLETED, percent=100, message=message)
        await self.reporter.final(order.server, order.token, done)
        changes = {"execution_id": order.later.execution_id, "token": order.later.token, "later": None}
        return order.model_copy(update=changes)

    def _entry(self, order: InstallOrder) -> Pending:
        when = When.NEXT_BOOT if order.when is InstallWhen.NEXT_BOOT else When.AT_TIME
        boot = self.boot_id() if when is When.NEXT_BOOT else ""
        return Pending(key=str(order.execution_id), order=order, when=when, at=order.at, boot_id=boot,
                       scheduled_at=self.now())  # fmt: skip

    async def run_due(self) -> int:
        """Run the scheduled orders whose time has come, in the order they were scheduled; how many."""
        entries = pending.due(pending.load(self.queue), self.now(), self.boot_id())
        orders = [(e.key, e.order) for e in entries if e.order is not None]  # single packages: not ours
        for key, order in orders:
            await self.carry_out(order, done=functools.partial(pending.remove, self.queue, [key]))
        return len(orders)


def _final(order: InstallOrder, results: list[Done]) -> InstallReport:
    """``completed`` when every item of ``order`` is installed, else ``failed`` with the last
    result's (the first failure's) code and message; every outcome so far."""
    outcomes = tuple(outcome(item, result) for item, result in results)
    item, last = results[-1]
    if last.ok and len(results) == len(order.items):
        return report(order.execution_id, StepStatus.COMPLETED, percent=100, outcomes=outcomes,
                      message=f"installed {len(outcomes)} package(s)")  # fmt: skip
    return report(order.execution_id, StepStatus.FAILED, code=last.code, outcomes=outcomes,
                  message=f"{item.package.id}: {last.message}")  # fmt: skip


def _percent(order: InstallOrder, index: int, half: int) -> int:
    """Before item ``index``'s download (half 0) or install (half 1): each item is two halves."""
    return (100 * (2 * index + half)) // (2 * len(order.items))


def _name(item: InstallItem) -> str:
    return item.package.id
