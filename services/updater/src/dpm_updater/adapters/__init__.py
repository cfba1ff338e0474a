"""The updater's I/O: the package content store on disk."""
