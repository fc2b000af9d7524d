"""The DARTS space end to end: +experiment=darts_cifar10 with HNAS, RoBoT and hybrid over a tiny sampled pool, real
(tiny) query training, the best genotype in DARTS's string format, and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from hnas.experiment.runner import run_experiment
from hnas.spaces import get_space
from hnas.store import Store

ROOT = Path(__file__).resolve().parents[1]
DARTS = get_space("darts")
TINY = ["+experiment=darts_cifar10", "data=synthetic", "+data.num_train=96", "+data.shape=[3,16,16]",
        "data.batch_size=16", "proxies.batch.size=16", "space.build.C=8", "space.build.layers=3", "pool.size=20",
        "strategy.budget=3", "evaluator.budget.max_epochs=null", "+evaluator.budget.max_steps=2",
        "evaluator.limit_val_batches=2", "trainer=cpu", "logger=none", "plot=false"]


def cfg(overrides: list[str]):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose("run", overrides=overrides)


def test_the_experiment_is_the_reference_query_training():
    c = cfg(["+experiment=darts_cifar10"])
    assert c.space.name == "darts" and c.pool.size == 60000 and c.strategy.name == "hnas"
    assert c.strategy.budget == 25 and c.strategy.options.acquisition == "ucb"
    assert list(c.strategy.options.c_bounds) == [-4.0, 1.0] and c.strategy.options.scale == 100.0
    assert c.data.batch_size == 576 and c.data.augment is False and c.data.valid_fraction == 0.5
    assert c.evaluator.budget.max_epochs == 10 and c.evaluator.gradient_clip_val == 5.0
    cand = c.evaluator.candidate
    assert (cand.lr, cand.lr_min, cand.momentum, cand.nesterov, cand.weight_decay, cand.drop_path) == (
        0.1, 0.005, 0.9, False, 3e-4, 0.2)
    assert cfg(["+experiment=darts_cifar10", "strategy=robot"]).strategy.budget == 25


@pytest.mark.parametrize(("budget", "ramp"), [({"max_steps": 10}, [0.0, 0.04, 0.08, 0.12, 0.16]),
                                              ({"max_epochs": 4}, [0.0, 0.05, 0.10, 0.15])])
def test_drop_path_ramps_over_the_epochs_of_a_step_or_an_epoch_budget(budget, ramp):
    """A query trained for ``max_steps`` (max_epochs unset) spans 5 epochs of 2 batches here: the ramp divides by
    those 5, where it once divided by 1 and asked the network for drop-path 1.0 at the fifth epoch."""
    import lightning as L
    import numpy as np
    import torch

    from hnas.training.candidate import CandidateModule

    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):  # after the module's epoch-start hook
            if batch_idx == 0:
                seen.append(module.net.drop_path_prob)

    module = CandidateModule(DARTS, DARTS.sample(np.random.default_rng(0)), num_classes=4, seed=0, drop_path=0.2,
                             build_kwargs={"C": 4, "layers": 3})
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 16, 16), torch.arange(8) % 4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Record()], **budget)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    assert seen == pytest.approx(ramp)


@pytest.mark.parametrize("strategy", ["hnas_darts", "robot", "hybrid"])
def test_tiny_darts_search_trains_its_queries_and_reports_a_genotype(tmp_path, strategy):
    r = run_experiment(cfg([*TINY, f"strategy={strategy}", f"store={tmp_path / 's.sqlite'}"]), tmp_path / "o")
    assert r["space"] == "darts" and r["n_evaluations"] == 3
    values = [h["value"] for h in r["history"]]
    assert all(0.0 <= v <= 100.0 for v in values) and r["best"]["value"] == max(values)
    assert r["best"]["arch"].startswith("Genotype(normal=[") and DARTS.format(DARTS.parse(r["best"]["arch"])) == (
        r["best"]["arch"])
    logged = Store(tmp_path / "s.sqlite").trials(r["run_id"])
    assert [t["info"]["source"] for t in logged] == ["training"] * 3 and all(t["info"]["steps"] == 2 for t in logged)


def test_darts_search_resumes_after_sigkill(tmp_path):
    store = tmp_path / "s.sqlite"
    over = [*TINY, "strategy.budget=4", f"store={store}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "-m", "hnas", "run", *over, "hydra.run.dir=" + str(tmp_path / "k")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    s = Store(store)
    deadline = time.time() + 300
    run_id = None
    while True:
        runs = [r for r in s.runs() if not r.startswith("import:")]
        if runs and len(s.trials(runs[0])) >= 2:
            run_id = runs[0]
            break
        if proc.poll() is not None:
            pytest.fail(f"the search ended before it was killed: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no 2 trials logged in 300 s")
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    k = len(s.trials(run_id))
    resumed = run_experiment(cfg(over), tmp_path / "r")
    assert resumed["run_id"] == run_id and resumed["replayed"] == k and resumed["n_evaluations"] == 4
    fresh = run_experiment(cfg([*TINY, "strategy.budget=4", f"store={tmp_path / 'fresh.sqlite'}"]), tmp_path / "f")
    # the same queries and accuracies (cost_s is measured wall time: it differs from run to run)
    assert [(h["arch"], h["value"]) for h in resumed["history"]] == [(h["arch"], h["value"]) for h in fresh["history"]]
    assert resumed["best"] == fresh["best"]
