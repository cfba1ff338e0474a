"""Package sources: Debian-format repositories the updater syncs on a schedule (issue 14).

``domain`` holds the pure parsers (Release, Packages) and the change decision between two index
snapshots; ``adapters`` (to come) does the HTTP, signature and disk work."""
