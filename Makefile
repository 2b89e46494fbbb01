# Two commands do all set-up on a fresh machine:
#   make run    install into .venv and run the whole pipeline on the offline default (dvc repro)
#   make test   install into .venv (with the dev extra), lint + type-check ovc/, run the test suite
# Both install the exact versions of requirements.lock (what CI tested); `make lock` re-resolves it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# stages call `ovc ...`; dvc runs them with this PATH
export PATH := $(abspath $(BIN)):$(PATH)

# Offline, telemetry-free defaults (hub calls fail fast instead of hanging ~46 s).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

LOCK := requirements.lock

.PHONY: run test test-fast lint install install-dev lock clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# the lock holds runtime and dev pins alike, so both targets install the same resolved set
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e '.[dev]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/dvc repro

lint: install-dev
	$(BIN)/ruff check ovc tests flows
	$(BIN)/ruff format --check ovc tests flows
	$(BIN)/mypy ovc

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install-dev
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# re-resolve the dependencies of pyproject.toml in a throwaway venv and pin what pip chose
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip && .venv-lock/bin/pip install -q -e '.[dev]'
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^ovc' > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

clean-venv:
	rm -rf $(VENV)
