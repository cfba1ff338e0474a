"""dpm updater service: packages, delivery, auto-update and auto-download."""
