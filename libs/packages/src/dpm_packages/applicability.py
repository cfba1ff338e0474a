"""The applicability engine: for one machine's inventory, which packages are applied, applicable, or not, and why.

Pure and explained: every verdict carries structured reasons (a stable code and a human sentence),
so the updater can act on codes while ``dpm packages explain`` shows the sentences. A fact the agent
did not report yields ``UNKNOWN`` ("condition unknown: probe not reported"), never a guess: offering
a package on a guess is the seed's "re-delivered forever" failure, hiding it is a missed update.
Output is sorted by package ID so two runs over the same input render the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from dpm_packages.inventory import Inventory
from dpm_packages.versions import VersionScheme, compare
from dpm_schemas.packages import (
    ChangeType,
    CommandExitCondition,
    Condition,
    FileExistsCondition,
    Operator,
    Package,
    PackageInstalledCondition,
    PackageType,
    RegistryCondition,
)


class Verdict(StrEnum):
    APPLIED = "applied"
    APPLICABLE = "applicable"  # installable now (after the packages named in its reasons)
    NOT_APPLICABLE = "not-applicable"
    UNKNOWN = "unknown"  # a fact it needs was not reported


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    text: str


class Assessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    package_id: str
    verdict: Verdict
    reasons: tuple[Reason, ...]


def _r(code: str, text: str) -> Reason:
    return Reason(code=code, text=text)


def _os_matches(package: Package, inv: Inventory) -> bool:
    name = inv.os_name.casefold()
    return not package.os or any(o.casefold() in name for o in package.os)


def _ordered(op: Operator, cmp: int) -> bool:
    return {
        Operator.EQ: cmp == 0,
        Operator.NE: cmp != 0,
        Operator.LT: cmp < 0,
        Operator.LE: cmp <= 0,
        Operator.GT: cmp > 0,
        Operator.GE: cmp >= 0,
    }.get(op, True)


def _condition(cond: Condition, inv: Inventory) -> bool | None:
    """True, False, or None when the inventory lacks the fact."""
    if isinstance(cond, RegistryCondition):
        if inv.registry is None:
            return None
        data = inv.registry.get(f"{cond.key}\\{cond.value}")
        if cond.operator is Operator.NOT_EXISTS:
            return data is None
        if cond.operator is Operator.EXISTS:
            return data is not None and (not cond.data or data == cond.data)
        return data is not None and _ordered(cond.operator, compare(VersionScheme.DOTTED, data, cond.data))
    if isinstance(cond, FileExistsCondition):
        if inv.files is None:
            return None
        return (cond.path in inv.files) == (cond.operator is Operator.EXISTS)
    if isinstance(cond, PackageInstalledCondition):
        if inv.packages is None:
            return None
        version = inv.packages.get(cond.name)
        if cond.operator is Operator.NOT_EXISTS:
            return version is None
        if version is None or cond.operator is Operator.EXISTS:
            return version is not None
        return _ordered(cond.operator, compare(inv.package_system or VersionScheme.DOTTED, version, cond.version))
    assert isinstance(cond, CommandExitCondition)
    if inv.probes is None or cond.command not in inv.probes:
        return None
    return inv.probes[cond.command] == cond.exit_code


def _describe(cond: Condition) -> str:
    if isinstance(cond, RegistryCondition):
        return f"registry {cond.key}\\{cond.value} {cond.operator} {cond.data}".rstrip()
    if isinstance(cond, FileExistsCondition):
        return f"file {cond.path} {cond.operator}"
    if isinstance(cond, PackageInstalledCondition):
        return f"package {cond.name} {cond.operator} {cond.version}".rstrip()
    return f"command {cond.command!r} exits {cond.exit_code}"


def _identified(package: Package, inv: Inventory) -> bool | None:
    if inv.files is None:
        return None
    for entry in package.identification:
        present = inv.files.get(entry.path)
        if entry.change is ChangeType.DELETE:
            if present is not None:
                return False
        elif present is None or (entry.version and compare(VersionScheme.DOTTED, present, entry.version) < 0):
            return False
    return True


def _applied(package: Package, inv: Inventory) -> tuple[bool | None, Reason | None]:
    """Whether the package is already on the machine, and the reason that says how dpm knows."""
    if inv.applied is not None and inv.applied.get(package.id, -1) >= package.revision:
        return True, _r("recorded-applied", f"dpm applied revision {inv.applied[package.id]}")
    if package.type is PackageType.SERVICE_PACK and package.major_version is not None:
        wanted = (package.major_version, package.minor_version or 0)
        if inv.service_pack is None:
            return None, _r("service-pack-unknown", "installed service pack not reported")
        if inv.service_pack >= wanted:
            return True, _r(
                "service-pack-applied", f"service pack {inv.service_pack[0]}.{inv.service_pack[1]} installed"
            )
        return False, None
    if package.ms_number and inv.hotfixes is not None and package.ms_number in inv.hotfixes:
        return True, _r("ms-number-applied", f"{package.ms_number} installed")
    if package.display_name and inv.applications is not None and package.display_name in inv.applications:
        have = inv.applications[package.display_name]
        order = compare(VersionScheme.DOTTED, have, package.display_version)
        if order > 0:
            return True, _r("installed-newer", f"installed {package.display_name} {have} is newer")
        if order == 0:
            return True, _r("display-version-applied", f"{package.display_name} {have} installed")
    return _applied_by_files_or_system(package, inv)


def _applied_by_files_or_system(package: Package, inv: Inventory) -> tuple[bool | None, Reason | None]:
    """deb/rpm: the installed version by that system's ordering; otherwise the identification files."""
    if package.type in (PackageType.DEB, PackageType.RPM) and package.system_version:
        if inv.packages is None:
            return None, _r("packages-unknown", "installed packages not reported")
        name = package.system_package or package.id
        installed = inv.packages.get(name)
        if installed is not None:
            scheme = VersionScheme.DEBIAN if package.type is PackageType.DEB else VersionScheme.RPM
            order = compare(scheme, installed, package.system_version)
            if order > 0:
                newer = f"installed {name} {installed} is newer than {package.system_version}"
                return True, _r("installed-newer", newer)
            if order == 0:
                return True, _r("installed-version-applied", f"{name} {installed} installed")
    if package.identification:
        found = _identified(package, inv)
        if found is None:
            return None, _r("files-unknown", "identification files not reported")
        if found:
            return True, _r("identification-applied", "identification says applied")
    return False, None


