"""The agent's connection: enrol once, then one outbound WebSocket, kept up with backoff.

A session says hello, then heartbeats at the interval the gateway asks for, reporting its addresses
when they change and its inventory when it changes. Any failure ends the session; the next one
starts after an exponential backoff with jitter (reset by a successful session).
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

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dpm_agent import __version__, facts
from dpm_agent.commands import run_file_command
from dpm_agent.config import AgentConfig
from dpm_agent.power import MachinePower, SimulatedPower, SystemdPower
from dpm_schemas import agent_protocol
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


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        gather: Callable[[AgentConfig], Facts] = facts.gather,
        take_inventory: Callable[[], Inventory] = facts.inventory,
        current_addresses: Callable[[], tuple[str, ...]] = facts.addresses,
    ) -> None:
        self.config = config
        self._gather = gather
        self._inventory = take_inventory
        self._addresses = current_addresses
        self.machine_id: str | None = None
        self.sessions = 0
        self.power: MachinePower | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if self.power is None:
            driver = self.config.power_driver
            self.power = (
                SimulatedPower(self.config.state_dir, stop, lab=driver == "lab")
                if driver in ("simulated", "lab")
                else SystemdPower()
            )
        failures = 0
        while not stop.is_set():
            try:
                await self.session(stop)
                failures = 0
            except Refusal as exc:
                log.error("refused by the gateway: %s", exc)
                failures = max(failures, 5)
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError, agent_protocol.FrameError) as exc:
                log.warning("connection to %s lost: %r", self.config.server, exc)
            failures += 1
            delay = min(self.config.max_backoff, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
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
            reply = agent_protocol.decode(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
            if isinstance(reply, Refused):
                raise Refusal(f"{reply.code} {reply.message}")
            if not isinstance(reply, Welcome):
                raise agent_protocol.FrameError(f"expected welcome, got {type(reply).__name__}")
            self.machine_id, self.sessions = str(reply.machine_id), self.sessions + 1
            log.info("online as machine %s (heartbeat %.1f s)", reply.machine_id, reply.heartbeat_interval)
            receiver = asyncio.create_task(self._receive(ws))
            try:
                await self._talk(ws, stop, reply.heartbeat_interval, found.ips)
            finally:
                receiver.cancel()

    async def _talk(self, ws, stop: asyncio.Event, interval: float, ips: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
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
        await ws.close()

    async def _receive(self, ws) -> None:  # type: ignore[no-untyped-def]
        """Frames from the gateway: commands (each carried out in its own task) or a refusal."""
        running: set[asyncio.Task[None]] = set()
        async for raw in ws:
            frame = agent_protocol.decode(raw)
            if isinstance(frame, Refused):
                log.error("gateway: %s %s", frame.code, frame.message)
            elif isinstance(frame, Command):
                task = asyncio.create_task(self._execute(ws, frame))
                running.add(task)
                task.add_done_callback(running.discard)

    async def _execute(self, ws, cmd: Command) -> None:  # type: ignore[no-untyped-def]
        log.info("command %s %s %s", cmd.id, cmd.action.value, cmd.path or "")
        if cmd.action in (Action.SHUTDOWN, Action.REBOOT):
            await ws.send(agent_protocol.encode(CommandResult(id=cmd.id, ok=True)))  # answer, then act
            assert self.power is not None
            await self.power.act(cmd.action)
            if cmd.action is Action.REBOOT and isinstance(self.power, SimulatedPower):
                await ws.close()  # the simulated machine restarts: the agent comes back on its own
            return
        result = await asyncio.to_thread(run_file_command, cmd, self.config.allowed_paths)
        await ws.send(agent_protocol.encode(result))
