# hnas — the two commands: `make run` (the main job) and `make test` (the test suite).
# On machines that must keep a particular torch build, export PIP_CONSTRAINT=<file> (pip honours it);
# .ci/run does this to keep the local CPU wheel torch==2.13.0.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-all lint clean install install-dev paper-table own-table hybrid-ablation

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
	$(VENV)/bin/ruff check hnas tests
	WANDB_MODE=offline $(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev
	WANDB_MODE=offline $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check hnas tests

# --- reproduction tables (docs/results.md); SHARED points at the real data (../shared/data here) ---------------
SHARED ?= ../shared/data
SEEDS ?= 10,11,12,13,14,15,16,17,18,19
NB201 := benchmark.path=$(SHARED)/nb201/nb201.csv

# RoBoT, hybrid (issue 13) and baselines on the 9,445-arch pool with imported NAS-Bench-Suite-Zero scores,
# T = 20 (RoBoT also with T = 5 and 10: it plans around its budget); efficiency.md: test accuracy after 5/10/20
# queries and queries to the best value.
PAPER_ARGS = $(NB201) logger=none proxies=suite_zero_$$zc proxies.import_path=$(SHARED)/nb201/suite_zero_$$zc.csv \
	pool=table pool.path=$(SHARED)/nb201/suite_zero_$$zc.csv
paper-table: $(VENV)/.installed
	for ds in cifar10 cifar100 imagenet16; do zc=$$( [ $$ds = imagenet16 ] && echo imagenet16 || echo cifar10 ); \
	  for T in 5 10; do \
	  $(PY) -m hnas.run -m +experiment=nb201_$$ds strategy=robot strategy.budget=$$T seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/paper-robot-T$$T/nb201_$$ds || exit 1; done; \
	  for st in hybrid robot rea random; do \
	  $(PY) -m hnas.run -m +experiment=nb201_$$ds strategy=$$st seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/paper/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas.report results/paper --out results/paper/table.md --plot results/paper/trajectory.png
	$(PY) -m hnas.efficiency results/paper results/paper-robot-T5 results/paper-robot-T10 --out results/paper/efficiency.md

# Each ingredient of strategy=hybrid switched off in turn (issue 13's ablation), same pool and seeds as paper-table
HYBRID_ABLATIONS ?= normalisation=rank prior=false,local_rank=gp local=false switch=local_first switch=global_first \
	local_rank=gp first=random encoding=false
hybrid-ablation: $(VENV)/.installed
	for ds in cifar10 cifar100 imagenet16; do zc=$$( [ $$ds = imagenet16 ] && echo imagenet16 || echo cifar10 ); \
	  for v in $(HYBRID_ABLATIONS); do over=$$(echo $$v | tr ',' '\n' | sed 's/^/strategy.options./' | tr '\n' ' '); \
	  $(PY) -m hnas.run -m +experiment=nb201_$$ds strategy=hybrid $$over seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/ablation/$$(echo $$v | tr ',=' '_-')/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas.efficiency results/paper results/ablation --out results/ablation/efficiency.md

# Every strategy on the 1,000-arch pool (pool.seed=0) with the proxy library's own CIFAR-10 scores (one fixed
# 64-image batch of the CIFAR-10 training split, as HNAS/RoBoT use CIFAR-10 metrics for every target), T = 20.
# Needs the scores in the store first: python -m hnas.score ... pool.size=1000 pool.seed=0 (see docs/results.md).
OWN_POOL := pool.size=1000 pool.seed=0 data=imagefolder data.root=$(SHARED)/cifar10
TF_PROXY ?= synflow
own-table: $(VENV)/.installed
	for ds in cifar10 cifar100 imagenet16; do \
	  for st in hybrid robot hnas rea random training_free; do \
	  extra=$$( [ $$st = training_free ] && echo strategy.options.proxy=$(TF_PROXY) ); \
	  $(PY) -m hnas.run -m +experiment=nb201_$$ds strategy=$$st $$extra seed=$(SEEDS) $(NB201) logger=none \
	    $(OWN_POOL) hydra.sweep.dir=results/own/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas.report results/own --out results/own/table.md --plot results/own/trajectory.png
	$(PY) -m hnas.efficiency results/own --out results/own/efficiency.md

clean:
	rm -rf $(VENV) build dist *.egg-info
