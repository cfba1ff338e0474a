"""Which read models load the events' metadata column: only those that declare they read it (the
package catalogue keeps who registered a package), also when run under a service's full name, so
every other projection's rebuild stays as cheap as before."""

from __future__ import annotations

from dpm_runtime.catalog import Inventories, PackageCatalog
from dpm_runtime.readmodel import reads_metadata
from dpm_runtime.registry import Qualified


def test_only_the_catalogue_reads_the_metadata_also_when_qualified() -> None:
    catalog, inventories = PackageCatalog("api", "packages"), Inventories("api", "inventories")
    assert reads_metadata(catalog) and reads_metadata(Qualified("api", catalog))
    assert not reads_metadata(inventories) and not reads_metadata(Qualified("api", inventories))
