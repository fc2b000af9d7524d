# hnas — the two commands: `make run` (the main job) and `make test` (the test suite).
# On machines that must keep a particular torch build, export PIP_CONSTRAINT=<file> (pip honours it);
# .ci/run does this to keep the local CPU wheel torch==2.13.0.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-all lint clean install install-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(PY) -m hnas.run +experiment=cifar10 $(ARGS)

test: $(VENV)/.installed-dev
	WANDB_MODE=offline $(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev
	WANDB_MODE=offline $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check hnas tests

clean:
	rm -rf $(VENV) build dist *.egg-info
