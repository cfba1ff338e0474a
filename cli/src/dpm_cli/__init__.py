"""dpm_cli."""
