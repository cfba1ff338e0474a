"""dpm_runtime."""
