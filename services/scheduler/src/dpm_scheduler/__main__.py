"""`python -m dpm_scheduler`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_runtime.service import run
from dpm_scheduler.bootstrap import bootstrap
from dpm_scheduler.settings import SchedulerSettings


def main() -> None:
    run(bootstrap(SchedulerSettings()))


if __name__ == "__main__":
    main()
