"""Composition root of the agent-gateway service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_agent_gateway import handlers
from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.adapters.commands import CommandRelay
from dpm_agent_gateway.adapters.sessions import Sessions
from dpm_agent_gateway.presence import Presence
from dpm_agent_gateway.projections import Tokens
from dpm_agent_gateway.routes import router
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_runtime.directory import MachineDirectory
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "agent-gateway"


def bootstrap(settings: AgentGatewaySettings) -> Service:
    app = FastAPI(title="dpm agent-gateway", version="0.1.0")
    app.state.runtime = None
    app.state.gateway = None
    app.state.presence = None
    app.state.sessions = None
    app.include_router(router)

    def wire(rt: Runtime) -> Wiring:
        timeout = settings.agent_gateway_heartbeat_timeout
        sessions = Sessions(pool=rt.pool, nc=rt.nc, period=min(1.0, timeout / 4))
        presence = Presence(pool=rt.pool, eventlog=rt.eventlog, timeout=timeout, sessions=sessions)
        app.state.presence, app.state.sessions = presence, sessions
        app.state.gateway = gateway(settings, rt, sessions, presence)

        async def sweep(runtime: Runtime) -> None:
            await presence.run(runtime.stop)

        async def check_sessions(runtime: Runtime) -> None:
            await sessions.run(runtime.stop)

        return Wiring(
            ddl=store.DDL,
            projections=[MachineDirectory(store.SCHEMA), Tokens()],
            consumers=handlers.router.bind(sessions=sessions),
            tasks=[sweep, check_sessions],
        )

    return Service(name=NAME, settings=settings, port=settings.agent_gateway_port, app=app, wire=wire)


def gateway(settings: AgentGatewaySettings, rt: Runtime, sessions: Sessions, presence: Presence) -> handlers.Gateway:
    """The dependencies of the handlers the routes call."""
    secret = settings.agent_gateway_enrolment_token
    return handlers.Gateway(
        pool=rt.pool,
        eventlog=rt.eventlog,
        sessions=sessions,
        presence=presence,
        commands=CommandRelay(rt.nc),
        enrolment_secret=secret.get_secret_value() if secret else None,
        heartbeat_interval=settings.agent_gateway_heartbeat_interval,
        heartbeat_timeout=settings.agent_gateway_heartbeat_timeout,
    )
