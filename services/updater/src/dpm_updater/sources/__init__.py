"""Package sources: Debian-format and RPM repositories the updater syncs (issue 14).

``domain`` holds the pure rules (Release, Packages, the fetch plan and its bounds, an RPM repository's
repomd.xml and primary metadata, the change between two snapshots); ``rpm`` reads an RPM source's
index; ``adapters`` does the HTTP, gpgv and disk work; ``config`` is a source's checked
settings and ``sync.SourceSync`` runs one sync. The service runs it from ``dpm_updater.source_syncs``
(the schedule, "sync now", the SourceSynced events)."""
