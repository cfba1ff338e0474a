"""Settings of the pxe service (DPM_* shared, DPM_PXE_* its own)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

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
    pxe_deploy_token_ttl: float = Field(
        default=1800,
        gt=0,
        le=7 * 86400,
        description="Idle seconds of a deploy environment's token: every call it makes to the api renews it; it "
        "dies with its execution's step whatever its expiry. Keep it at least DPM_SCHEDULER_NO_RESPONSE_TIMEOUT "
        "(1800 s by default), so it never expires before the scheduler would fail the execution anyway",
    )
    pxe_boot_window: float = Field(
        default=600,
        gt=0,
        le=86400,
        description="Seconds an address pxe saw a MAC boot from (its DHCP packets, its TFTP read) may receive that "
        "MAC's deploy environment and token; a full-mode lease counts for as long as it lasts",
    )
    pxe_deploy_token_key: SecretStr | None = Field(
        default=None,
        description="Key the deploy tokens are derived from, so a machine that fetches its script again (a "
        "firmware retry) gets the same token; the same on every pxe replica. Default: random per process",
    )
    pxe_service_token: SecretStr | None = Field(
        default=None,
        description="Credential the api presents for explain, recent boots and leases (DPM_API_PXE_TOKEN); "
        "unset: nobody gets them from pxe directly",
    )
    pxe_discovery_rate: float = Field(
        default=0.5, gt=0, description="Unknown MACs recorded per second and per client address (sustained)"
    )
    pxe_discovery_burst: int = Field(default=20, ge=1, description="Unknown MACs one client address may show at once")
    pxe_discovery_global_rate: float = Field(default=5.0, gt=0, description="Unknown MACs recorded per second in all")
    pxe_discovery_global_burst: int = Field(default=200, ge=1, description="Unknown MACs recorded at once in all")
    pxe_tftp_enabled: bool = True
    pxe_tftp_host: str | None = Field(
        default=None, description="Address TFTP listens on (the boot network); default: DPM_HTTP_HOST"
    )
    pxe_tftp_unacked_per_source: int = Field(
        default=4, ge=1, le=512, description="TFTP transfers one address may hold before its first ACK"
    )
    pxe_tftp_port: int = Field(default=ports.TFTP, description="UDP port of TFTP (69; binding it needs root)")
    pxe_tftp_max_blksize: int = Field(default=1468, ge=512, le=65464)
    pxe_tftp_max_window: int = Field(default=64, ge=1, le=65535)
    pxe_dhcp_enabled: bool = Field(default=True, description="Listen for DHCP/PXE at all (the mode decides answers)")
    pxe_dhcp_mode: DhcpMode = Field(
        default=DhcpMode.OFF,
        description="Mode until an operator saves boot settings (`dpm boot settings`); off answers nobody, so an "
        "unconfigured dpm never disturbs a LAN",
    )
    pxe_dhcp_host: str | None = Field(
        default=None,
        description="Address DHCP listens on; default: DPM_HTTP_HOST when that is a loopback address, else "
        "0.0.0.0 (DHCP requests are broadcasts; DPM_PXE_DHCP_INTERFACE narrows it to one interface)",
    )
    pxe_dhcp_port: int = Field(default=ports.DHCP, description="UDP port of DHCP (67; binding it needs root)")
    pxe_dhcp_pxe_port: int = Field(default=ports.PROXY_DHCP, description="UDP port of PXE boot-server requests (4011)")
    pxe_dhcp_interface: str | None = Field(default=None, description="Answer on this interface only (SO_BINDTODEVICE)")
    pxe_ipv6_router_advert: bool = Field(
        default=False,
        description="Answer IPv6 router solicitations on DPM_PXE_DHCP_INTERFACE with an advertisement that offers "
        "nothing (router lifetime 0, no prefix, no DHCPv6), so iPXE stops waiting ~13 s for IPv6 on a segment with "
        "no IPv6 router. Leave off where a real router asks hosts for DHCPv6 (docs/network-boot.md)",
    )

    @model_validator(mode="after")
    def _advert_needs_interface(self) -> PxeSettings:
        if self.pxe_ipv6_router_advert and not self.pxe_dhcp_interface:
            raise ValueError("DPM_PXE_IPV6_ROUTER_ADVERT needs DPM_PXE_DHCP_INTERFACE: the interface to answer on")
        return self

    @property
    def tftp_host(self) -> str:
        return self.pxe_tftp_host or self.http_host

    @property
    def dhcp_host(self) -> str:
        if self.pxe_dhcp_host:
            return self.pxe_dhcp_host
        return self.http_host if _loopback(self.http_host) else "0.0.0.0"


def _loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
