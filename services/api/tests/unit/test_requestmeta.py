"""The correlation id of a request (dpm_api.requestmeta): the client's when it is a UUID, else new."""

from __future__ import annotations

import uuid

import pytest

from dpm_api.requestmeta import command_metadata, correlation_from

CHOSEN = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")


@pytest.mark.parametrize("header", [str(CHOSEN), f" {CHOSEN} ", CHOSEN.hex, f"urn:uuid:{CHOSEN}"])
def test_a_uuid_header_is_the_correlation_id(header: str) -> None:
    assert correlation_from(header) == CHOSEN


@pytest.mark.parametrize("header", [None, "", "nope", "x" * 500, str(CHOSEN)[:-1] + "Z", "\x00" * 36])
def test_anything_else_gets_a_new_one(header: str | None) -> None:
    first, second = correlation_from(header), correlation_from(header)
    assert first != second and CHOSEN not in (first, second)


def test_outside_a_request_each_command_starts_a_conversation() -> None:
    a, b = command_metadata("otto"), command_metadata("otto")
    assert a.actor == "otto" and a.correlation_id != b.correlation_id and a.causation_id is None
