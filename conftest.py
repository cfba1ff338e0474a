"""Root conftest: every test tier gets the runtime's test kit (real PostgreSQL / nats-server fixtures)."""

pytest_plugins = ["dpm_runtime.testing.fixtures"]
