"""DHCP / proxyDHCP I/O: the listener on UDP 67 and 4011 and full mode's leases in PostgreSQL; the
decisions are ``domain.dhcp``, the packet codec dpm_netproto.dhcp."""
