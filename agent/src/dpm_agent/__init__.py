"""dpm-agent: runs on managed machines (and, later, as the deploy-OS client). One outbound, authenticated
WebSocket to agent-gateway; depends on dpm-schemas for its wire contract."""

__version__ = "0.1.0"
