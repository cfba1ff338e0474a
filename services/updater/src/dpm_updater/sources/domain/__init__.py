"""The pure rules of a package source: what a Release and a Packages index say, and what changed
between two syncs. No HTTP, gpgv or disk here, so every rule is unit-tested alone."""
