"""RBFleX-NAS search: the ask/tell strategy, HDA wiring, and the multi-trial protocol (tiny NB201 nets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from hnas.cli.rbflex_protocol import markdown_row, rbflex_protocol, run_protocol, trial_archs, with_rbflex_strategy
from hnas.data import build_datamodule
from hnas.errors import ConfigError
from hnas.evaluators import Observation
from hnas.experiment.build import Parts
from hnas.experiment.runner import run_experiment as run
from hnas.proxies.rbflex import detect_gammas
from hnas.proxies.runtime import score_network
from hnas.proxies.settings import ScoringSettings
from hnas.search import CandidatePool, PoolError, StrategyError, make_strategy
from hnas.search.rbflex import hda_archs, hda_for_scoring
from hnas.spaces import get_space
from hnas.store import Store

NB201 = get_space("nb201")
TINY = {"C": 4, "N": 1}


@pytest.fixture(scope="module")
def fake_nb201(tmp_path_factory) -> Path:
    """Every NB201 arch with fake, structured accuracies (a fresh clone has no ../shared)."""
    archs = list(NB201.enumerate())
    rng = np.random.default_rng(1)
    base = 60 + rng.normal(0, 3, len(archs))
    df = pd.DataFrame({"index": range(len(archs)), "arch": [NB201.format(a) for a in archs],
                       "cifar10_test": base + 20, "cifar100_test": base, "imagenet16_test": base - 20,
                       "cifar10_valid_12ep": base + 10, "cost_12ep_s": np.full(len(archs), 5.0)})
    path = tmp_path_factory.mktemp("bench") / "nb201.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def dm():
    return build_datamodule("synthetic", num_train=64, num_test=0, shape=(3, 16, 16), batch_size=8)


SETTINGS = ScoringSettings(batch_size=16, batch_seed=0)


def _pool(scores: list[float]) -> CandidatePool:
    archs = NB201.sample_many(len(scores), np.random.default_rng(0))
    return CandidatePool(archs, [NB201.format(a) for a in archs], {"rbflex": np.array(scores)}, {})


# ---------------------------------------------------------------- strategy
def test_strategy_asks_the_argmax_first_then_down_the_ranking_nan_last():
    pool = _pool([1.0, 5.0, math.nan, 5.0, -2.0, 3.0])
    s = make_strategy("rbflex", NB201, pool, budget=6, gammas="fixed")
    asked = []
    for _ in range(6):
        a = s.ask()
        asked.append(pool.spellings.index(NB201.format(a)))
        s.tell(a, Observation(float(len(asked)), 0.0))
    assert asked == [1, 3, 5, 0, 4, 2]  # ties keep pool order, NaN (failed score) last
    assert s.done
    assert [k for k, _ in s.ranking()][:2] == [pool.spellings[1], pool.spellings[3]]


@pytest.mark.parametrize("options,message", [
    ({"gammas": "hda"}, "rbflex gammas=hda but no detected γ's were given"),
    ({"gammas": "median"}, "rbflex gammas='median' is not one of: hda, fixed"),
    ({"gammas": "fixed", "gamma_k": 1.0}, "give both rbflex gamma_k and gamma_q or neither"),
    ({"gammas": "fixed", "gamma_k": -1.0, "gamma_q": 1.0}, "rbflex gamma_k must be a positive number, got -1.0"),
    ({"gammas": "fixed", "hda_from": "all"}, "rbflex hda_from='all' is not one of: sample, pool"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(StrategyError, match=message):
        make_strategy("rbflex", NB201, _pool([1.0, 2.0]), budget=1, **options)


def test_pool_without_rbflex_scores_is_refused():
    archs = NB201.sample_many(2, np.random.default_rng(0))
    pool = CandidatePool(archs, [NB201.format(a) for a in archs], {"snip": np.ones(2)}, {})
    with pytest.raises(PoolError, match=r"'rbflex' needs proxy scores \['rbflex'\] but the pool has \['snip'\]"):
        make_strategy("rbflex", NB201, pool, budget=1, gammas="fixed")


# ---------------------------------------------------------------- protocol
def test_protocol_argmax_per_trial_with_reset_test_accuracy_and_hda(dm, fake_nb201, tmp_path):
    from hnas.benchmarks import load_benchmark

    bench = load_benchmark("nb201", fake_nb201)
    store = Store(tmp_path / "s.sqlite")
    metrics = ["cifar10_test", "cifar100_test", "imagenet16_test"]
    r = rbflex_protocol(NB201, dm, store, SETTINGS, TINY, n_archs=5, trials=2, seed=3, n_gamma=3, benchmark=bench,
                        test_metrics=metrics, target="cifar100_test", progress=False)
    batch = dm.scoring_batch(16, 0)
    # HDA: the γ's detect_gammas gives on the same 3 sampled networks (init seed 0) and first 3 images
    nets = []
    for a in hda_archs(NB201, 3, 3):
        torch.manual_seed(0)
        nets.append(NB201.build(a, num_classes=10, **TINY))
    gk, gq = detect_gammas(nets, batch.x[:16])  # rbflex default N = 16
    assert r["gammas"]["gamma_k"] == pytest.approx(gk, rel=1e-12)
    assert r["gammas"]["gamma_q"] == pytest.approx(gq, rel=1e-12)
    assert r["gammas"]["hda"]["archs"] == [NB201.format(a) for a in hda_archs(NB201, 3, 3)]
    # each trial: its own sample, its own argmax (reset), recomputed here from scratch
    samples = trial_archs(NB201, 5, 2, 3)
    for t, archs in enumerate(samples):
        vals = []
        for a in archs:
            torch.manual_seed(0)
            net = NB201.build(a, num_classes=10, **TINY)
            sc = score_network(net, ["rbflex"], batch.x, batch.y, 10, options={"rbflex": {"gamma_k": gk,
                                                                                            "gamma_q": gq}})
            vals.append(sc["rbflex"].value if sc["rbflex"].ok else -math.inf)  # e.g. input-independent nets
        row = r["trials_detail"][t]
        assert row["n_failed"] == sum(v == -math.inf for v in vals)
        assert row["arch"] == NB201.format(archs[int(np.argmax(vals))])
        assert row["rbflex"] == pytest.approx(max(vals), rel=1e-9)
        for m in metrics:
            assert row["test"][m] == pytest.approx(bench.value(row["arch"], m))
    for m in metrics:
        accs = [row["test"][m] for row in r["trials_detail"]]
        assert r["test"][m]["mean"] == pytest.approx(np.mean(accs))
        assert r["test"][m]["std"] == pytest.approx(np.std(accs))
    assert r["target"] == "cifar100_test" and "cifar100_test" in markdown_row(r)
    # the second run reads every score from the store: nothing is built
    built = []
    orig = NB201.build

    def counting_build(*a, **k):
        built.append(a[0])
        return orig(*a, **k)

    NB201.build = counting_build
    try:
        again = rbflex_protocol(NB201, dm, store, SETTINGS, TINY, n_archs=5, trials=2, seed=3, gammas="fixed",
                                gamma_k=gk, gamma_q=gq, benchmark=bench, test_metrics=metrics, progress=False)
    finally:
        NB201.build = orig
    assert built == []
    assert [x["arch"] for x in again["trials_detail"]] == [x["arch"] for x in r["trials_detail"]]


def test_hda_for_scoring_hooks_the_rule_of_the_rbflex_option(dm):
    batch = dm.scoring_batch(16, 0)
    nets = []
    for a in hda_archs(NB201, 2, 5):
        torch.manual_seed(0)
        nets.append(NB201.build(a, num_classes=10, **TINY))
    found = {}
    for hooks in ("reference", "activations"):
        settings = ScoringSettings(batch_size=16, batch_seed=0, options={"rbflex": {"n_images": 4, "hooks": hooks}})
        res = hda_for_scoring(NB201, dm, settings, TINY, n_gamma=2, seed=5)
        gk, gq = detect_gammas(nets, batch.x[:4], hooks=hooks)
        assert (res.gamma_k, res.gamma_q) == pytest.approx((gk, gq), rel=1e-12)
        assert res.hooks == hooks and res.as_dict()["hooks"] == hooks
        found[hooks] = res.gamma_k
    assert found["reference"] != pytest.approx(found["activations"], rel=1e-3)  # ReLUConvBN outputs count


def test_trial_samples_are_distinct_uniform_draws_and_sizes_are_checked():
    s = trial_archs(NB201, 20, 3, 0)
    assert [len({NB201.format(a) for a in t}) for t in s] == [20, 20, 20]
    assert s[0] != s[1]
    with pytest.raises(ConfigError, match="strategy.protocol.trials must be a positive integer, got 0"):
        trial_archs(NB201, 5, 0, 0)


def test_protocol_on_nats_size_space_reports_no_accuracy(dm, tmp_path):
    sss = get_space("nats_sss")
    r = rbflex_protocol(sss, dm, Store(tmp_path / "s.sqlite"), SETTINGS, {}, n_archs=3, trials=2, n_gamma=2,
                        progress=False)
    assert r["test"] is None and "no tabular ground truth for space 'nats_sss'" in r["note"]
    assert all(":" in row["arch"] and "test" not in row for row in r["trials_detail"])
    assert "n/a (no ground truth)" in markdown_row(r)


def _cfg(overrides: list[str]):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose("run", overrides=overrides)


def test_command_writes_json_and_markdown(fake_nb201, tmp_path):
    cfg = _cfg(["+experiment=nb201_cifar10", "strategy=rbflex", "strategy.protocol.trials=2",
                "strategy.protocol.n_archs=4", "strategy.options.n_gamma=2", "data=synthetic",
                "+data.num_train=64", "+data.shape=[3,16,16]", "proxies.batch.size=16", "space.build.C=4",
                "space.build.N=1", f"benchmark.path={fake_nb201}", f"store={tmp_path / 's.sqlite'}"])
    r = run_protocol(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "rbflex_protocol.json").read_text())
    assert saved["trials"] == 2 and saved["n_archs"] == 4 and saved["target"] == "cifar10_test"
    assert saved["test"]["cifar10_test"]["mean"] == pytest.approx(r["test"]["cifar10_test"]["mean"])
    md = (tmp_path / "out" / "rbflex_protocol.md").read_text().splitlines()
    assert md[0].startswith("| space |") and md[2] == markdown_row(r)
    assert with_rbflex_strategy(["x", "a=1"]) == ["x", "strategy=rbflex", "a=1"]
    assert with_rbflex_strategy(["x", "strategy=random"]) == ["x", "strategy=random"]


# ---------------------------------------------------------------- hnas.run (strategy=rbflex)
RUN = ["+experiment=nb201_cifar10", "strategy=rbflex", "strategy.budget=3", "pool.size=6", "data=synthetic",
       "+data.num_train=64", "+data.shape=[3,16,16]", "proxies.batch.size=16", "space.build.C=4",
       "space.build.N=1", "logger=none", "plot=false"]


def rbflex_scores(parts: Parts, gamma_k: float, gamma_q: float) -> np.ndarray:
    """Every pool network's rbflex score at these γ's, computed here without the run's machinery."""
    batch = parts.datamodule.scoring_batch(16, 0)
    out = []
    for a in parts.archs:
        torch.manual_seed(0)
        net = NB201.build(a, num_classes=10, **TINY)
        s = score_network(net, ["rbflex"], batch.x, batch.y, 10, options={"rbflex": {"gamma_k": gamma_k,
                                                                                      "gamma_q": gamma_q}})
        out.append(s["rbflex"].value if s["rbflex"].ok else np.nan)
    return np.array(out)


