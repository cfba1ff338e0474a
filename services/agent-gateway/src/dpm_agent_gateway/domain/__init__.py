"""The gateway's pure rules: which machine an enrolment binds and whether it may (``enrolment``),
which held sessions must close and what they are told (``sessions``), which presence changes reach
the log (``presence``), and that only a token's hash is ever kept (``tokens``). No PostgreSQL, NATS
or WebSocket here, so every rule is unit-tested alone; the I/O is in ``adapters``."""
