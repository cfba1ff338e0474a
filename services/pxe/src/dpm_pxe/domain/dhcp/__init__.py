"""DHCP / proxyDHCP for PXE clients (RFC 2131, RFC 4578), pure: what to answer (``proxy``), full
mode's address decisions (``full``) and its pools (``pools``). The listener and the leases table are
``adapters.dhcp``; the packet codec itself is dpm_netproto.dhcp."""
