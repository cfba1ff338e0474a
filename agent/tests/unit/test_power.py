"""The real power driver asks systemd; here systemctl is a fake on PATH that records its arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dpm_agent.power import SystemdPower
from dpm_schemas.agent_protocol import Action


@pytest.mark.parametrize(("action", "verb"), [(Action.SHUTDOWN, "poweroff"), (Action.REBOOT, "reboot")])
async def test_systemd_driver_calls_systemctl(tmp_path: Path, monkeypatch, action: Action, verb: str) -> None:
    record = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    await SystemdPower().act(action)
    assert record.read_text().split() == [verb]
