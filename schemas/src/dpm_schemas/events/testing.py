"""An event for test suites and benchmarks: it exercises the log without meaning anything to services."""

from __future__ import annotations

from dpm_schemas.base import Event
from dpm_schemas.text import LongText


class Probe(Event):
    wire_name = "Probe"

    writer: int
    seq: int
    note: LongText = ""