def test_run_with_hda_queries_the_rbflex_ranking(fake_nb201, tmp_path):
    cfg = _cfg([*RUN, "strategy.options.n_gamma=2", f"benchmark.path={fake_nb201}",
                f"store={tmp_path / 's.sqlite'}"])
    parts = Parts(cfg, tmp_path / "o")
    # the γ's are HDA's on 2 networks sampled with the run seed, and the pool was scored with them
    nets = []
    for a in hda_archs(NB201, 2, 0):
        torch.manual_seed(0)
        nets.append(NB201.build(a, num_classes=10, **TINY))
    gk, gq = detect_gammas(nets, parts.datamodule.scoring_batch(16, 0).x[:16])
    r = run(cfg, tmp_path / "o")
    assert (r["strategy_info"]["gamma_k"], r["strategy_info"]["gamma_q"]) == pytest.approx((gk, gq), rel=1e-12)
    order = np.argsort(-rbflex_scores(parts, gk, gq), kind="stable")
    assert [h["arch"] for h in r["history"]] == [NB201.format(parts.archs[int(i)]) for i in order[:3]]
    table = pd.read_csv(fake_nb201).set_index("arch")
    assert r["best"]["test"]["cifar10_test"] == pytest.approx(table.loc[r["best"]["arch"], "cifar10_test"])
    # the run's config and run id are as the user wrote them: HDA's γ's are not written back into them
    assert cfg.strategy.options.gamma_k is None and r["run_id"] == parts.run_id


def test_run_with_fixed_gammas_from_proxy_options(fake_nb201, tmp_path):
    """``proxies.options.rbflex`` reaches the scoring: the argmax is the one of scores computed at those γ's, and
    the store holds them under the option-qualified cache name."""
    cfg = _cfg([*RUN, "strategy.budget=1", "strategy.options.gammas=fixed",
                "+proxies.options.rbflex={gamma_k:0.001,gamma_q:0.01}", f"benchmark.path={fake_nb201}",
                f"store={tmp_path / 's.sqlite'}"])
    r = run(cfg, tmp_path / "o")
    parts = Parts(cfg, tmp_path / "o2")
    want = rbflex_scores(parts, 0.001, 0.01)
    assert r["history"][0]["arch"] == NB201.format(parts.archs[int(np.nanargmax(want))])
    assert r["n_evaluations"] == 1
    stored = parts.store.find_scores("nb201", "rbflex[gamma_k=0.001,gamma_q=0.01]")
    got = [stored[NB201.key(a)].value for a in parts.archs]
    assert np.array(got, dtype=float) == pytest.approx(want, rel=1e-9, nan_ok=True)
    assert parts.store.find_scores("nb201", "rbflex") == {}  # nothing was scored at the default γ's
