"""NATS size space end to end: proxies on its networks, and random / rbflex / robot / hybrid with the training
evaluator."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from hnas.proxies.runtime import score_network
from hnas.spaces import get_space

SSS = get_space("nats_sss")
DATA_FREE = ["params", "flops", "synflow", "l2_norm"]


def _scores(arch: str, x: torch.Tensor, proxies: list[str]) -> dict[str, float]:
    torch.manual_seed(0)
    net = SSS.build(arch)
    y = torch.arange(x.shape[0]) % 10
    out = score_network(net, proxies, x, y, 10)
    assert all(s.ok for s in out.values()), {k: (s.status, s.message) for k, s in out.items()}
    return {k: s.value for k, s in out.items()}


def test_data_free_proxies_ignore_the_images_and_grow_with_width():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 3, 16, 16, generator=g)
    small = _scores("8:8:8:8:8", x1, [*DATA_FREE, "naswot"])
    again = _scores("8:8:8:8:8", x2, [*DATA_FREE, "naswot"])
    for p in DATA_FREE:
        assert again[p] == pytest.approx(small[p], rel=1e-6), p
    assert again["naswot"] != pytest.approx(small["naswot"], rel=1e-9)  # a data-dependent proxy does change
    torch.manual_seed(0)
    assert small["params"] == pytest.approx(sum(p.numel() for p in SSS.build("8:8:8:8:8").parameters()) / 1e6)
    chain = ["8:8:8:8:8", "8:8:8:8:16", "8:16:16:16:16", "64:64:64:64:64"]
    params = [_scores(a, x1, ["params", "flops"]) for a in chain]
    assert all(a["params"] < b["params"] for a, b in zip(params, params[1:]))
    assert all(a["flops"] < b["flops"] for a, b in zip(params, params[1:]))


def test_rbflex_and_labelled_proxies_score_nats_networks():
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))  # rbflex's default N = 16
    s = _scores("16:8:24:32:8", x, ["rbflex", "grad_norm", "snip", "synflow"])
    assert set(s) == {"rbflex", "grad_norm", "snip", "synflow"}


def _cfg(overrides):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose("run", overrides=["+experiment=nats_sss", *overrides])


TINY_RUN = ["data=synthetic", "+data.num_train=64", "+data.shape=[3,16,16]", "data.batch_size=8", "trainer=cpu",
            "pool.size=4", "strategy.budget=2", "evaluator.budget.max_steps=2", "evaluator.limit_val_batches=1",
            "proxies.batch.size=16", "logger=csv", "plot=false"]


@pytest.mark.parametrize("strategy,extra", [
    ("random", []),
    ("rbflex", ["strategy.options.gammas=fixed", "+proxies.options.rbflex={gamma_k:0.001,gamma_q:0.01}"]),
    ("robot", []),
    ("hybrid", []),
])
def test_strategies_run_with_the_training_evaluator(strategy, extra, tmp_path):
    from hnas.experiment.runner import run_experiment as run

    cfg = _cfg([*TINY_RUN, f"strategy={strategy}", *extra, f"store={tmp_path / 's.sqlite'}"])
    assert cfg.space.name == "nats_sss" and cfg.evaluator.kind == "train" and not cfg.benchmark.name
    r = run(cfg, tmp_path / "out")
    assert r["space"] == "nats_sss" and r["strategy"] == strategy and r["n_evaluations"] == 2
    for h in r["history"]:
        SSS.parse(h["arch"])  # a valid width plan
        assert 0.0 <= h["value"] <= 100.0 and h["cost_s"] > 0 and "test" not in h
    assert r["best"]["test"] is None and r["target"] is None  # no tabular ground truth: no test accuracy
    assert len(pd.read_csv(tmp_path / "out" / "architectures.csv")) == 2
