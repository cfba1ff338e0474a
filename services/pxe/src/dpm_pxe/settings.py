"""Settings of the pxe service (DPM_* shared, DPM_PXE_* its own)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports
from dpm_schemas.events.boot import DhcpMode


class PxeSettings(ServiceSettings):
    pxe_port: int = ports.PXE_HTTP
    pxe_root: Path = Field(
        default=Path("/srv/dpm/boot"), description="Boot files (iPXE binaries, deploy kernel) served over TFTP and HTTP"
    )
    pxe_server_ip: IPv4Address | None = Field(
        default=None,
        description="Our address on the boot network (DHCP option 54, TFTP server); else the boot settings', "
        "else DPM_PXE_DHCP_INTERFACE's address",
    )
    pxe_http_url: str | None = Field(
        default=None,
        description="Base URL machines reach this service at; default: DHCP answers name http://<server ip>:"
        "<DPM_PXE_PORT>, and scripts the address the machine fetched them from",
    )
    pxe_api_url: str | None = Field(
        default=None,
        description="API URL given to the deploy environment; default: the host the machine reached pxe at, with "
        "DPM_PXE_API_PORT",
    )
    pxe_api_port: int = Field(default=ports.API_HTTP, description="The api's port, for the default DPM_PXE_API_URL")
    pxe_deploy_token_ttl: float = Field(default=1800, gt=0, description="Seconds a deploy environment's token lives")
    pxe_tftp_enabled: bool = True
    pxe_tftp_host: str = Field(default="0.0.0.0", description="Address TFTP listens on (the boot network)")
    pxe_tftp_port: int = Field(default=ports.TFTP, description="UDP port of TFTP (69; binding it needs root)")
    pxe_tftp_max_blksize: int = Field(default=1468, ge=512, le=65464)
    pxe_tftp_max_window: int = Field(default=64, ge=1, le=65535)
    pxe_dhcp_enabled: bool = Field(default=True, description="Listen for DHCP/PXE at all (the mode decides answers)")
    pxe_dhcp_mode: DhcpMode = Field(
        default=DhcpMode.OFF,
        description="Mode until an operator saves boot settings (`dpm boot settings`); off answers nobody, so an "
        "unconfigured dpm never disturbs a LAN",
    )
    pxe_dhcp_host: str = "0.0.0.0"
    pxe_dhcp_port: int = Field(default=ports.DHCP, description="UDP port of DHCP (67; binding it needs root)")
    pxe_dhcp_pxe_port: int = Field(default=ports.PROXY_DHCP, description="UDP port of PXE boot-server requests (4011)")
    pxe_dhcp_interface: str | None = Field(default=None, description="Answer on this interface only (SO_BINDTODEVICE)")
