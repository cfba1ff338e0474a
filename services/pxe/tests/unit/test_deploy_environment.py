"""A deploy decision whose kernel or initramfs is missing waits instead of failing in iPXE (issue 21):
the decision, the fact recorded for the scheduler, and the probe of the boot root."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from dpm_pxe.adapters.tftp.files import size
from dpm_pxe.domain.deployenv import Missing, missing, unavailable
from dpm_pxe.domain.script import Action, Machine, Pending, decide, withheld
from dpm_schemas import E
from dpm_schemas.events.boot import BootSettingsChanged, DhcpMode

NOW = datetime(2026, 12, 3, 1, tzinfo=UTC)
PC = Machine(uuid.uuid4(), "pc-01")
RUN = uuid.uuid4()
SETTINGS = BootSettingsChanged(mode=DhcpMode.PROXY, deploy_kernel="deploy/vmlinuz", deploy_initrd="deploy/initrd.img")


def probe(sizes: dict[str, int]):
    return lambda path: sizes.get(path)


def test_both_files_there_and_not_empty_is_nothing_missing() -> None:
    assert missing(SETTINGS, probe({"deploy/vmlinuz": 10, "deploy/initrd.img": 10})) is None


def test_the_first_absent_or_empty_file_is_named_with_why() -> None:
    gone = missing(SETTINGS, probe({"deploy/initrd.img": 10}))
    assert gone == Missing("the deploy kernel deploy/vmlinuz", "deploy/vmlinuz", "is not there")
    empty = missing(SETTINGS, probe({"deploy/vmlinuz": 10, "deploy/initrd.img": 0}))
    assert empty == Missing("the deploy initramfs deploy/initrd.img", "deploy/initrd.img", "is empty")


def test_a_deploy_decision_without_its_files_waits_and_keeps_its_execution() -> None:
    decision = decide(PC, Pending(RUN, None, position=7), NOW)
    gone = missing(SETTINGS, probe({}))
    waits = withheld(decision, gone)
    assert waits.action is Action.WAIT and waits.missing == gone
    assert waits.execution_id == RUN and waits.request == 7 and waits.machine == PC
    assert "deploy/vmlinuz is not there" in waits.reason and "make deploy-os" in waits.reason
    assert withheld(decision, None) == decision  # the files are there: it deploys
    idle = decide(PC, None, NOW)
    assert withheld(idle, gone) == idle  # no pending work: the local disk, whatever the root holds


def test_the_recorded_fact_carries_the_code_the_path_and_the_remedy() -> None:
    gone = Missing("the deploy kernel deploy/vmlinuz", "deploy/vmlinuz", "is not there")
    machine_id = uuid.uuid4()
    e = unavailable(
        gone, root="/srv/dpm/boot/", machine="pc-01", machine_id=machine_id, execution_id=RUN, mac="52:54:00:00:00:01"
    )
    assert e.code == E.DEPLOY_ENV_MISSING.code == "DPM-E430"
    assert e.path == "/srv/dpm/boot/deploy/vmlinuz" and e.execution_id == RUN and e.machine_id == machine_id
    assert "pc-01" in e.reason and "deploy/vmlinuz is not there" in e.reason and str(RUN) in e.reason
    assert "expected at /srv/dpm/boot/deploy/vmlinuz" in e.reason
    assert "make deploy-os" in E.DEPLOY_ENV_MISSING.remedy  # shown beside the code as is: no placeholders
    assert "{" not in E.DEPLOY_ENV_MISSING.remedy


def test_the_probe_sizes_only_files_the_root_would_serve(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "vmlinuz").write_bytes(b"k" * 5)
    (tmp_path / "deploy" / "empty").write_bytes(b"")
    assert size(tmp_path, "deploy/vmlinuz") == 5 and size(tmp_path, "deploy/empty") == 0
    assert size(tmp_path, "deploy/initrd.img") is None and size(tmp_path, "deploy") is None
    assert size(tmp_path, "../etc/passwd") is None  # outside the root: not served, so not there
