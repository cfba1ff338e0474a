"""Composition root of the agent-gateway service: the only place that picks implementations."""

from __future__ import annotations

import functools

from fastapi import FastAPI

from dpm_agent_gateway import handlers, store
from dpm_agent_gateway.presence import Presence
from dpm_agent_gateway.routes import router
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_schemas.events import AgentTokenRevoked, EnrolmentTokenIssued
from dpm_schemas.subjects import durable_name

NAME = "agent-gateway"


def bootstrap(settings: AgentGatewaySettings) -> Service:
    app = FastAPI(title="dpm agent-gateway", version="0.1.0")
    app.state.runtime = None
    app.state.presence = None
    app.state.gateway_settings = settings
    token = settings.agent_gateway_enrolment_token
    app.state.enrolment_token = token.get_secret_value() if token else None
    app.include_router(router)

    def wire(rt: Runtime) -> Wiring:
        presence = Presence(pool=rt.pool, eventlog=rt.eventlog, timeout=settings.agent_gateway_heartbeat_timeout)
        app.state.presence = presence
        revoked = functools.partial(handlers.token_revoked, presence=presence)

        async def sweep(runtime: Runtime) -> None:
            await presence.run(runtime.stop)

        return Wiring(
            ddl=[*directory_ddl(store.SCHEMA), *store.DDL],
            consumers=[
                directory_consumer(NAME, store.SCHEMA),
                ConsumerSpec(
                    durable=durable_name(NAME, "tokens"),
                    handlers={AgentTokenRevoked: revoked, EnrolmentTokenIssued: handlers.enrolment_token_issued},
                ),
            ],
            tasks=[sweep],
        )

    return Service(name=NAME, settings=settings, port=settings.agent_gateway_port, app=app, wire=wire)
