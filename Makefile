# Two commands: `make dev` and `make test`. Everything else is optional.
# The suite runs on the Python minor Lambda runs (template.yaml's Runtime, e.g. python3.12): found
# on PATH or in pyenv's versions; `make PYTHON=...` overrides (docs/decisions.md, issue 21).
RUNTIME := $(shell sed -n 's/^ *Runtime: *python\([0-9.]*\).*/\1/p' template.yaml | head -n 1)
PYTHON ?= $(shell for p in $$(command -v python$(RUNTIME)) $$(ls -d $(HOME)/.pyenv/versions/$(RUNTIME).*/bin/python$(RUNTIME) 2>/dev/null | sort -V -r); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(RUNTIME)".split("."))))' 2>/dev/null && { echo "$$p"; break; }; done)
ifeq ($(PYTHON),)
ifeq ($(CI),true)
$(error no python$(RUNTIME) (template.yaml's Runtime) on PATH or in ~/.pyenv/versions: CI runs the suite on the deployed minor)
endif
$(warning no python$(RUNTIME) (template.yaml's Runtime) found: using python3; tests/unit/test_runtime.py will fail)
PYTHON := python3
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Which interpreter the venv was made with: a different one rebuilds it.
INTERPRETER := $(VENV)/.interpreter

.PHONY: dev test test-slow test-loaded lint bench install clean package openapi livekit-server lambda-emulator supabase-cli FORCE

$(INTERPRETER): FORCE
	@want="$$($(PYTHON) -c 'import sys; print(sys.version, "$(PYTHON)")')"; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$want" ]; then mkdir -p $(VENV); echo "$$want" > $@; fi

$(STAMP): pyproject.toml $(INTERPRETER)
	$(PYTHON) -m venv --clear $(VENV)
	$(PYTHON) -c 'import sys; print(sys.version, "$(PYTHON)")' > $(INTERPRETER)
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

# Lambda packages in .aws-sam/build (no Docker: see nexus/package.py), then their sizes, also
# written into docs/deploy.md's generated table.
package: $(STAMP) $(SAM_STAMP)
	$(SAM) build --build-in-source
	$(PY) -m nexus.package sizes --write-docs

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

# AWS's Lambda Runtime Interface Emulator for tests/lambda_runtime/: built once with Go, with
# progress, cached beside livekit-server (nexus/lambda_emulator.py). Without Go the rehearsal
# skips with one line (a failure with CI=true).
lambda-emulator: $(STAMP)
	-@$(PY) -m nexus.lambda_emulator build >/dev/null

test: $(STAMP) lint livekit-server supabase-cli
	$(PY) -m pytest -m "not slow"

# The long suites, among them the packages run under the emulator (.ci/run runs both).
test-slow: $(STAMP) livekit-server lambda-emulator
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
