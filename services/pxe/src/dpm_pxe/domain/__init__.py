"""pxe's pure rules: what a booting machine gets (``script``), what the DHCP listener answers
(``dhcp``), which addresses a boot names and who may have its deploy environment (``witness``),
the deploy token's derivation and who keeps it (``tokens``), how many unknown MACs are recorded
(``throttle``) and the boot settings in force (``bootstate``). No PostgreSQL, NATS, HTTP or
sockets here, so every rule is unit-tested alone; the I/O is in ``adapters``."""
