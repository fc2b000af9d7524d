"""NAFBee with RBFleX: evaluator adapter, Kendall against the real table, ranking, +experiment=nafbee."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from hnas.analysis.correlation import kendall_tau_b as kendall_tau
from hnas.benchmarks import load_benchmark
from hnas.cli.nafbee_ranking import nafbee_ranking, ranking_from_config, ranking_markdown
from hnas.data import build_datamodule
from hnas.errors import ConfigError
from hnas.evaluators.table import TableEvaluator
from hnas.proxies.rbflex import detect_gammas
from hnas.proxies.runtime import score_network
from hnas.proxies.settings import ScoringSettings
from hnas.spaces import get_space

SPACE = get_space("nafbee")
TINY = {"width_mult": 0.0625}
SETTINGS = ScoringSettings(batch_size=16, batch_seed=0)


@pytest.fixture(scope="module")
def table(shared_data):
    return load_benchmark("nafbee", shared_data / "nafbee" / "nafbee.csv")


@pytest.fixture(scope="module")
def dm():
    return build_datamodule("synthetic", num_train=64, num_test=0, shape=(3, 32, 32), batch_size=8)


def test_kendall_tau_b_hand_computed_with_ties():
    # pairs (1,2): tie in truth; (1,3), (2,3): concordant -> (2 - 0) / sqrt(3 * 2)
    assert kendall_tau([1.0, 2.0, 3.0], [1.0, 1.0, 2.0]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx(-1.0)
    assert kendall_tau([1.0, float("nan"), 2.0], [1.0, 5.0, 2.0]) == pytest.approx(1.0)


def test_kendall_against_the_real_table(table):
    names = table.activations()
    acc = [table.accuracy(a) for a in names]
    assert kendall_tau(acc, acc) == pytest.approx(1.0)  # tau-b: the GELU/SiLU tie is in both lists
    # swap ReLU (best, 91.06) and SELU (worst, 85.83): 19 of the 54 untied pairs become discordant
    swapped = [table.accuracy("SELU") if a == "ReLU" else table.accuracy("ReLU") if a == "SELU" else v
               for a, v in zip(names, acc)]
    n0, ties = 55, 1
    assert kendall_tau(swapped, acc) == pytest.approx((54 - 2 * 19) / math.sqrt((n0 - ties) * (n0 - ties)))


def test_evaluator_answers_from_the_table(table):
    ev = TableEvaluator(table, SPACE, metric="vgg19_cifar10_acc", cost=None, test_metrics=["vgg19_cifar10_acc"])
    obs = ev.evaluate(("GELU",))
    assert obs.value == 91.03 and obs.cost_s == 0.0 and obs.info["test"] == {"vgg19_cifar10_acc": 91.03}
    assert ev.pool_optimum([("SELU",), ("Mish",)], ["vgg19_cifar10_acc"]) == {"vgg19_cifar10_acc": 90.54}
    with pytest.raises(ConfigError, match="evaluator.metric='top1' is not a column of the benchmark table .*; "
                                          "valid: vgg19_cifar10_acc, bert_sst2_acc"):
        TableEvaluator(table, SPACE, metric="top1", cost=None)


def test_ranking_tiny_vgg_hda_over_the_variants(table, dm, tmp_path):
    from hnas.store import Store

    r = nafbee_ranking(SPACE, dm, table, SETTINGS, TINY, store=Store(tmp_path / "s.sqlite"))
    batch = dm.scoring_batch(16, 0)
    nets = []
    for a in SPACE.enumerate():
        torch.manual_seed(0)
        nets.append(SPACE.build(a, **TINY))
    gk, gq = detect_gammas(nets, batch.x[:16], positive_only=True)  # rbflex's default N
    assert (r["gammas"]["gamma_k"], r["gammas"]["gamma_q"]) == pytest.approx((gk, gq), rel=1e-12)
    scores = {}
    for a, net in zip(SPACE.enumerate(), nets):
        s = score_network(net, ["rbflex"], batch.x, batch.y, 10, options={"rbflex": {"gamma_k": gk, "gamma_q": gq}})
        scores[a[0]] = s["rbflex"].value
    rows = r["rows"]
    assert len(rows) == 11 and [x["rank"] for x in rows] == list(range(1, 12))
    assert [x["rbflex"] for x in rows] == pytest.approx(sorted(scores.values(), reverse=True), rel=1e-9)
    for x in rows:
        assert x["accuracy"] == table.accuracy(x["activation"])
        assert x["rbflex"] == pytest.approx(scores[x["activation"]], rel=1e-9)
    assert r["kendall"] == pytest.approx(kendall_tau([x["rbflex"] for x in rows], [x["accuracy"] for x in rows]))
    assert r["top"] == rows[0]["activation"] and r["truth_best"] == "ReLU"
    assert r["best_is_first"] == (rows[0]["activation"] == "ReLU")
    assert {x["truth_rank"] for x in rows if x["activation"] == "ReLU"} == {1}
    text = ranking_markdown(r)
    assert f"Kendall tau-b vs vgg19_cifar10_acc: {r['kendall']:.3f}" in text and "ground-truth best: ReLU" in text


def _cfg(overrides):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose("run", overrides=["+experiment=nafbee", *overrides])


def test_experiment_nafbee_queries_the_rbflex_argmax(shared_data, monkeypatch, tmp_path):
    from hnas.experiment.runner import run_experiment as run

    over = ["data=synthetic", "+data.num_train=64", "proxies.batch.size=16", "+space.build.width_mult=0.0625",
            f"benchmark.path={shared_data / 'nafbee' / 'nafbee.csv'}", f"store={tmp_path / 's.sqlite'}",
            "logger=none", "plot=false"]
    res = run(_cfg(over), tmp_path / "o")
    ranking = ranking_from_config(_cfg(over))
    assert res["n_evaluations"] == 1 and res["history"][0]["arch"] == ranking["top"]
    assert res["best"]["test"] == {"vgg19_cifar10_acc": ranking["rows"][0]["accuracy"]}
    assert res["pool"]["optimum"] == {"vgg19_cifar10_acc": 91.06} and res["pool"]["size"] == 11


def test_ranking_needs_the_nafbee_space():
    cfg = _cfg(["space=nb201"])
    with pytest.raises(ConfigError, match="the NAFBee ranking needs space=nafbee, got space='nb201'"):
        ranking_from_config(cfg)
    assert np.isnan(kendall_tau([1.0], [2.0]))
