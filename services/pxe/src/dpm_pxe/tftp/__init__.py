"""Read-only TFTP (RFC 1350 with options RFC 2347/2348/2349/7440): pure protocol code here."""
