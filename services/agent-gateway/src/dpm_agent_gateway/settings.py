"""Settings of the agent-gateway service (DPM_* shared, DPM_AGENT_GATEWAY_PORT its own)."""

from __future__ import annotations

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class AgentGatewaySettings(ServiceSettings):
    agent_gateway_port: int = ports.AGENT_GATEWAY
