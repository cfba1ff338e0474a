"""Where install orders tell agents to download and report: the configured URL, else the updater's
own address -- never a wildcard address no machine can reach (DPM-E283)."""

from __future__ import annotations

import pytest

from dpm_schemas import DpmError
from dpm_updater.settings import UpdaterSettings


def url(**settings: object) -> str:
    return UpdaterSettings(**settings).agent_url()  # type: ignore[arg-type]


def test_the_configured_url_wins_and_a_bound_address_is_the_fallback() -> None:
    assert url(updater_public_url="https://dpm.lab:8443/", http_host="0.0.0.0") == "https://dpm.lab:8443"
    assert url(http_host="10.0.0.5", updater_port=26506) == "http://10.0.0.5:26506"
    assert url(http_host="fd00::5", updater_port=26506) == "http://[fd00::5]:26506"


@pytest.mark.parametrize("settings", [{"http_host": "0.0.0.0"}, {"http_host": "::"}, {"updater_public_url": "ftp://x"}])
def test_an_address_agents_cannot_use_is_refused(settings: dict[str, str]) -> None:
    with pytest.raises(DpmError) as err:
        url(**settings)
    assert err.value.code == "DPM-E283"
