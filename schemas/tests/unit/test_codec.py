"""The codec, registry and upcasters: pure, milliseconds."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dpm_schemas import REGISTRY, Event, Metadata, RecordedEvent
from dpm_schemas.base import UnknownMessageType
from dpm_schemas.codec import DecodeError, decode_envelope, decode_payload, encode_envelope, encode_payload
from dpm_schemas.events import MachineBooted, MachineRegistered, Probe
from dpm_schemas.upcasting import MissingUpcaster, upcast, upcaster


def recorded(event: Event, position: int = 1) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event.wire_name,
        version=event.wire_version,
        stream_id="machine-x",
        stream_version=1,
        position=position,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        metadata=Metadata.new(actor="alice", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
        event=event,
    )


def test_payload_round_trip() -> None:
    event = MachineRegistered(machine_id=uuid.uuid4(), name="m", macs=("aa:bb:cc:dd:ee:ff",), ip="10.0.0.1")
    assert decode_payload("MachineRegistered", 1, encode_payload(event)) == event


@pytest.mark.parametrize("mac", ["AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee", "aabbccddeeff", "AA:BB:CC:DD:EE:FF"])
def test_events_carry_only_canonical_macs(mac: str) -> None:
    """Edges normalise (ids.normalize_mac); the contract itself accepts one spelling only."""
    with pytest.raises(ValidationError):
        MachineRegistered(machine_id=uuid.uuid4(), name="m", macs=(mac,))


@pytest.mark.parametrize("ip", ["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4 "])
def test_boot_client_ip_must_be_a_dotted_quad(ip: str) -> None:
    with pytest.raises(ValidationError):
        MachineBooted(mac="52:54:00:00:00:01", arch="uefi-x64", client_ip=ip, stage="rom")


def test_envelope_round_trip_keeps_every_field() -> None:
    rec = recorded(MachineBooted(mac="52:54:00:00:00:01", arch="uefi-x64", client_ip="10.1.2.3", stage="rom"))
    assert decode_envelope(encode_envelope(rec)) == rec


def test_events_are_frozen_and_strict() -> None:
    event = Probe(writer=1, seq=2)
    with pytest.raises(ValidationError):
        event.seq = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Probe(writer=1, seq=2, surprise=True)  # type: ignore[call-arg]


def test_registry_knows_every_message_by_its_wire_name() -> None:
    assert REGISTRY.get("MachineBooted") is MachineBooted
    assert {c.wire_name for c in REGISTRY.events()} >= {
        "MachineRegistered",
        "MachineBooted",
        "ScenarioAssigned",
        "ChunkSent",
        "ImageCaptured",
    }
    assert {c.wire_name for c in REGISTRY.commands()} == {"PowerOn", "RebootMachine"}
    with pytest.raises(UnknownMessageType):
        REGISTRY.get("NoSuchEvent")


def test_a_second_class_cannot_take_an_existing_wire_name() -> None:
    with pytest.raises(ValueError, match="wire name"):

        class Impostor(Event):
            wire_name: ClassVar[str] = "MachineBooted"


def test_upcasters_lift_old_payloads_step_by_step() -> None:
    @upcaster("UpcastDemo", 1)
    def v1_to_v2(data: dict) -> dict:
        return {**data, "b": data["a"] * 2}

    @upcaster("UpcastDemo", 2)
    def v2_to_v3(data: dict) -> dict:
        return {"c": data["a"] + data["b"]}

    assert upcast("UpcastDemo", 1, 3, {"a": 1}) == {"c": 3}
    assert upcast("UpcastDemo", 3, 3, {"c": 9}) == {"c": 9}
    with pytest.raises(MissingUpcaster):
        upcast("UpcastDemo", 0, 3, {})
    with pytest.raises(ValueError, match="already registered"):
        upcaster("UpcastDemo", 1)(v1_to_v2)


def test_a_payload_newer_than_the_code_is_refused() -> None:
    with pytest.raises(DecodeError, match="newer"):
        decode_payload("Probe", 2, encode_payload(Probe(writer=0, seq=0)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_envelope(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "type",
                "version",
                "stream_id",
                "stream_version",
                "position",
                "occurred_at",
                "metadata",
                "data",
            ]
        ),
        st.one_of(
            st.none(),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.text(max_size=20),
            st.binary(max_size=20),
        ),
    )
)
def test_decoding_malformed_envelopes_is_a_decode_error(body: dict) -> None:
    with pytest.raises(DecodeError):
        decode_envelope(msgpack.packb(body))


def _mutable(annotation: object, seen: frozenset[type] = frozenset()) -> bool:
    """A list, dict or set anywhere in the annotation, including inside nested models."""
    import typing

    from pydantic import BaseModel

    origin = typing.get_origin(annotation)
    if annotation in (list, dict, set, bytearray) or origin in (list, dict, set):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        return any(_mutable(f.annotation, seen | {annotation}) for f in annotation.model_fields.values())
    return any(_mutable(arg, seen) for arg in typing.get_args(annotation))


def test_message_fields_are_immutable_so_decoded_instances_can_be_shared() -> None:
    """decode_payload caches decoded messages; a list or dict field would let one reader change
    what another sees. Use tuples and frozen models."""
    offenders = [
        f"{cls.__name__}.{name}"
        for cls in REGISTRY.all()
        for name, field in cls.model_fields.items()
        if _mutable(field.annotation)
    ]
    assert offenders == []


def test_repeated_payloads_decode_to_the_same_frozen_instance() -> None:
    raw = encode_payload(Probe(writer=1, seq=1))
    assert decode_payload("Probe", 1, raw) is decode_payload("Probe", 1, memoryview(raw))


def test_a_reaction_keeps_the_conversation_and_names_its_cause() -> None:
    parent = recorded(Probe(writer=0, seq=0))
    child = Metadata(correlation_id=uuid.uuid4(), actor="scheduler").caused_by(parent)
    assert child.correlation_id == parent.metadata.correlation_id
    assert child.causation_id == parent.event_id
    assert child.actor == "scheduler" and child.traceparent == parent.metadata.traceparent
    assert Metadata.from_dict(child.to_dict()) == child
