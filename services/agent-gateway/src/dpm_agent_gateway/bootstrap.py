"""Composition root of the agent-gateway service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_agent_gateway import handlers, store
from dpm_agent_gateway.presence import Presence
from dpm_agent_gateway.routes import router
from dpm_agent_gateway.sessions import Sessions
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "agent-gateway"


def bootstrap(settings: AgentGatewaySettings) -> Service:
    app = FastAPI(title="dpm agent-gateway", version="0.1.0")
    app.state.runtime = None
    app.state.presence = None
    app.state.sessions = None
    app.state.gateway_settings = settings
    token = settings.agent_gateway_enrolment_token
    app.state.enrolment_token = token.get_secret_value() if token else None
    app.include_router(router)

    def wire(rt: Runtime) -> Wiring:
        timeout = settings.agent_gateway_heartbeat_timeout
        sessions = Sessions(pool=rt.pool, nc=rt.nc, period=min(1.0, timeout / 4))
        presence = Presence(pool=rt.pool, eventlog=rt.eventlog, timeout=timeout, sessions=sessions)
        app.state.presence, app.state.sessions = presence, sessions

        async def sweep(runtime: Runtime) -> None:
            await presence.run(runtime.stop)

        async def check_sessions(runtime: Runtime) -> None:
            await sessions.run(runtime.stop)

        return Wiring(
            ddl=[*directory_ddl(store.SCHEMA), *store.DDL],
            consumers=[
                directory_consumer(NAME, store.SCHEMA),
                *handlers.router.bind(sessions=sessions),
            ],
            tasks=[sweep, check_sessions],
        )

    return Service(name=NAME, settings=settings, port=settings.agent_gateway_port, app=app, wire=wire)
