"""The deploy logs bundle on the client side: what /init's upload sends (ADR 0015) -- tails that fit
the api's bound, the token hidden, a missing file said so, and a failed upload never raised."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from dpm_agent.deploy import __main__ as cli
from dpm_agent.deploy import logs
from dpm_agent.deploy.logs import MAX_PART, build_bundle, collect, kernel_messages, redact, tail, upload
from dpm_agent.deploy.run import BootParams

API_LIMIT = 16 << 20  # the api's bound (dpm_api.deploy_logs.LIMIT): the agent does not import the api


def members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def test_a_short_log_is_kept_whole_and_a_long_one_by_its_tail_from_a_line_start() -> None:
    assert tail(b"one\ntwo\n", 100) == b"one\ntwo\n"
    data = b"".join(b"line %06d\n" % i for i in range(1000))
    kept = tail(data, 500)
    assert len(kept) <= 500 and kept.endswith(b"line 000999\n")
    head, first = kept.split(b"\n")[:2]
    assert head.startswith(b"[dpm: ") and b"earlier bytes not kept" in head
    assert first.startswith(b"line ")  # a whole line, not half of one
    assert int(head.split()[1]) + len(kept) - len(head) - 1 == len(data)  # says exactly how much went


def test_the_bundle_has_the_three_parts_fits_the_api_and_hides_the_token() -> None:
    noisy = (b"x" * 1023 + b"\n") * (6 << 10)  # 6 MiB of each: more than a part keeps
    parts = {"console.log": noisy + b"@@T 1.0 end\n", "dmesg.log": b"Kernel command line: dpm.token=s3cret q\n" + noisy,
             "client.log": noisy}  # fmt: skip
    bundle = build_bundle(parts)
    got = members(bundle)
    assert list(got) == ["console.log", "dmesg.log", "client.log"]
    assert all(len(v) <= MAX_PART for v in got.values())
    assert 3 * MAX_PART < API_LIMIT and len(bundle) < API_LIMIT
    assert got["console.log"].endswith(b"@@T 1.0 end\n")
    assert b"s3cret" not in bundle and b"s3cret" not in b"".join(got.values())
    assert redact(b"a dpm.token=abc b") == b"a dpm.token=<hidden> b"


def test_collect_reads_tails_and_says_what_is_missing(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_bytes(b"a" * (MAX_PART + 100_000) + b"\nlast\n")
    parts = collect(console, tmp_path / "absent.log", dmesg=lambda: b"kernel\n")
    assert parts["console.log"].endswith(b"last\n") and len(parts["console.log"]) < MAX_PART + 10_000
    assert parts["dmesg.log"] == b"kernel\n"
    assert b"not readable" in parts["client.log"]
    assert "client.log" not in collect(console, None, dmesg=lambda: b"")


def test_kernel_messages_never_fail() -> None:
    def broken(*_a: object, **_k: object) -> subprocess.CompletedProcess[bytes]:
        raise FileNotFoundError("dmesg")

    assert b"no kernel messages" in kernel_messages(broken)


def test_an_unreachable_api_is_given_up_within_its_bound_and_never_raised() -> None:
    params = BootParams("00000000-0000-0000-0000-000000000001", "http://127.0.0.1:9", "token")
    why = upload(params, b"bundle", retry_for=0.5, timeout=0.5)
    assert "Connection" in why, why


def test_the_logs_command_exits_1_when_not_uploaded_and_prints_why(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(logs, "RETRY_FOR", 0.5)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("dpm.execution=00000000-0000-0000-0000-000000000001 dpm.server=http://127.0.0.1:9 dpm.token=t")
    console = tmp_path / "console.log"
    console.write_text("@@T 1.0 init\n")
    rc = cli.main(["logs", "--cmdline", str(cmdline), "--file", str(console)])
    assert rc == 1 and "deploy logs not uploaded" in capsys.readouterr().out
