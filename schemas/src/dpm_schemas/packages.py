"""The package definition: every field of the original's package information file, as frozen values.

The seed's limits (ID ≤ 63 bytes of ``[A-Za-z0-9_-]``, company ≤ 127, summary ≤ 511, MS number ≤ 31
bytes) are kept: they are how operators recognise a package and other tools still exchange them.
Byte lengths are UTF-8 bytes. The 259-byte command limit is a Windows command-line limit, so it is
kept for Windows package types only and dropped for deb, rpm and script packages. Unlike the seed,
a bad release date is refused, never "silently corrected".
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dpm_schemas.text import Label, Name, Text

PACKAGE_ID_MAX = 63
COMPANY_MAX = 127
SUMMARY_MAX = 511
MS_NUMBER_MAX = 31
WINDOWS_COMMAND_MAX = 259
# the agent's own package: judged by the version agents report, not by inventory, and registered only
# at the server's version (so an upgrade is never a downgrade); its install restarts the agent
AGENT_PACKAGE_ID = "dpm-agent"


class PackageType(StrEnum):
    SERVICE_PACK = "service-pack"
    HOTFIX = "hotfix"
    APPLICATION = "application"
    LINUX_PATCH = "linux-patch"
    DEB = "deb"
    RPM = "rpm"
    SCRIPT = "script"


WINDOWS_TYPES = frozenset({PackageType.SERVICE_PACK, PackageType.HOTFIX, PackageType.APPLICATION})


class Urgency(StrEnum):
    """highest: pushed at once; high: at the machine's auto-update time; normal/low: scenario only."""

    HIGHEST = "highest"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class ChangeType(StrEnum):
    NEW = "new"
    DELETE = "delete"
    REWRITE = "rewrite"
    VERSION_UP = "version-up"


class Operator(StrEnum):
    EXISTS = "exists"
    NOT_EXISTS = "not-exists"
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Execution(_Frozen):
    """What the agent runs: the packed files, the command and its silent, no-reboot parameters."""

    files: tuple[Text, ...] = ()
    command: Text = ""
    parameters: Text = ""
    reboot_after_install: bool = False
    exclusive: bool = False  # applied alone; the machine reboots before it


class RegistryCondition(_Frozen):
    """Windows: applicable only when the registry value matches (seed §8.6)."""

    kind: Literal["registry"] = "registry"
    key: Text
    value: Text = ""
    data: Text = ""
    type: Label = "REG_SZ"
    operator: Operator = Operator.EXISTS


class FileExistsCondition(_Frozen):
    kind: Literal["file-exists"] = "file-exists"
    path: Text
    operator: Literal[Operator.EXISTS, Operator.NOT_EXISTS] = Operator.EXISTS


class PackageInstalledCondition(_Frozen):
    """A system package installed; with ``version``, compared by that system's own ordering."""

    kind: Literal["package-installed"] = "package-installed"
    name: Name
    version: Label = ""
    operator: Operator = Operator.EXISTS


class CommandExitCondition(_Frozen):
    """A probe command the agent runs and reports; applicable when its exit code matches."""

    kind: Literal["command-exit"] = "command-exit"
    command: Text
    exit_code: int = 0


Condition = Annotated[
    RegistryCondition | FileExistsCondition | PackageInstalledCondition | CommandExitCondition,
    Field(discriminator="kind"),
]


class Identification(_Frozen):
    """A file whose state shows the package is applied (when MS number or version are not enough)."""

    path: Text
    version: Label = ""
    change: ChangeType


class Package(_Frozen):
    """One package definition. Build it with :func:`dpm_packages.validation.parse_package` for coded errors (it lives in
    ``dpm_schemas`` because events carry it: PackageRegistered)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")]
    type: PackageType
    company: Text = ""
    summary: Text = ""
    release_date: dt.date | None = None
    urgency: Urgency = Urgency.NORMAL
    ms_number: Label = ""
    major_version: int | None = Field(default=None, ge=0)
    minor_version: int | None = Field(default=None, ge=0)
    display_name: Text = ""
    display_version: Label = ""
    system_package: Name | None = None  # deb/rpm: the package name dpkg/rpm knows; defaults to id
    system_version: Label = ""  # deb/rpm: the version this package installs
    execution: Execution = Execution()
    os: tuple[Name, ...] = ()  # empty: any OS
    architectures: tuple[Label, ...] = ()  # empty: any architecture
    languages: tuple[Label, ...] = ()  # empty: any language
    base_service_pack: Name | None = None
    absorbed_service_packs: tuple[Name, ...] = ()
    conditions: tuple[Condition, ...] = ()
    identification: tuple[Identification, ...] = ()
    requires: tuple[Name, ...] = ()  # other dpm package IDs applied first
    revision: int = Field(default=0, ge=0)  # server-assigned

    @property
    def is_service_pack(self) -> bool:
        return self.type is PackageType.SERVICE_PACK
