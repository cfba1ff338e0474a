"""Settings shared by every service (env prefix ``DPM_``); each service subclasses with its own fields.

A service's own settings are named after it (``api_port`` -> ``DPM_API_PORT``), so one environment
can configure the whole stack without collisions.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DPM_", extra="ignore", frozen=True)

    database_url: SecretStr = Field(
        default=SecretStr("postgresql://dpm_app@127.0.0.1:26512/dpm"),
        description="PostgreSQL for the service role (no UPDATE/DELETE on events).",
    )
    database_admin_url: SecretStr | None = Field(
        default=None, description="Owner connection, only to apply migrations; without it the service waits for them."
    )
    nats_url: str = Field(default="nats://127.0.0.1:26522", description="nats-server with JetStream.")
    nats_user: str | None = Field(default=None, description="NATS user of this service (dpm up sets one per service).")
    nats_password: SecretStr | None = Field(default=None, description="Password of nats_user.")
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP endpoints bind to.")
    http_max_body: int = Field(
        default=1_048_576, gt=0, description="Largest request body (bytes), chunked or not, unless a route allows more."
    )
    log_level: str = "INFO"
    relay_enabled: bool = Field(default=True, description="Stand by as the event relay (one is active).")
    db_pool_max: int = Field(default=10, ge=1)
    db_request_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds an HTTP request waits for a database connection before answering 503 DPM-E039 "
        "with Retry-After (consumers, projections and rounds wait db_checkout_timeout and retry).",
    )
    db_checkout_timeout: float = Field(
        default=30.0, gt=0, description="Seconds background work waits for a database connection before retrying."
    )
    shutdown_grace: float = Field(default=10.0, gt=0, description="Seconds to drain on SIGTERM.")
    projection_poll: float = Field(
        default=5.0, gt=0, description="Seconds between polls of projections and rebuild requests if NOTIFY is lost."
    )
    tracking_retention_days: float = Field(
        default=7.0, ge=0, description="Keep dpm_tracking rows at least this long (and the stream's max age)."
    )
    tracking_prune_interval: float = Field(default=3600.0, gt=0, description="Seconds between tracking prunes.")

    @property
    def nats_secret(self) -> str | None:
        """The NATS password in clear, for ``connect_nats`` (None when the server needs none)."""
        return self.nats_password.get_secret_value() if self.nats_password else None

    @property
    def admin_url(self) -> str:
        return (self.database_admin_url or self.database_url).get_secret_value()
