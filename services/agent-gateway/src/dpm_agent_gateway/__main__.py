"""`python -m dpm_agent_gateway`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_agent_gateway.bootstrap import bootstrap
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_runtime.service import run


def main() -> None:
    run(bootstrap(AgentGatewaySettings()))


if __name__ == "__main__":
    main()
