"""The one table of default ports. Every port is configurable; these are only the defaults.

Where the original product had a port for the same role, dpm keeps its number (seed catalog §5.3).
"""

from __future__ import annotations

from typing import Final

API_HTTP: Final = 8080  # REST API, OpenAPI, web console
IMAGER_HTTP: Final = 26501  # chunk upload/download (original: bkressvc 26501)
PXE_HTTP: Final = 26502  # iPXE scripts and boot files over HTTP
AGENT_GATEWAY: Final = 26504  # agent WebSocket endpoint (original: depssvc 26504)
UPDATER_HTTP: Final = 26506  # package downloads
SCHEDULER_HTTP: Final = 26513  # health only
POSTGRES: Final = 26512  # embedded PostgreSQL (original: the SQL Server port)
NATS: Final = 26522  # embedded nats-server client port
NATS_MONITOR: Final = 26523  # embedded nats-server HTTP monitoring
DHCP: Final = 67
PROXY_DHCP: Final = 4011
TFTP: Final = 69
WAKE_ON_LAN: Final = 5561
MULTICAST_RESTORE: Final = 26530

# Which setting changes which port: used in the "port in use" error so the operator knows what to set.
SETTINGS: Final = {
    "api": ("DPM_API_PORT", API_HTTP),
    "imager": ("DPM_IMAGER_PORT", IMAGER_HTTP),
    "pxe": ("DPM_PXE_PORT", PXE_HTTP),
    "pxe-tftp": ("DPM_PXE_TFTP_PORT", TFTP),
    "agent-gateway": ("DPM_AGENT_GATEWAY_PORT", AGENT_GATEWAY),
    "updater": ("DPM_UPDATER_PORT", UPDATER_HTTP),
    "scheduler": ("DPM_SCHEDULER_PORT", SCHEDULER_HTTP),
    "postgres": ("DPM_STACK_POSTGRES_PORT", POSTGRES),
    "nats": ("DPM_STACK_NATS_PORT", NATS),
    "nats-monitor": ("DPM_STACK_NATS_MONITOR_PORT", NATS_MONITOR),
}
