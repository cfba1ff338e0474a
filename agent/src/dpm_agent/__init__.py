"""dpm_agent."""
