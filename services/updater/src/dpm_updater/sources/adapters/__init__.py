"""The I/O of a package source (HTTP, gpgv, the content store): not written yet (see the report)."""
