"""The updater's rules, pure: what an upload token may do, and when content is complete."""
