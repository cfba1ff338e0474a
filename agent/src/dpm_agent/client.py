"""The agent's connection: enrol once, then one outbound WebSocket, kept up with backoff.

A session says hello, then heartbeats at the interval the gateway asks for, reporting its addresses
when they change and its inventory when it changes. Its receiver, talker and commands are one task
group, so any failure of any of them ends the whole session; the next one starts after an
exponential backoff with jitter (reset by a session that ended on purpose). Install orders are
the exception: a session only accepts them; the installer (``packages.orders``) runs beside the
sessions and carries them out, so an install outlives the session that ordered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import urllib.request
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dpm_agent import __version__, facts
from dpm_agent.commands import run_file_command
from dpm_agent.config import AgentConfig
from dpm_agent.fetch import put_fetched
from dpm_agent.packages.orders import Installer
from dpm_agent.power import EndSession, MachinePower
from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import (
    Action,
    Addresses,
    Command,
    CommandResult,
    Facts,
    Heartbeat,
    Hello,
    Inventory,
    Refused,
    Welcome,
)

log = logging.getLogger("dpm_agent")


class Refusal(Exception):
    """The gateway refused us (bad token, bad enrolment token): retrying soon will not help."""


def enrol(config: AgentConfig, found: Facts) -> str:
    """Exchange the enrolment token for this machine's own token and keep it (mode 0600)."""
    if not config.enrolment_token:
        raise Refusal("no token yet and no enrolment_token configured")
    body = json.dumps({"enrolment_token": config.enrolment_token, "facts": found.model_dump(mode="json")}).encode()
    req = urllib.request.Request(  # noqa: S310 -- AgentConfig only admits http(s) servers
        config.server.rstrip("/") + agent_protocol.ENROL_PATH,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 -- the configured gateway
            reply = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise Refusal(f"enrolment refused: {exc.read()[:300]!r}") from None
        raise
    config.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # 0600 from the start
    os.fchmod(fd, 0o600)  # a token file left wider by an older version
    with open(fd, "w") as f:
        f.write(reply["token"])
    log.info("enrolled as machine %s", reply["machine_id"])
    return str(reply["token"])


def retry_after(exc: BaseException) -> float:
    """The Retry-After seconds of a gateway's 5xx or 429 answer to the enrolment or the WebSocket
    handshake (a 503 while its database is away), else 0."""
    if isinstance(exc, urllib.error.HTTPError):
        value = exc.headers.get("Retry-After") if exc.code >= 429 else None
    elif isinstance(exc, InvalidStatus):
        value = exc.response.headers.get("Retry-After")
    else:
        return 0.0
    return float(value) if isinstance(value, str) and value.strip().isdigit() else 0.0


class Agent:
    """One machine's agent: sessions with the gateway, one after the other, until ``stop``.

    ``power`` is the machine's power driver, chosen by the caller (``__main__`` composes it from the
    configuration); an agent without one refuses shutdown and reboot. ``installer`` makes the
    installer of install orders (``packages.orders.Installer``), given the config and the agent's
    hooks: re-send the inventory, reboot after an install, restart after its own upgrade.
    ``restart`` replaces the process with the (upgraded) agent; None: an upgrade is only logged."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        power: MachinePower | None = None,
        gather: Callable[[AgentConfig], Facts] = facts.gather,
        take_inventory: Callable[[], Inventory] | None = None,
        current_addresses: Callable[[], tuple[str, ...]] = facts.addresses,
        installer: Callable[..., Installer] = Installer,
        restart: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.power = power
        self._gather = gather
        self._inventory = take_inventory or (lambda: facts.inventory(config.install_root))
        self._addresses = current_addresses
        self.machine_id: str | None = None
        self.sessions = 0
        self._ws: ClientConnection | None = None  # the live session's, for the installer's hooks
        self._restart = restart
        self.installer = installer(
            config,
            on_change=self.inventory_changed,
            reboot=self.reboot_after_install,
            restart=self.restart_after_upgrade,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions until ``stop``; any failure, a 5xx or 503 of the gateway included, is retried
        after a backoff, and never sooner than the gateway's Retry-After. The installer runs beside
        the sessions, not in any of them: an install outlives the session that ordered it."""
        installs = asyncio.create_task(self.installer.run(stop), name="installer")
        try:
            await self._sessions(stop)
        finally:
            installs.cancel()
            await asyncio.gather(installs, return_exceptions=True)

    async def _sessions(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            told = 0.0
            try:
                await self.session(stop)
                failures = 0
            except Refusal as exc:
                log.error("refused by the gateway: %s", exc)
                failures = max(failures, 5)
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError, agent_protocol.FrameError) as exc:
                log.warning("connection to %s lost: %r", self.config.server, exc)
                told = retry_after(exc)
            except Exception:  # a bug in one command or frame ends its session, never the agent
                log.exception("session with %s failed", self.config.server)
            failures += 1
            delay = min(self.config.max_backoff, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
            delay = max(delay, min(told, self.config.max_backoff) * random.uniform(1.0, 1.25))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def session(self, stop: asyncio.Event) -> None:
        found = await asyncio.to_thread(self._gather, self.config)
        token = (
            self.config.token_file.read_text().strip()
            if self.config.token_file.exists()
            else await asyncio.to_thread(enrol, self.config, found)
        )
        async with connect(
            self.config.ws_url + agent_protocol.AGENT_PATH,
            max_size=agent_protocol.MAX_FRAME,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            ping_interval=10,
            ping_timeout=10,
        ) as ws:
            await ws.send(agent_protocol.encode(Hello(agent_version=__version__, facts=found)))
            reply = agent_protocol.decode(await asyncio.wait_for(ws.recv(decode=False), 10))
            if isinstance(reply, Refused):
                raise Refusal(f"{reply.code} {reply.message}")
            if not isinstance(reply, Welcome):
                raise agent_protocol.FrameError(f"expected welcome, got {type(reply).__name__}")
            self.machine_id, self.sessions = str(reply.machine_id), self.sessions + 1
            log.info("online as machine %s (heartbeat %.1f s)", reply.machine_id, reply.heartbeat_interval)
            await self._supervise(ws, stop, reply.heartbeat_interval, found.ips)

    async def _supervise(
        self, ws: ClientConnection, stop: asyncio.Event, interval: float, ips: tuple[str, ...]
    ) -> None:
        """The receiver, the talker and every command in one task group: the first of them to fail
        ends the session and cancels the others, so an agent never stays online but deaf (a dead
        receiver under a live heartbeat) and no command outlives its session. ``EndSession`` is
        the on-purpose end (stopped, simulated reboot); any other failure is raised as it was."""
        self._ws = ws
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive(ws, tasks))
                tasks.create_task(self._talk(ws, stop, interval, ips))
        except ExceptionGroup as group:
            _ended, failed = group.split(EndSession)
            while isinstance(failed, ExceptionGroup):  # the first real failure, as run() knows them
                failed = failed.exceptions[0]
            if failed is not None:
                raise failed from None
        finally:
            self._ws = None

    async def _talk(self, ws: ClientConnection, stop: asyncio.Event, interval: float, ips: tuple[str, ...]) -> None:
        if self.config.inventory:
            await ws.send(agent_protocol.encode(await asyncio.to_thread(self._inventory)))
        seq = 0
        while not stop.is_set():
            await ws.send(agent_protocol.encode(Heartbeat(seq=seq)))
            seq += 1
            now = await asyncio.to_thread(self._addresses)
            if now != ips:
                ips = now
                local = ws.local_address[0] if ws.local_address else None
                if local is not None and local not in ips and not local.startswith("127."):
                    # the connection's own address is gone: it is dead even if writes still queue
                    raise ConnectionResetError(f"local address {local} went away")
                await ws.send(agent_protocol.encode(Addresses(ips=ips)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        raise EndSession("stopped")  # the connection closes as the session's context exits

    async def _receive(self, ws: ClientConnection, tasks: asyncio.TaskGroup) -> None:
        """Frames from the gateway: commands (each carried out in its own task of the session) or a
        refusal. A frame that does not decode ends the session (FrameError), as a closed socket does."""
        while True:
            frame = agent_protocol.decode(await ws.recv(decode=False))
            if isinstance(frame, Refused):
                log.error("gateway: %s %s", frame.code, frame.message)
            elif isinstance(frame, Command):
                tasks.create_task(self._execute(ws, frame))

    async def _execute(self, ws: ClientConnection, cmd: Command) -> None:
        log.info("command %s %s %s", cmd.id, cmd.action.value, cmd.path or "")
        if cmd.action is Action.INSTALL:
            await ws.send(agent_protocol.encode(self._accept_install(cmd)))
        elif cmd.action is Action.PUT_FILE and cmd.fetch is not None:
            await ws.send(agent_protocol.encode(await put_fetched(cmd, self.config)))
        elif cmd.action not in (Action.SHUTDOWN, Action.REBOOT):
            result = await asyncio.to_thread(run_file_command, cmd, self.config.allowed_paths)
            await ws.send(agent_protocol.encode(result))
        elif self.power is None:
            why = "this agent has no power driver"
            await ws.send(
                agent_protocol.encode(CommandResult(id=cmd.id, ok=False, code=E.AGENT_REFUSED.code, message=why))
            )
        else:
            await ws.send(agent_protocol.encode(CommandResult(id=cmd.id, ok=True)))  # answer, then act
            await self.power.act(cmd.action)  # a simulated reboot ends the session here (EndSession)

    def _accept_install(self, cmd: Command) -> CommandResult:
        """Accepted at once; the installer carries the order out and reports to the updater."""
        if cmd.install is None:
            why = "an install command needs its order"
            return CommandResult(id=cmd.id, ok=False, code=E.AGENT_REFUSED.code, message=why)
        self.installer.submit(cmd.install)
        return CommandResult(id=cmd.id, ok=True)

    async def inventory_changed(self) -> None:
        """After an install round: the live session's gateway hears the new inventory now (a later
        session sends it after its hello anyway)."""
        ws = self._ws
        if ws is not None and self.config.inventory:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(agent_protocol.encode(await asyncio.to_thread(self._inventory)))

    async def restart_after_upgrade(self) -> None:
        """The agent's own package installed (its final report sent or in the outbox): the session
        is closed cleanly, then the process replaced, so the new agent says hello at its version."""
        if self._restart is None:
            log.warning("the agent's own package was installed; restart the agent to run the new version")
            return
        log.info("the agent's own package was installed: restarting into it")
        if (ws := self._ws) is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._restart()

    async def reboot_after_install(self) -> None:
        """A package asked for a reboot: through the power driver (none: logged, not done)."""
        if self.power is None:
            log.warning("an installed package asks for a reboot, but this agent has no power driver")
            return
        try:
            await self.power.act(Action.REBOOT)
        except EndSession:  # a simulated reboot: the live session ends, as the machine's would
            if (ws := self._ws) is not None:
                await ws.close()
