"""What the QEMU tests share: the deploy environment, built once per session (Debian packages are
cached under var/cache/deploy-os, so a second session's build is quick)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deploy_os(tmp_path_factory) -> Path:
    """The deploy environment (kernel and initramfs), built once for every QEMU test."""
    out = tmp_path_factory.mktemp("deploy-os")
    subprocess.run(
        [sys.executable, str(REPO / "deploy/deploy-os/build.py"), "--out", str(out), "--level", "1"],
        check=True,
        timeout=600,
    )
    return out
