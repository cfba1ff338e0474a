"""Settings of the updater service (DPM_* shared, DPM_UPDATER_* its own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dpm_runtime.settings import ServiceSettings
from dpm_schemas import E, ports


class UpdaterSettings(ServiceSettings):
    updater_port: int = ports.UPDATER_HTTP
    updater_root: Path = Field(
        default=Path("/srv/dpm/packages"),
        description="The package content store: sha256/<aa>/<hex> once per content, uploads/ while arriving",
    )
    updater_auto_update_tick: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds between looks for machines whose auto-update time came"
    )
    updater_agent_upgrade_grace: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Seconds a remote update held for its agent's upgrade waits, once the upgrade installed, for the "
        "agent to say hello at the server's version (else DPM-E218)",
    )
    updater_public_url: str | None = Field(
        default=None,
        description="The updater's URL as agents reach it (install orders name it); default: http://<DPM_HTTP_HOST>:"
        "<port> unless that host is a wildcard address",
    )

    updater_source_credentials: Path | None = Field(
        default=None,
        description="Package sources' proxy credentials: a JSON file of mode 0600 mapping a source name to "
        '{"username": ..., "password": ...} (never in the log); read at every sync',
    )
    updater_source_tick: float = Field(
        default=30.0, gt=0, description="Seconds between the updater's looks for package sources due for a sync"
    )

    def agent_url(self) -> str:
        """Where agents download and report, or DPM-E283 when the settings cannot say."""
        if self.updater_public_url:
            if not self.updater_public_url.startswith(("http://", "https://")):
                raise E.UPDATER_URL_UNKNOWN(host=self.updater_public_url)
            return self.updater_public_url.rstrip("/")
        if self.http_host in ("0.0.0.0", "::", ""):
            raise E.UPDATER_URL_UNKNOWN(host=self.http_host)
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"http://{host}:{self.updater_port}"
