"""What a sync offers and how it is recorded (pure), and the proxy credentials from the updater's file."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dpm_schemas import DpmError
from dpm_schemas.events.sources import OFFERED_MAX, OfferedPackage, SyncCounts
from dpm_updater.domain.sources import included, is_due, offered, previous_index, synced_events
from dpm_updater.sources.credentials import credentials_for, proxy_with
from dpm_updater.sources.domain.changes import diff
from dpm_updater.sources.domain.packages import Index, PackageEntry

A, B = "a" * 64, "b" * 64


def entry(name: str, version: str, sha: str = A) -> PackageEntry:
    return PackageEntry(name, version, "all", f"pool/{name}_{version}.deb", 10, sha)


def test_include_globs_match_whole_names() -> None:
    assert included(["openssl", "libssl*"], "libssl3") and included(["openssl"], "openssl")
    assert not included(["openssl"], "openssl-dev") and not included(["libssl*"], "xlibssl")


def test_offered_is_new_and_republished_entries_whose_file_arrived() -> None:
    before = previous_index([("tool", "2.1", "all", A, 10, "pool/tool_2.1.deb")])
    after = Index.of([entry("tool", "2.1", B), entry("hello", "1.0"), entry("big", "1.0")])
    got = offered(diff(before, after), failed={"pool/big_1.0.deb"})
    assert [(o.name, o.sha256) for o in got] == [("hello", A), ("tool", B)]  # big failed: offered next time
    assert offered(diff(after, after), failed=set()) == ()


def test_a_large_offer_is_several_bounded_events_of_one_sync() -> None:
    many = [OfferedPackage(name=f"p{i}", version="1", architecture="all", sha256=A, size=1, filename="f")
            for i in range(OFFERED_MAX * 2 + 1)]  # fmt: skip
    at = datetime(2026, 12, 3, tzinfo=UTC)
    events = synced_events(
        uuid.uuid4(), at, ok=True, code=None, message="m", counts=SyncCounts(offered=2001), entries=many
    )
    assert [len(e.offered) for e in events] == [OFFERED_MAX, OFFERED_MAX, 1]
    assert [e.final for e in events] == [False, False, True] and len({e.sync_id for e in events}) == 1
    (failed,) = synced_events(uuid.uuid4(), at, ok=False, code="DPM-E262", message="bad", counts=SyncCounts())
    assert failed.final and not failed.ok and failed.offered == ()


def test_a_source_is_due_when_never_synced_or_its_interval_passed() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    assert is_due(None, 60, now) and is_due(now - timedelta(minutes=60), 60, now)
    assert not is_due(now - timedelta(minutes=59), 60, now)


def test_credentials_come_from_a_private_file(tmp_path: Path) -> None:
    file = tmp_path / "creds.json"
    file.write_text(json.dumps({"sec": {"username": "dpm", "password": "p@ss:w/rd"}}))
    file.chmod(0o600)
    assert credentials_for(file, "sec") == ("dpm", "p@ss:w/rd") and credentials_for(file, "other") is None
    assert credentials_for(None, "sec") is None
    assert proxy_with("http://127.0.0.1:3128", ("dpm", "p@ss:w/rd")) == "http://dpm:p%40ss%3Aw%2Frd@127.0.0.1:3128"
    file.chmod(0o644)
    with pytest.raises(DpmError) as err:
        credentials_for(file, "sec")
    assert err.value.code == "DPM-E295" and "p@ss" not in err.value.message
    file.chmod(0o600)
    file.write_text("{not json")
    with pytest.raises(DpmError) as err:
        credentials_for(file, "sec")
    assert err.value.code == "DPM-E295"