def _base_checks(package: Package, inv: Inventory, newest_sp: dict[str, Package]) -> list[Reason] | None:
    """Reasons it can never apply here (None when it may): OS, architecture, language, supersession."""
    if not _os_matches(package, inv):
        return [_r("os-mismatch", f"OS mismatch: {inv.os_name} is not one of {', '.join(package.os)}")]
    if package.architectures and inv.architecture is not None and inv.architecture not in package.architectures:
        return [
            _r(
                "architecture-mismatch",
                f"architecture {inv.architecture} is not one of {', '.join(package.architectures)}",
            )
        ]
    if package.languages and inv.languages is not None and not set(package.languages) & set(inv.languages):
        return [_r("language-mismatch", f"language mismatch: needs one of {', '.join(package.languages)}")]
    if package.is_service_pack:
        newest = newest_sp.get(package.id)
        if newest is not None and newest.id != package.id:
            return [_r("superseded", f"superseded by {newest.id}")]
    return None


def _newest_service_packs(packages: Sequence[Package], inv: Inventory) -> dict[str, Package]:
    """Only the newest service pack per OS is offered (seed §8.7): map every SP to its OS's newest."""
    sps = [p for p in packages if p.is_service_pack and _os_matches(p, inv)]
    result: dict[str, Package] = {}
    for sp in sps:
        rivals = [o for o in sps if set(o.os) & set(sp.os) or not o.os or not sp.os]
        result[sp.id] = max(rivals, key=lambda p: (p.major_version or 0, p.minor_version or 0, p.id))
    return result


