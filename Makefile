# dpm: `make up` runs the embedded stack, `make test` runs every check CI runs.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: up test test-fast lint typecheck docs bench deps tools deploy-os screenshots

tools:  ## install what is missing: uv, and Debian's PostgreSQL
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

deps: tools
	$(UV) sync --all-packages --quiet

up: deps  ## private PostgreSQL + nats-server under ./var, every service as a process; Ctrl-C stops all
	$(UV) run dpm up

lint: deps
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: deps
	$(UV) run mypy

docs: deps  ## regenerate the checked-in generated documents
	$(UV) run python -m dpm_schemas jsonschema --write schemas/events.schema.json
	$(UV) run python -m dpm_schemas errors --write docs/errors.md

test: deps lint typecheck  ## unit + integration + e2e (slow ones included)
	$(UV) run pytest $(PYTEST_ARGS)

test-fast: deps
	$(UV) run pytest -m "not slow" $(PYTEST_ARGS)

deploy-os: deps  ## the network-boot deploy environment (kernel + initramfs) into var/boot/deploy
	$(UV) run python deploy/deploy-os/build.py --out var/boot/deploy

bench: deps  ## benchmarks with their baselines, figures printed
	$(UV) run python -m bench

screenshots: deps  ## photograph every console page at 1366x768 into docs/screenshots (the axe scan runs too)
	DPM_SCREENSHOTS=docs/screenshots $(UV) run pytest -q -p no:cacheprovider tests/integration/test_console*.py
