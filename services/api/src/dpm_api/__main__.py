"""`python -m dpm_api`: Settings() -> bootstrap() -> run()."""

from __future__ import annotations

from dpm_api.bootstrap import bootstrap
from dpm_api.settings import ApiSettings
from dpm_runtime.service import run


def main() -> None:
    run(bootstrap(ApiSettings()))


if __name__ == "__main__":
    main()
