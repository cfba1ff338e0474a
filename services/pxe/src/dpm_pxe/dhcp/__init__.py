"""DHCP / proxyDHCP for PXE clients (RFC 2131, RFC 4578): pure packet code here, sockets elsewhere."""
