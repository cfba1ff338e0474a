"""The dpm release. Agents report theirs; a machine whose agent differs is shown as outdated."""

DPM_VERSION = "0.1.0"
