"""The main job talks and is sized by the hardware: profiles, one line per query and per warm-up epoch, each
Lightning message once, the table's accuracies as a reference beside real training, W&B images and artifact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import wandb_log_bytes
from test_run import _cfg, write_fake_nb201

from hnas.experiment.build import hardware_profile
from hnas.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["evaluator=train", "evaluator.budget.max_steps=2", "evaluator.limit_val_batches=2", "data=synthetic",
         "data.batch_size=8", "space.build.C=4", "space.build.N=1", "trainer=cpu"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_fake_nb201(tmp_path_factory.mktemp("bench") / "nb201.csv")


def test_the_main_job_takes_the_recipe_of_the_hardware_and_an_explicit_key_wins():
    cpu = _cfg("run", ["+experiment=cifar10", "profile=cpu"])
    assert (cpu.pool.size, cpu.strategy.budget, cpu.data.batch_size, cpu.trainer.accelerator) == (100, 6, 64, "cpu")
    assert (cpu.evaluator.budget.max_steps, cpu.evaluator.budget.max_epochs, cpu.evaluator.limit_val_batches) == (
        60, None, 16)
    gpu = _cfg("run", ["+experiment=cifar10", "profile=gpu"])
    assert (gpu.pool.size, gpu.strategy.budget, gpu.data.batch_size, gpu.evaluator.budget.max_epochs) == (
        1000, 20, 256, 12)
    auto = _cfg("run", ["+experiment=cifar10", "pool.size=7"])
    expected = gpu if hardware_profile("auto") == "gpu" else cpu
    assert auto.pool.size == 7 and auto.strategy.budget == expected.strategy.budget
    assert auto.trainer.accelerator == expected.trainer.accelerator


def test_real_training_queries_carry_the_tables_accuracy_as_a_reference(table, tmp_path):
    over = ["strategy=random", "strategy.budget=2", *TRAIN, f"benchmark.path={table}",
            "+evaluator.reference_metrics=[cifar10_test,cifar100_test]", f"store={tmp_path / 's.sqlite'}",
            "logger=csv"]
    r = run_experiment(_cfg("run", over), tmp_path / "o")
    frame = pd.read_csv(table).set_index("arch")
    for h in r["history"]:
        assert h["reference"] == {m: pytest.approx(frame.loc[h["arch"], m]) for m in ("cifar10_test", "cifar100_test")}
        assert "test" not in h  # the observation itself is the trained accuracy, not the table's
    assert r["best"]["reference"]["cifar10_test"] == pytest.approx(frame.loc[r["best"]["arch"], "cifar10_test"])
    rows = pd.read_csv(tmp_path / "o" / "architectures.csv")
    assert list(rows["reference/cifar10_test"]) == pytest.approx([h["reference"]["cifar10_test"] for h in r["history"]])
    # the main job's table is optional: no file, no reference, no error
    r2 = run_experiment(_cfg("run", [*over[:-1], "benchmark.path=absent.csv", "+benchmark.optional=true",
                                     "logger=none"]), tmp_path / "o2")
    assert "reference" not in r2["best"] and all("reference" not in h for h in r2["history"])


def test_wandb_run_gets_the_plots_and_the_best_architecture_artifact(table, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    over = ["+experiment=nb201_cifar10", "strategy=training_free", "strategy.options.proxy=params", "strategy.budget=3",
            "data=synthetic", "pool.size=6", "proxies.batch.size=8", "space.build.C=4", "space.build.N=1",
            f"benchmark.path={table}", f"store={tmp_path / 's.sqlite'}", "logger=wandb"]
    r = run_experiment(_cfg("run", over), tmp_path / "o")
    run_dir = next((tmp_path / "o" / "wandb").glob("offline-run-*"))
    images = sorted(p.name for p in (run_dir / "files" / "media" / "images").rglob("*.png"))
    assert any(n.startswith("trajectory_") for n in images) and any(n.startswith("proxies_vs_value_") for n in images)
    wanted = [f"best-{r['run_id']}".encode(), b"architecture"]
    log = wandb_log_bytes("*.wandb", run_dir, wanted)
    assert all(w in log for w in wanted)


def test_a_training_search_prints_one_line_per_query_and_epoch_and_each_lightning_message_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    argv = [sys.executable, "-m", "hnas", "run", "strategy=training_free", "strategy.options.proxy=params",
            "strategy.budget=2", "pool.size=4", "proxies.batch.size=8", *TRAIN, "benchmark=none", "store=s.sqlite",
            "logger=none"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("GPU available:") == 1 and "Tip:" not in out + proc.stderr
    assert out.count("warm-up epoch 1  steps 2  train loss") == 2, out
    assert "query 1/2 " in out and "query 2/2 " in out and "left 1 queries" in out
    assert "scoring:" in proc.stderr  # the pool's scoring bar
    lines = [line.split("] - ", 1)[-1] for line in out.splitlines()]
    assert not any(a == b for a, b in zip(lines, lines[1:]))  # nothing printed twice in a row


def test_the_step_line_counts_to_the_step_budget_not_to_the_end_of_the_epoch(caplog):
    """A warm-up of max_steps=25 over a 40-batch epoch says 'step 10/25', not 'step 10/40' with an epoch end
    that never comes (the CPU recipe's 60 steps of a 391-step epoch)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hnas.training.progress import EpochLog

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.lin(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(80, 4), torch.randint(0, 2, (80,))), batch_size=2)
    trainer = L.Trainer(max_steps=25, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[EpochLog(every=10)])
    with caplog.at_level("INFO", logger="hnas.training"):
        trainer.fit(Tiny(), data)
    steps = [r.getMessage().split("  ")[1] for r in caplog.records if "s/step" in r.getMessage()]
    assert steps == ["step 10/25", "step 20/25"]
