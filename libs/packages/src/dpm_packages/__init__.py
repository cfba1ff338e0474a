"""dpm packages: the model of a software package, its validation, version ordering and applicability.

Pure: values in, verdicts out. The updater decides with it, the api validates forms with it, and the
agent builds the :class:`Inventory` it reports. Import the submodules for everything else.
"""

from dpm_packages.applicability import Assessment, Reason, Verdict, assess, explain, install_order
from dpm_packages.inventory import Inventory, OsFamily, from_reported
from dpm_packages.validation import package_problems, parse_package
from dpm_packages.versions import VersionScheme, compare
from dpm_schemas.packages import Package, PackageType, Urgency

__all__ = [
    "Assessment",
    "Inventory",
    "OsFamily",
    "Package",
    "PackageType",
    "Reason",
    "Urgency",
    "Verdict",
    "VersionScheme",
    "assess",
    "compare",
    "explain",
    "from_reported",
    "install_order",
    "package_problems",
    "parse_package",
]
