"""`python -m dpm_updater`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_runtime.service import run
from dpm_updater.bootstrap import bootstrap
from dpm_updater.settings import UpdaterSettings


def main() -> None:
    run(bootstrap(UpdaterSettings()))


if __name__ == "__main__":
    main()
