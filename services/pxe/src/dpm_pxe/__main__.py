"""`python -m dpm_pxe`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_runtime.service import run

from dpm_pxe.bootstrap import bootstrap
from dpm_pxe.settings import PxeSettings


def main() -> None:
    run(bootstrap(PxeSettings()))


if __name__ == "__main__":
    main()
