"""`python -m dpm_pxe`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_pxe.bootstrap import bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.service import run


def main() -> None:
    run(bootstrap(PxeSettings()))


if __name__ == "__main__":
    main()
