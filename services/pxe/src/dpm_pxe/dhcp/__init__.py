"""DHCP / proxyDHCP for PXE clients (RFC 2131, RFC 4578): pxe's decisions (proxy, full, pools), its
leases and its listener; the packet codec itself is dpm_netproto.dhcp."""
