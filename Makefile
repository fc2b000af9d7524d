# hnas — the two commands: `make run` (the main job) and `make test` (the test suite).
# On machines that must keep a particular torch build, export PIP_CONSTRAINT=<file> (pip honours it);
# .ci/run does this to keep the local CPU wheel torch==2.13.0.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-all lint clean install install-dev paper-table own-scores own-table bench-parallel \
	parallel-quality hybrid-ablation

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
	$(PY) -m hnas run +experiment=cifar10 $(ARGS)

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
# T = 20 (RoBoT and hybrid also as T = 5 and 10 runs: RoBoT plans around its budget); HNAS with M = kappa =
# grad_norm (Suite-Zero has no NTK columns); efficiency.md: test accuracy after 5/10/20 queries and queries to the
# best value.
PAPER_ARGS = $(NB201) logger=none proxies=suite_zero_$$zc proxies.import_path=$(SHARED)/nb201/suite_zero_$$zc.csv \
	pool=table pool.path=$(SHARED)/nb201/suite_zero_$$zc.csv
paper-table: $(VENV)/.installed
	for ds in cifar10 cifar100 imagenet16; do zc=$$( [ $$ds = imagenet16 ] && echo imagenet16 || echo cifar10 ); \
	  for T in 5 10; do for st in robot hybrid; do \
	  $(PY) -m hnas run -m +experiment=nb201_$$ds strategy=$$st strategy.budget=$$T seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/paper-$$st-T$$T/nb201_$$ds || exit 1; done; done; \
	  for st in hybrid robot rea random hnas; do \
	  extra=$$( [ $$st = hnas ] && echo strategy.options.metric=grad_norm strategy.options.cond=grad_norm ); \
	  $(PY) -m hnas run -m +experiment=nb201_$$ds strategy=$$st $$extra seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/paper/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas report results/paper --out results/paper/table.md --plot results/paper/trajectory.png
	$(PY) -m hnas efficiency results/paper results/paper-robot-T5 results/paper-robot-T10 results/paper-hybrid-T5 \
	  results/paper-hybrid-T10 --out results/paper/efficiency_all.md

# Each ingredient of strategy=hybrid switched off in turn (issue 13's ablation), same pool and seeds as paper-table;
# CIFAR-10 and ImageNet16-120 (CIFAR-100 repeats CIFAR-10's search: same pool, scores and queried values)
HYBRID_ABLATIONS ?= normalisation=rank prior=false,local_rank=gp local=false switch=local_first switch=global_first \
	local_rank=gp first=random encoding=false
hybrid-ablation: $(VENV)/.installed
	for ds in cifar10 imagenet16; do zc=$$( [ $$ds = imagenet16 ] && echo imagenet16 || echo cifar10 ); \
	  for v in $(HYBRID_ABLATIONS); do over=$$(echo $$v | tr ',' '\n' | sed 's/^/strategy.options./' | tr '\n' ' '); \
	  $(PY) -m hnas run -m +experiment=nb201_$$ds strategy=hybrid $$over seed=$(SEEDS) $(PAPER_ARGS) \
	    hydra.sweep.dir=results/ablation/$$(echo $$v | tr ',=' '_-')/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas efficiency results/paper/nb201_cifar10 results/paper/nb201_imagenet16 results/ablation \
	  --out results/ablation/efficiency.md

# Every strategy on the 1,000-arch pool (pool.seed=0) with the proxy library's own CIFAR-10 scores (one fixed
# 64-image batch of the CIFAR-10 training split, as HNAS/RoBoT use CIFAR-10 metrics for every target), T = 20.
# own-scores computes the pool's scores first (cached in the store: instant once done).
OWN_POOL := pool.size=1000 pool.seed=0 data=imagefolder data.root=$(SHARED)/cifar10
OWN_PROXIES := [grad_norm,snip,grasp,fisher,synflow,jacob_cov,naswot,params,flops,ntk_trace,ntk_cond]
TF_PROXY ?= synflow
own-scores: $(VENV)/.installed
	@echo "own-scores: scoring the 1,000-architecture pool with $(OWN_PROXIES) (40-60 min on 2 CPU cores the"
	@echo "            first time; scores already in the store are not computed again)"
	$(PY) -m hnas score $(OWN_POOL) proxies.names=$(OWN_PROXIES) $(NB201)

own-table: own-scores
	for ds in cifar10 cifar100 imagenet16; do \
	  for st in hybrid robot hnas rea random training_free; do \
	  extra=$$( [ $$st = training_free ] && echo strategy.options.proxy=$(TF_PROXY) ); \
	  $(PY) -m hnas run -m +experiment=nb201_$$ds strategy=$$st $$extra seed=$(SEEDS) $(NB201) logger=none \
	    $(OWN_POOL) hydra.sweep.dir=results/own/nb201_$$ds || exit 1; done; \
	  for T in 5 10; do \
	  $(PY) -m hnas run -m +experiment=nb201_$$ds strategy=hybrid strategy.budget=$$T seed=$(SEEDS) $(NB201) \
	    logger=none $(OWN_POOL) hydra.sweep.dir=results/own-hybrid-T$$T/nb201_$$ds || exit 1; done; done
	$(PY) -m hnas report results/own --out results/own/table.md --plot results/own/trajectory.png
	$(PY) -m hnas efficiency results/own results/own-hybrid-T5 results/own-hybrid-T10 --out results/own/efficiency.md

# --- parallel evaluation (docs/results.md, "Parallel evaluation (issue 12)") -----------------------------------
# Wall-time speedup of q = 2, 4, 8 over q = 1 (random search, T = 20, each query sleeping 0.5 s on average).
bench-parallel: $(VENV)/.installed
	$(PY) -m hnas bench-parallel --benchmark $(SHARED)/nb201/nb201.csv --q 1,2,4,8 --mode sync
	$(PY) -m hnas bench-parallel --benchmark $(SHARED)/nb201/nb201.csv --q 1,2,4,8 --mode async

# Quality of q = 4 vs q = 1 (synchronous batches) for RoBoT and HNAS on the 9,445-arch Suite-Zero pool, T = 20.
# Suite-Zero has no NTK columns: HNAS runs its rule with M = grad_norm and kappa = M (a constant kappa/M term).
# The inline executor evaluates a batch in the driver: a synchronous result does not depend on the executor.
parallel-quality: $(VENV)/.installed
	for q in 1 4; do for st in robot hnas; do \
	  extra=$$( [ $$st = hnas ] && echo strategy.options.metric=grad_norm strategy.options.cond=grad_norm ); \
	  $(PY) -m hnas run -m +experiment=nb201_cifar10 strategy=$$st $$extra seed=$(SEEDS) $(NB201) logger=none \
	    proxies=suite_zero_cifar10 proxies.import_path=$(SHARED)/nb201/suite_zero_cifar10.csv \
	    pool=table pool.path=$(SHARED)/nb201/suite_zero_cifar10.csv search.parallel=$$q search.executor=inline \
	    hydra.sweep.dir=results/parallel/q$$q || exit 1; done; done
	for q in 1 4; do $(PY) -m hnas report results/parallel/q$$q --out results/parallel/q$$q/table.md || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info
