"""dpm_api."""
