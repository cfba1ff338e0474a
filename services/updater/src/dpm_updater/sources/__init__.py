"""Package sources: Debian-format repositories the updater syncs (issue 14).

``domain`` holds the pure rules (Release, Packages, the fetch plan and its bounds, the change between
two snapshots); ``adapters`` does the HTTP, gpgv and disk work; ``config`` is a source's checked
settings and ``sync.SourceSync`` runs one sync. The service runs it from ``dpm_updater.source_syncs``
(the schedule, "sync now", the SourceSynced events)."""
