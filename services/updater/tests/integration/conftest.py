"""The fixtures of the source-sync tests live in source_repo.py (a module the test imports too)."""

from source_repo import certificate, debs, keys, proxy, repo, sync, tls_web, web

__all__ = ["certificate", "debs", "keys", "proxy", "repo", "sync", "tls_web", "web"]
