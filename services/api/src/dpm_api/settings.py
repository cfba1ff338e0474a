"""Settings of the api service (DPM_* shared, DPM_API_* its own)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import ports


class ApiSettings(ServiceSettings):
    api_port: int = ports.API_HTTP
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token required for changes; `dpm up` generates one into var/."
    )
    api_session_idle_timeout: float = Field(default=1800.0, gt=0, description="Seconds a login session may idle")
    api_max_body: int = Field(default=1_048_576, description="Largest accepted request body, in bytes.")
    api_imager_url: str | None = Field(
        default=None,
        description="The imager's data plane as deploy clients reach it (given out with transfer tokens); default: "
        "the host the caller reached the api at, with DPM_API_IMAGER_PORT",
    )
    api_imager_port: int = Field(default=ports.IMAGER_HTTP, description="The imager's port, for the default URL")
    api_transfer_ttl: float = Field(default=6 * 3600, gt=0, description="Seconds a transfer token lives")
    api_pxe_url: str = Field(
        default=f"http://127.0.0.1:{ports.PXE_HTTP}", description="Where the pxe service answers boot questions"
    )
