"""dpm benchmarks: `make bench` (or `uv run python -m bench`). Each figure is printed beside the
baseline it is compared against, measured in the same run on the same private PostgreSQL cluster."""
