"""DHCP (RFC 2131/2132, PXE options of RFC 4578) and TFTP (RFC 1350 with options RFC 2347/2348/2349/
7440) as pure codecs: packets parsed and built without I/O, so the pxe service's servers and the lab
simulator's machines speak one implementation, and neither depends on the other."""
