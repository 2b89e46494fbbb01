# Two commands do all set-up on a fresh machine:
#   make run    install into .venv and run the whole pipeline on the offline default (dvc repro)
#   make test   install into .venv (with the dev extra) and run the test suite (slow tests included)
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

.PHONY: run test test-fast install install-dev bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/dvc repro

test: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install-dev
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
