"""`python -m dpm_imager`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_imager.bootstrap import bootstrap
from dpm_imager.settings import ImagerSettings
from dpm_runtime.service import run


def main() -> None:
    run(bootstrap(ImagerSettings()))


if __name__ == "__main__":
    main()