def assess(inventory: Inventory, packages: Iterable[Package]) -> tuple[Assessment, ...]:
    """One assessment per package, sorted by package ID."""
    ordered = sorted(packages, key=lambda p: p.id)
    newest_sp = _newest_service_packs(ordered, inventory)
    first: dict[str, tuple[bool | None, Reason | None]] = {p.id: _applied(p, inventory) for p in ordered}
    applied_ids = {pid for pid, (state, _) in first.items() if state} | set(inventory.applied or {})
    result: dict[str, Assessment] = {}
    for package in ordered:
        result[package.id] = _assess_one(package, inventory, newest_sp, first[package.id], applied_ids)
    # Packages that need another dpm package: applicable only when that one is applied or applicable.
    for package in ordered:
        current = result[package.id]
        if current.verdict is not Verdict.APPLICABLE:
            continue
        extra: list[Reason] = []
        for need in package.requires:
            other = result.get(need)
            if need in applied_ids:
                continue
            if other is not None and other.verdict is Verdict.APPLICABLE:
                extra.append(_r("after", f"installs after {need}"))
            else:
                result[package.id] = Assessment(
                    package_id=package.id, verdict=Verdict.NOT_APPLICABLE, reasons=(_r("needs", f"needs {need}"),)
                )
                break
        else:
            result[package.id] = current.model_copy(update={"reasons": current.reasons + tuple(extra)})
    return tuple(result[p.id] for p in ordered)


def _assess_one(
    package: Package,
    inv: Inventory,
    newest_sp: dict[str, Package],
    applied: tuple[bool | None, Reason | None],
    applied_ids: set[str],
) -> Assessment:
    def verdict(v: Verdict, *reasons: Reason) -> Assessment:
        return Assessment(package_id=package.id, verdict=v, reasons=reasons)

    state, why = applied
    if state and why is not None:
        return verdict(Verdict.APPLIED, why)
    blocked = _base_checks(package, inv, newest_sp)
    if blocked:
        return verdict(Verdict.NOT_APPLICABLE, *blocked)
    for absorbing in package.absorbed_service_packs:
        if absorbing in applied_ids:
            return verdict(Verdict.APPLIED, _r("absorbed", f"absorbed by service pack {absorbing}"))
    if package.base_service_pack and package.base_service_pack not in applied_ids:
        return verdict(Verdict.NOT_APPLICABLE, _r("needs-service-pack", f"needs {package.base_service_pack}"))
    unknown: list[Reason] = [why] if state is None and why is not None else []
    for cond in package.conditions:
        holds = _condition(cond, inv)
        if holds is False:
            return verdict(Verdict.NOT_APPLICABLE, _r("condition-not-met", f"condition not met: {_describe(cond)}"))
        if holds is None:
            unknown.append(_r("condition-unknown", f"condition unknown: {_describe(cond)} not reported"))
    if unknown:
        return verdict(Verdict.UNKNOWN, *unknown)
    return verdict(Verdict.APPLICABLE, _r("installable", "installable now"))


def install_order(assessments: Iterable[Assessment], packages: Iterable[Package]) -> tuple[str, ...]:
    """The applicable package IDs, each after the dpm packages it requires (ties by ID)."""
    applicable = {a.package_id for a in assessments if a.verdict is Verdict.APPLICABLE}
    needs = {p.id: set(p.requires) & applicable for p in packages if p.id in applicable}
    order: list[str] = []
    while needs:
        ready = sorted(pid for pid, deps in needs.items() if not deps - set(order))
        if not ready:  # a cycle: keep the rest in ID order rather than loop
            ready = sorted(needs)
        order.extend(ready)
        for pid in ready:
            needs.pop(pid)
    return tuple(order)


def explain(machine: str, assessments: Iterable[Assessment]) -> str:
    """The text of ``dpm packages explain --machine M``: one line per package, reasons after it."""
    lines = [f"Packages for {machine}:"]
    for item in assessments:
        lines.append(f"  {item.package_id:<24} {item.verdict.value:<15} " + "; ".join(r.text for r in item.reasons))
    return "\n".join(lines)
