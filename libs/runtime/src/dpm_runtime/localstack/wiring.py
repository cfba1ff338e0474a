"""Where the services of `dpm up` find each other and keep their files: the defaults every child
gets unless the caller's environment says otherwise (all under the stack's var/ directory)."""

from __future__ import annotations

from pathlib import Path

from dpm_schemas import ports


def service_port(name: str, env: dict[str, str]) -> int:
    setting, default = ports.SETTINGS[name]
    return int(env.get(setting, default))


def service_defaults(var: Path, host: str, env: dict[str, str]) -> dict[str, str]:
    """Settings with their `dpm up` values: data directories in ``var``, peers on ``host``."""
    return {
        "DPM_API_PXE_URL": f"http://{host}:{service_port('pxe', env)}",
        "DPM_PXE_API_PORT": str(service_port("api", env)),  # machines get the host they reached
        "DPM_API_IMAGER_PORT": str(service_port("imager", env)),
        "DPM_IMAGER_ROOT": str(var / "images"),
        "DPM_IMAGER_RESERVE_BYTES": str(256 << 20),
        "DPM_API_UPDATER_PORT": str(service_port("updater", env)),
        "DPM_UPDATER_ROOT": str(var / "packages"),
    }
