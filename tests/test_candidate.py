"""CandidateModule and the evaluators: recipe, determinism, warm-up through Lightning, benchmark lookups."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from hnas.data import build_datamodule
from hnas.errors import ConfigError
from hnas.evaluators import Observation
from hnas.evaluators.table import TableEvaluator
from hnas.evaluators.training import TrainingEvaluator
from hnas.spaces import get_space
from hnas.training.candidate import CandidateModule, initialise

TINY = {"C": 4, "N": 1}
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_candidate_builds_from_string_or_index_and_reinit_is_deterministic():
    space = get_space("nb201")
    a = CandidateModule(space, CELL, num_classes=7, build_kwargs=TINY)
    b = CandidateModule("nb201", 6111, num_classes=7, build_kwargs=TINY)
    assert a.arch == b.arch and a.arch_str == CELL
    assert a(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    a.reinit(5)
    b.reinit(5)
    for (na, pa), (_, pb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert torch.equal(pa, pb), na
    b.reinit(6)
    w = [n for n, p in a.net.named_parameters() if p.dim() == 4][0]
    assert not torch.equal(a.net.state_dict()[w], b.net.state_dict()[w])


def test_candidate_rejects_bad_init_and_classes():
    with pytest.raises(ConfigError, match="unknown init scheme 'foo'; valid: default"):
        CandidateModule("nb201", 0, init="foo", build_kwargs=TINY)
    with pytest.raises(ConfigError, match="num_classes must be >= 2"):
        CandidateModule("nb201", 0, num_classes=1, build_kwargs=TINY)


def test_kaiming_fan_out_init_has_the_expected_std():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(400, 300))
    initialise(lin, "kaiming_fan_out")
    # kaiming normal, fan_out = 300, gain sqrt(2): std = sqrt(2/300)
    assert lin[0].weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.05)
    assert torch.all(lin[0].bias == 0)


def test_recipe_is_nesterov_sgd_with_per_step_cosine_to_zero():
    dm = build_datamodule("synthetic", num_train=64, num_test=16, batch_size=8, augment=False)
    module = CandidateModule("nb201", CELL, num_classes=dm.num_classes, build_kwargs=TINY, seed=0)
    lrs: list[float] = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[Spy()])
    trainer.fit(module, datamodule=dm)
    opt = trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs == pytest.approx(expected)


def test_training_evaluator_warms_up_and_measures_validation_accuracy():
    dm = build_datamodule("synthetic", num_train=128, num_test=32, batch_size=16, augment=False)
    ev = TrainingEvaluator(get_space("nb201"), dm, budget={"max_steps": 3}, trainer={"accelerator": "cpu"},
                           candidate={"build_kwargs": TINY})
    obs = ev.evaluate(CELL)
    assert isinstance(obs, Observation)
    assert 0.0 <= obs.value <= 100.0 and obs.cost_s > 0
    assert obs.info["steps"] == 3 and obs.info["source"] == "training"
    # the same seed gives the same answer
    assert ev.evaluate(CELL).value == obs.value


@pytest.mark.parametrize("budget,msg", [({"max_steps": 0}, r"evaluator.budget.max_steps=0 must be a number > 0"),
                                        ({"epochs": 1}, r"budget key\(s\) \['epochs'\]; valid: max_steps"),
                                        ({"max_steps": None}, "needs one of evaluator.budget.max_steps")])
def test_training_evaluator_rejects_bad_budgets(budget, msg):
    dm = build_datamodule("synthetic", num_train=32, num_test=8)
    with pytest.raises(ConfigError, match=msg):
        TrainingEvaluator(get_space("nb201"), dm, budget=budget)


def test_training_evaluator_reports_a_diverged_warm_up_as_nan_with_a_note():
    """lr 1e6 makes the loss non-finite: the observation is NaN with the reason, not a made-up accuracy."""
    dm = build_datamodule("synthetic", num_train=64, num_test=16, batch_size=16, augment=False)
    ev = TrainingEvaluator(get_space("nb201"), dm, budget={"max_steps": 4}, trainer={"accelerator": "cpu"},
                           candidate={"build_kwargs": TINY, "lr": 1e12})
    obs = ev.evaluate(CELL)
    assert math.isnan(obs.value) and not obs.finite
    assert "diverged" in obs.info["note"] and not math.isfinite(obs.info["train_loss"])


def test_benchmark_evaluator_reads_value_cost_and_test(shared_data):
    from hnas.benchmarks import load_benchmark

    space = get_space("nb201")
    ev = TableEvaluator(load_benchmark("nb201", shared_data / "nb201" / "nb201.csv"), space)
    obs = ev.evaluate(space.from_index(13714))
    assert obs.value == pytest.approx(84.892)
    assert obs.info["index"] == 13714
    assert obs.info["test"]["cifar10_test"] == pytest.approx(94.37, abs=0.01)
    assert 32 <= obs.cost_s <= 208
    assert ev.pool_optimum([space.from_index(i) for i in (13714, 6111, 0)], ["cifar10_test"]) == {
        "cifar10_test": pytest.approx(94.3733, abs=1e-4)}
    with pytest.raises(ConfigError, match=r"evaluator.metric='nope' is not a column .*; valid: cifar10_test"):
        TableEvaluator(ev.table, space, metric="nope")


@pytest.mark.slow
def test_best_cell_warms_up_past_35_percent_on_cifar10(shared_data):
    """Issue 2: the CIFAR-10-best cell (6111), 300 steps at batch 64, > 35 % validation accuracy."""
    torch.set_num_threads(2)
    dm = build_datamodule("imagefolder", root=str(shared_data / "cifar10"), batch_size=64)
    ev = TrainingEvaluator(get_space("nb201"), dm, budget={"max_steps": 300}, trainer={"accelerator": "cpu"},
                           limit_val_batches=40)
    obs = ev.evaluate(6111)
    print(f"\n6111 after 300 steps: val acc {obs.value:.2f} % on {40 * 64} images, {obs.cost_s:.0f} s")
    assert obs.value > 35.0


class RankRecorder(L.Callback):
    """Each training process writes its pid, rank and final-weight digest to a file of its own."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        import json
        import os

        from hnas.evaluators.training import weights_digest

        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"pid": os.getpid(), "rank": trainer.global_rank, "weights": weights_digest(pl_module),
                       "parameters": weights_digest(pl_module, parameters_only=True)}, f)


