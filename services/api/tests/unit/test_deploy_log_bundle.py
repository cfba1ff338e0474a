"""The api's pure side of deploy logs (ADR 0015): a bundle from a machine is parsed defensively and
bounded, served text is inert, and the token's grace for the upload is exactly as documented."""

from __future__ import annotations

import gzip
import io
import tarfile
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dpm_api.deploy_auth import LOG_GRACE, TokenRow
from dpm_api.deploy_logs import LIMIT, UNPACKED_LIMIT, parse_bundle, safe_text
from dpm_schemas.errors import DpmError

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def bundle(members: dict[str, bytes], *, kind: bytes = tarfile.REGTYPE) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind
            if kind == tarfile.SYMTYPE:
                info.size, info.linkname = 0, "/etc/shadow"
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


def code_of(data: bytes) -> str:
    with pytest.raises(DpmError) as err:
        parse_bundle(data)
    return err.value.code


def test_a_bundle_parses_into_its_parts() -> None:
    parts = parse_bundle(bundle({"console.log": b"c", "dmesg.log": b"d", "client.log": b"x"}))
    assert parts == {"console": b"c", "dmesg": b"d", "client": b"x"}
    assert parse_bundle(bundle({"console.log": b"only"})) == {"console": b"only"}


@pytest.mark.parametrize(
    "data",
    [
        b"plain text",
        gzip.compress(b"not a tar at all, just gzip" * 100),
        bundle({"console.log": b"c", "../../etc/passwd": b"x"}),
        bundle({"/console.log": b"c"}),
        bundle({"dmesg.log": b"no console"}),
        bundle({"console.log": b""}, kind=tarfile.SYMTYPE),
    ],
    ids=["text", "gzip-no-tar", "traversal", "absolute", "no-console", "symlink"],
)
def test_anything_else_is_refused_as_invalid(data: bytes) -> None:
    assert code_of(data) == "DPM-E444"


def test_a_duplicate_member_is_refused() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for body in (b"first", b"second"):
            info = tarfile.TarInfo("console.log")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    assert code_of(out.getvalue()) == "DPM-E444"


def test_bounds_as_uploaded_and_once_unpacked() -> None:
    assert code_of(b"\0" * (LIMIT + 1)) == "DPM-E442"
    bomb = bundle({"console.log": b"\0" * (UNPACKED_LIMIT + 1)})  # a zip bomb: small, huge unpacked
    assert len(bomb) < LIMIT and code_of(bomb) == "DPM-E442"


def test_served_text_is_inert() -> None:
    text = safe_text(b"<b>x</b>\x1b[31mred\x1b[0m\tok\r\nbell\x07 nul\x00 del\x7f \xff\xc2\x9b end dpm.token=abc x")
    assert text.startswith("<b>x</b>^[[31mred^[[0m\tok\nbell^G nul^@ del^? \ufffd\ufffd end dpm.token=<hidden> x")
    assert not any(ord(c) < 0x20 and c not in "\t\n" for c in text)


def row(*, ended: str | None, seen: datetime | None, client_ip: str | None = "10.0.0.5") -> TokenRow:
    return TokenRow(uuid.uuid4(), "backup", "completed" if ended else "running", client_ip,
                    AT + timedelta(minutes=5), timedelta(minutes=10), seen, ended)  # fmt: skip


def test_the_log_upload_is_allowed_while_the_step_runs_and_for_the_grace_after_its_last_call() -> None:
    running = row(ended=None, seen=AT)
    assert running.log_refusal("10.0.0.5", AT, LOG_GRACE) == ""
    over = row(ended="its step reported completed", seen=AT)
    assert over.refusal("10.0.0.5", AT) != ""  # every other call is refused once the step ended
    assert over.log_refusal("10.0.0.5", AT + LOG_GRACE, LOG_GRACE) == ""
    assert over.log_refusal("::ffff:10.0.0.5", AT + LOG_GRACE, LOG_GRACE) == ""
    late = over.log_refusal("10.0.0.5", AT + LOG_GRACE + timedelta(seconds=1), LOG_GRACE)
    assert "accepted only 600 s after its last call" in late
    assert "not to 10.0.0.6" in over.log_refusal("10.0.0.6", AT, LOG_GRACE)
    assert "not to 10.0.0.6" in running.log_refusal("10.0.0.6", AT, LOG_GRACE)
    assert row(ended="x", seen=None).log_refusal("10.0.0.5", AT, LOG_GRACE) != ""
