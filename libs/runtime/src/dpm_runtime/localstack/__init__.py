"""The embedded stack: a private PostgreSQL cluster and nats-server under one directory, and every
dpm service as a process (``dpm up``). The test fixtures use the same process managers."""