def test_ddp_spawn_warm_up_runs_two_processes_and_returns_their_trained_weights(tmp_path):
    """trainer=ddp_sim's path: 2 spawned CPU processes (gloo) train; the weights validated in this process are
    the ones both ranks ended with (and not the initial ones)."""
    import json
    import os

    dm = build_datamodule("synthetic", num_train=64, num_test=16, batch_size=8, augment=False)
    trainer = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn", "callbacks": [RankRecorder(str(tmp_path))]}
    ev = TrainingEvaluator(get_space("nb201"), dm, budget={"max_steps": 2}, trainer=trainer,
                           candidate={"build_kwargs": TINY}, limit_val_batches=2)
    obs = ev.evaluate(CELL)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len({r["pid"] for r in ranks} | {os.getpid()}) == 3  # two spawned processes, neither is this one
    assert ranks[0]["parameters"] == ranks[1]["parameters"]  # one synchronised model
    assert ranks[0]["weights"] == obs.info["weights"]  # rank 0's trained state is what this process validated
    assert obs.info["steps"] == 2
    from hnas.evaluators.training import weights_digest

    untrained = CandidateModule(get_space("nb201"), CELL, num_classes=dm.num_classes, seed=0, build_kwargs=TINY)
    assert weights_digest(untrained) != obs.info["weights"] and obs.info["world_size"] == 2
