"""The test kit: fixtures for a real PostgreSQL and nats-server on free ports, and polling helpers."""

from dpm_runtime.testing.clock import ManualClock
from dpm_runtime.testing.polling import eventually

__all__ = ["ManualClock", "eventually"]
