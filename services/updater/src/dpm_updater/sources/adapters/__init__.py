"""The I/O of a package source: HTTP (``http``), gpgv (``gpg``) and the content store (``store``)."""
