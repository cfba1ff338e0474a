"""dpm agent-gateway service: the agent endpoint: presence and inventory (the agent stream)."""
