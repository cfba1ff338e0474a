"""pxe's I/O: the DHCP listener and full mode's leases (``dhcp``), the TFTP server and its root
(``tftp``), the tables pxe writes -- recent boots and their events (``recorder``), where each MAC
was seen booting (``sightings``), deploy tokens (``tokens``) -- the boot settings row memory follows
(``state``) and the read models' queries (``readmodel``). Decisions come from ``domain``."""
