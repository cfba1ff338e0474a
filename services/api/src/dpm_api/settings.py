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
    api_token_enabled: bool = Field(
        default=True, description="Accept DPM_API_TOKEN at all; set false once admin users exist (see docs/security.md)"
    )
    api_token_max_age: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Seconds DPM_API_TOKEN is accepted, counted from the first time an api accepted that value "
        "(recorded in the event log: restarts and replicas agree); then DPM-E425. A new value starts afresh "
        "(`dpm up`: delete var/api-token); see docs/security.md",
    )
    api_session_idle_timeout: float = Field(default=1800.0, gt=0, description="Seconds a login session may idle")
    api_session_max_age: float = Field(
        default=12 * 3600.0, gt=0, description="Seconds a login session lives at most, however busy"
    )
    api_login_max_failures: int = Field(
        default=10,
        ge=1,
        description="Logins for one user name from one address within the window before that pair is locked",
    )
    api_login_max_failures_per_user: int = Field(
        default=50,
        ge=1,
        description="Logins for one user name from all addresses within the window before the name is slowed down "
        "(locked for DPM_API_LOGIN_USER_LOCKOUT only: never long, so guesses cannot keep a user out)",
    )
    api_login_max_attempts_per_source: int = Field(
        default=100, ge=1, description="Login attempts from one address within the window before it is throttled"
    )
    api_login_window: float = Field(default=300.0, gt=0, description="Seconds over which login attempts count")
    api_login_lockout: float = Field(
        default=300.0, gt=0, description="Seconds a throttled (user name, address) pair or address waits"
    )
    api_login_user_lockout: float = Field(
        default=10.0, gt=0, description="Seconds a slowed-down user name waits, from any address"
    )
    api_login_concurrency: int = Field(
        default=2, ge=1, description="Password hashes computed at once (each ~16 MiB, ~50 ms of a core)"
    )
    api_max_body: int = Field(default=1_048_576, gt=0, description="Largest accepted request body, in bytes.")
    api_imager_url: str | None = Field(
        default=None,
        description="The imager's data plane: where the api itself calls it (default: 127.0.0.1 with "
        "DPM_API_IMAGER_PORT) and what deploy clients are given (default: the host the caller reached the api at)",
    )
    api_imager_port: int = Field(default=ports.IMAGER_HTTP, description="The imager's port, for the default URL")
    api_imager_internal_url: str | None = Field(
        default=None,
        description="Where the api itself calls the imager when that differs from what deploy clients are given "
        "(compose: http://imager:26501); default DPM_API_IMAGER_URL, else DPM_HTTP_HOST (loopback for 0.0.0.0) "
        "with DPM_API_IMAGER_PORT",
    )
    api_transfer_ttl: float = Field(
        default=6 * 3600,
        gt=0,
        le=30 * 86400,
        description="Seconds a transfer token stays valid unused (each use renews it; one opened for an "
        "execution ends with it)",
    )
    api_updater_url: str | None = Field(
        default=None,
        description="The updater's data plane as clients reach it, handed out with upload tokens "
        "(default: the host the caller reached the api at, with DPM_API_UPDATER_PORT)",
    )
    api_updater_port: int = Field(default=ports.UPDATER_HTTP, description="The updater's port, for the default URL")
    api_package_upload_ttl: float = Field(
        default=24 * 3600,
        gt=0,
        le=30 * 86400,
        description="Seconds a package upload may take, resumed as often as needed, before its token expires",
    )
    api_update_history_keep: int = Field(
        default=100,
        ge=1,
        description="Package install reports kept per machine in its update history (`GET /machines/{m}/updates`, "
        "`dpm updates history`): the newest this many; older ones stay in the event log only",
    )
    api_backup_lease: float = Field(
        default=300,
        ge=60,
        le=30 * 86400,
        description="Seconds a backup holds its image name (DPM-E160) without progress: every chunk upload, and "
        "the client's heartbeat while it reads, renews it, so a client that died or hung frees the name after "
        "this (a backup's token idles out after the smaller of this and DPM_API_TRANSFER_TTL); "
        "`dpm images unlock NAME` frees it at once",
    )
    api_pxe_url: str = Field(
        default=f"http://127.0.0.1:{ports.PXE_HTTP}", description="Where the pxe service answers boot questions"
    )
    api_pxe_token: SecretStr | None = Field(
        default=None, description="pxe's DPM_PXE_SERVICE_TOKEN, for explain, recent boots and leases"
    )
    api_deploy_check_address: bool = Field(
        default=True,
        description="Accept a deploy token only from the address pxe gave it to (turn off only when a NAT or "
        "proxy between the boot network and the api changes client addresses)",
    )
    api_discovery_max_machines: int = Field(
        default=1000, ge=0, description="Machines auto-registered into new-machines at most (discovery stops there)"
    )
