"""Pure pieces of the runtime: consumer configuration, URL redaction, the port-in-use error."""

from __future__ import annotations

import socket

import pytest
from nats.js.api import AckPolicy

from dpm_runtime.connect import redact as _redact
from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.http import bind
from dpm_schemas.errors import DpmError
from dpm_schemas.events import MachineBooted, MachineRegistered


async def noop(rec, conn) -> None:
    pass


def test_a_consumer_filters_exactly_the_types_it_handles_and_acks_explicitly() -> None:
    spec = ConsumerSpec(durable="pxe-x", handlers={MachineRegistered: noop, MachineBooted: noop}, max_deliver=4)
    config = spec.config()
    assert config.filter_subjects == ["dpm.evt.*.MachineBooted", "dpm.evt.*.MachineRegistered"]
    assert config.ack_policy == AckPolicy.EXPLICIT and config.durable_name == "pxe-x"
    assert config.max_deliver == 5  # the fifth delivery is the one we terminate and keep as a dead letter


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://dpm:s3cret@db:5432/dpm", "postgresql://dpm@db:5432/dpm"),
        ("postgresql://dpm_app@127.0.0.1:26512/dpm", "postgresql://dpm_app@127.0.0.1:26512/dpm"),
        ("postgresql://u:p@ss:w@host/db", "postgresql://u@host/db"),
    ],
)
def test_passwords_never_reach_the_logs(url: str, shown: str) -> None:
    assert _redact(url) == shown


def test_a_taken_port_names_the_port_and_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DpmError) as err:
            bind("api", "127.0.0.1", port)
    assert err.value.code == "DPM-E001"
    assert str(port) in err.value.message and "DPM_API_PORT" in err.value.remedy
