"""The agent's session supervision, against a tiny gateway of our own on loopback (no PostgreSQL,
no NATS): a receiver that fails ends the whole session and the agent reconnects, instead of going on
heartbeating deaf; commands die with their session; the power driver is the one injected."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_agent.power import MachinePower, SimulatedPower, SystemdPower, driver_for, last_power_action
from dpm_runtime.testing import eventually
from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import Action, Command, CommandResult, Facts, Frame, Heartbeat, Hello, Welcome

FACTS = Facts(macs=("52:54:0a:00:00:01",), hostname="unit", ips=("10.9.9.1",))
Script = Callable[["Session"], Awaitable[None]]
F = TypeVar("F", bound=Frame)


@dataclass
class Session:
    """One agent connection as the fake gateway saw it."""

    ws: ServerConnection
    frames: list[Frame] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, kind: type[F]) -> F:
        while True:
            frame = agent_protocol.decode(await self.ws.recv(decode=False))
            self.frames.append(frame)
            if isinstance(frame, kind):
                return frame

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.next(Frame)


@dataclass
class Gateway:
    port: int
    sessions: list[Session]


@contextlib.asynccontextmanager
async def gateway(*scripts: Script) -> AsyncIterator[Gateway]:
    """Welcomes every agent, then plays the next script on its session (the last one repeats)."""
    sessions: list[Session] = []

    async def handler(ws: ServerConnection) -> None:
        session = Session(ws)
        sessions.append(session)
        try:
            await session.next(Hello)
            welcome = Welcome(machine_id=uuid.uuid4(), heartbeat_interval=0.05, server_version="test")
            await ws.send(agent_protocol.encode(welcome))
            await scripts[min(len(sessions), len(scripts)) - 1](session)
            await session.drain()
        finally:
            session.closed.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        yield Gateway(server.sockets[0].getsockname()[1], sessions)


def agent(port: int, tmp: Path, power: MachinePower | None = None) -> Agent:
    (tmp / "state").mkdir(exist_ok=True)
    (tmp / "state" / "token").write_text("machine-token")  # enrolled already
    config = AgentConfig(server=f"http://127.0.0.1:{port}", state_dir=tmp / "state", inventory=False, max_backoff=0.2)
    return Agent(config, power=power, gather=lambda _c: FACTS, current_addresses=lambda: FACTS.ips)


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until_sessions(gw: Gateway, n: int) -> None:
    await eventually(lambda: asyncio.sleep(0, len(gw.sessions)), until=lambda k: k >= n, timeout=10, what=f"{n}")


async def bad_frame(session: Session) -> None:
    await session.next(Heartbeat)
    await session.ws.send(b"\xc1 not msgpack")  # 0xc1 is never used in msgpack: FrameError


async def idle(session: Session) -> None:
    return None


async def test_a_receiver_that_fails_ends_the_session_and_the_agent_reconnects(tmp_path: Path) -> None:
    async with gateway(bad_frame, idle) as gw, running(agent(gw.port, tmp_path)):
        await until_sessions(gw, 2)
        first = gw.sessions[0]
        await asyncio.wait_for(first.closed.wait(), 5)  # the agent hung up: no deaf heartbeats go on
        assert first.ws.protocol.close_rcvd is not None  # the close came from the agent
        beats = lambda: asyncio.sleep(0, [f for f in gw.sessions[1].frames if isinstance(f, Heartbeat)])  # noqa: E731
        await eventually(beats, timeout=5, what="heartbeats of the new session")


class Hanging:
    """A power driver whose action never finishes: it shows whether the session cancels it."""

    def __init__(self) -> None:
        self.started, self.cancelled = asyncio.Event(), asyncio.Event()

    async def act(self, action: Action) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_command_tasks_are_cancelled_when_the_session_ends(tmp_path: Path) -> None:
    power = Hanging()

    async def reboot_then_hang_up(session: Session) -> None:
        await session.ws.send(agent_protocol.encode(Command(id=uuid.uuid4(), action=Action.REBOOT)))
        assert (await session.next(CommandResult)).ok
        await asyncio.wait_for(power.started.wait(), 5)
        await session.ws.close()  # the gateway goes away while the command still runs

    async with gateway(reboot_then_hang_up, idle) as gw, running(agent(gw.port, tmp_path, power=power)):
        await asyncio.wait_for(power.cancelled.wait(), 5)
        await until_sessions(gw, 2)


class Broken:
    """A power driver with a bug."""

    async def act(self, action: Action) -> None:
        raise RuntimeError("bug in the driver")


async def test_a_command_that_crashes_ends_its_session_not_the_agent(tmp_path: Path) -> None:
    async def reboot(session: Session) -> None:
        await session.ws.send(agent_protocol.encode(Command(id=uuid.uuid4(), action=Action.REBOOT)))

    async with gateway(reboot, idle) as gw, running(agent(gw.port, tmp_path, power=Broken())):
        await until_sessions(gw, 2)
        await asyncio.wait_for(gw.sessions[0].closed.wait(), 5)


async def test_a_simulated_reboot_ends_the_session_and_a_shutdown_stops_the_agent(tmp_path: Path) -> None:
    async def command(action: Action) -> Script:
        async def script(session: Session) -> None:
            await session.ws.send(agent_protocol.encode(Command(id=uuid.uuid4(), action=action)))
            assert (await session.next(CommandResult)).ok

        return script

    stop = asyncio.Event()
    async with gateway(await command(Action.REBOOT), await command(Action.SHUTDOWN)) as gw:
        sim = agent(gw.port, tmp_path, power=SimulatedPower(tmp_path / "state", stop))
        await asyncio.wait_for(sim.run(stop), 10)  # returns: the shutdown switched the machine off
        assert len(gw.sessions) == 2 and sim.sessions == 2  # the reboot ended the first session
        assert last_power_action(tmp_path / "state") == "shutdown"
        await asyncio.wait_for(gw.sessions[0].closed.wait(), 5)


async def test_an_agent_without_a_power_driver_refuses_power_commands(tmp_path: Path) -> None:
    results: list[CommandResult] = []

    async def reboot(session: Session) -> None:
        await session.ws.send(agent_protocol.encode(Command(id=uuid.uuid4(), action=Action.REBOOT)))
        results.append(await session.next(CommandResult))

    async with gateway(reboot, idle) as gw, running(agent(gw.port, tmp_path)):
        await eventually(lambda: asyncio.sleep(0, results), until=bool, timeout=10, what="a result")
    assert not results[0].ok and results[0].code == E.AGENT_REFUSED.code
    assert len(gw.sessions) == 1  # a refusal is an answer, not a failure of the session


def test_the_configuration_names_the_driver(tmp_path: Path) -> None:
    stop = asyncio.Event()
    config = AgentConfig(server="http://127.0.0.1:1", state_dir=tmp_path)
    assert isinstance(driver_for(config, stop), SystemdPower)
    lab = driver_for(config.model_copy(update={"power_driver": "lab"}), stop)
    assert isinstance(lab, SimulatedPower) and lab.lab and lab.stop is stop
    simulated = driver_for(config.model_copy(update={"power_driver": "simulated"}), stop)
    assert isinstance(simulated, SimulatedPower) and not simulated.lab
