"""Settings of the agent-gateway service (DPM_* shared, DPM_AGENT_GATEWAY_* its own)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class AgentGatewaySettings(ServiceSettings):
    agent_gateway_port: int = ports.AGENT_GATEWAY
    agent_gateway_enrolment_token: SecretStr | None = Field(
        default=None, description="Shared secret agents present once to obtain their own token; unset: no enrolment"
    )
    agent_gateway_heartbeat_interval: float = Field(default=5.0, gt=0, description="Seconds between heartbeats")
    agent_gateway_heartbeat_timeout: float = Field(
        default=15.0, gt=0, description="Silence after which a machine is offline (default 3 heartbeats)"
    )

    @model_validator(mode="after")
    def _timeout_covers_heartbeats(self) -> AgentGatewaySettings:
        if self.agent_gateway_heartbeat_timeout <= self.agent_gateway_heartbeat_interval:
            raise ValueError("DPM_AGENT_GATEWAY_HEARTBEAT_TIMEOUT must exceed DPM_AGENT_GATEWAY_HEARTBEAT_INTERVAL")
        return self
