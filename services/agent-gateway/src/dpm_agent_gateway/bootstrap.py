"""Composition root of the agent-gateway service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "agent-gateway"
SCHEMA = "agent_gateway"


def bootstrap(settings: AgentGatewaySettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        return Wiring(ddl=directory_ddl(SCHEMA), consumers=[directory_consumer(NAME, SCHEMA)])

    app = FastAPI(title="dpm agent-gateway", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.agent_gateway_port, app=app, wire=wire)
