"""dpm pxe service: DHCP/proxyDHCP, TFTP and HTTP network boot (the boot stream)."""
