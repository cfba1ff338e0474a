"""Agent configuration: a TOML file (``/etc/dpm-agent.toml`` by default). Overrides for MACs, SMBIOS
UUID and host name exist for labs and simulators, where one machine plays many."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dpm_schemas.events.machines import Mac


class AgentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str = Field(description="The agent-gateway's base URL, e.g. http://dpm.example:26504")
    enrolment_token: str | None = Field(default=None, description="Only needed until the agent has its own token")
    state_dir: Path = Path("/var/lib/dpm-agent")
    macs: tuple[Mac, ...] | None = None
    smbios_uuid: uuid.UUID | None = None
    hostname: str | None = None
    inventory: bool = True
    allowed_paths: tuple[Path, ...] = Field(
        default=(Path("/opt/dpm/files"),),
        description="File distribution may only touch paths inside these directories",
    )
    power_driver: Literal["systemd", "simulated", "lab"] = "systemd"  # lab: the lab simulator's machines
    max_backoff: float = Field(default=30.0, gt=0)
    install_root: Path = Field(
        default=Path("/"),
        description="The tree dpkg/rpm install into and the inventory reads (its own package database "
        "under var/lib/dpkg); '/' on a real machine, a scratch tree in tests and labs",
    )
    install_poll: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between looks at the scheduled installs (at a set time) and at the "
        "undelivered install reports",
    )

    @field_validator("server")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("server must be an http:// or https:// URL of the agent-gateway")
        return value

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    @property
    def packages_dir(self) -> Path:
        """The package cache (``cache/``), the scheduled installs and the undelivered reports."""
        return self.state_dir / "packages"

    @property
    def ws_url(self) -> str:
        base = self.server.rstrip("/")
        return "wss://" + base[8:] if base.startswith("https://") else "ws://" + base.removeprefix("http://")

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        return cls.model_validate(tomllib.loads(path.read_text()))
