"""Read-only TFTP: pxe's server, its root jail and its limits on unproven peers; the packet codec and
option negotiation (RFC 1350, 2347/2348/2349/7440) are dpm_netproto.tftp."""
