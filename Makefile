# Two commands: `make dev` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test test-slow test-loaded lint bench install clean package openapi livekit-server supabase-cli

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# aws-sam-cli pins conflict with ours, so it lives in its own venv.
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==1.170.0
	touch $(SAM_STAMP)

# Lambda packages in .aws-sam/build (no Docker: see nexus/package.py), then their sizes.
package: $(STAMP) $(SAM_STAMP)
	$(SAM) build --build-in-source
	$(PY) -m nexus.package sizes

# `sam build` runs one of these per function and for the layer (BuildMethod: makefile).
build-%: $(STAMP)
	$(PY) -m nexus.package build $* "$(ARTIFACTS_DIR)"

dev: $(STAMP)
	$(VENV)/bin/nexus dev

# The pinned livekit-server for `make dev` and tests/livekit_server/: built once with Go, with
# progress, and cached in ~/.cache/nomadnexus (README). Without Go this says so and the tests decide
# (skipped with one loud line; a failure with CI=true).
livekit-server: $(STAMP)
	-@$(PY) -m nexus.livekit_server build >/dev/null

test: $(STAMP) lint livekit-server supabase-cli
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# The fault and deadline suites twice, with the other core(s) kept busy by CPU burners it starts
# and stops (tests/loaded.py): no test may depend on how fast or idle the machine is.
test-loaded: $(STAMP)
	$(PY) -m tests.loaded

lint: $(STAMP) $(SAM_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.run

# The Supabase CLI, pinned in package.json/package-lock.json, into node_modules/.bin
# (its postinstall downloads the CLI binary from GitHub releases).
SUPABASE := node_modules/.bin/supabase

$(SUPABASE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(SUPABASE)

supabase-cli: $(SUPABASE)

# Rewrite openapi.json from the functions' models (tests/unit/test_openapi.py fails until you do).
openapi: $(STAMP)
	$(PY) -m nexus.openapi --write

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .data .pytest_cache node_modules
