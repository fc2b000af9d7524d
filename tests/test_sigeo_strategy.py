"""strategy=sigeo: supernet warm-up once, SiGeo ranking of the pool, real queries on the top, exact resume."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest

from hnas.data import build_datamodule
from hnas.evaluators import Observation
from hnas.search import CandidatePool, StrategyError, make_strategy, run_search
from hnas.spaces import get_space
from hnas.store import Store
from hnas.training.supernet import WarmupConfig, score_candidates, score_subnets, warm_up_supernet

SPACE = get_space("nb201")
BUILD = {"C": 4, "N": 1}
WARMUP = {"fraction": 0.25, "max_steps": 2, "batch_size": 8}
SCORING = {"batch_size": 16}


class ConvCount:
    """Fake evaluator: the number of conv ops, so the test knows every value."""

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, arch) -> Observation:
        self.calls += 1
        return Observation(float(sum(op.startswith("nor_conv") for op in arch)), 1.0, {})


def _dm():
    return build_datamodule("synthetic", num_train=64, num_test=16, shape=(3, 8, 8), num_classes=4,
                            batch_size=16, valid_fraction=0.5, augment=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("supernets")


@pytest.fixture(scope="module")
def pool():
    archs = SPACE.sample_many(4, np.random.default_rng(0))
    return CandidatePool(archs, [SPACE.format(a) for a in archs])


def _strategy(pool, cache, budget=2, **options):
    opts = {"warmup": WARMUP, "scoring": SCORING, "cache_dir": str(cache), "device": "cpu", **options}
    return make_strategy("sigeo", SPACE, pool, budget, 0, datamodule=_dm(), build_kwargs=BUILD, **opts)


def test_rank_mode_queries_the_top_of_the_supernet_sigeo_ranking(pool, cache, tmp_path):
    strat = _strategy(pool, cache)
    ev = ConvCount()
    res = run_search(strat, ev, Store(tmp_path / "s.sqlite"), "r1", budget_queries=2)
    # the expected ranking, computed independently from the (reloaded) warm-up and the same scoring batch
    dm = _dm()
    warm = warm_up_supernet(dm, WarmupConfig(**WARMUP, seed=0, **BUILD), cache)
    assert not warm.trained_now and warm.warmed
    b = dm.scoring_batch(16, 0)
    vals = [s["sigeo"].value for s in score_subnets(warm.supernet, pool.archs, (b.x, b.y), ["sigeo"],
                                                     warmed=True, progress=False)]
    order = sorted(range(4), key=lambda i: -vals[i])
    assert [h["arch"] for h in res.history] == [pool.spellings[i] for i in order[:2]]
    assert [v for _, v in strat.ranking] == pytest.approx(sorted(vals, reverse=True))
    assert ev.calls == 2


def test_resume_replays_without_training_again(pool, cache, tmp_path, monkeypatch):
    strat = _strategy(pool, cache, budget=3)
    store = Store(tmp_path / "s.sqlite")
    run_search(strat, ConvCount(), store, "r2", budget_queries=3)  # warms up here if no other test did
    calls = []
    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: calls.append(1))
    again = _strategy(pool, cache, budget=3)
    again.load_state_dict(strat.state_dict())
    assert [k for k, _, _ in again.history] == [k for k, _, _ in strat.history]
    ev = ConvCount()
    res = run_search(_strategy(pool, cache, budget=3), ev, store, "r2", budget_queries=3)
    assert res.n_replayed == 3 and ev.calls == 0
    assert calls == []  # the warm-up checkpoint was reused: no training on resume


def test_evolve_mode_ranks_everything_it_scored(pool, cache, tmp_path):
    strat = _strategy(pool, cache, budget=2, mode="evolve",
                      evolution={"cycles": 3, "population_size": 2, "sample_size": 2})
    res = run_search(strat, ConvCount(), Store(tmp_path / "s.sqlite"), "e1", budget_queries=2)
    values = [v for _, v in strat.ranking]
    assert 2 <= len(strat.ranking) <= 5 and len(strat.fitness) == len(strat.ranking)
    assert values == sorted(values, reverse=True)
    assert [h["arch"] for h in res.history] == [SPACE.format(a) for a, _ in strat.ranking[:2]]


def test_per_candidate_mode_without_warmup_ranks_by_reference_sigeo(pool, cache, tmp_path):
    strat = _strategy(pool, cache, budget=1, per_candidate=True, warmup={"fraction": 0.0})
    res = run_search(strat, ConvCount(), Store(tmp_path / "s.sqlite"), "p1", budget_queries=1)
    b = _dm().scoring_batch(16, 0)

    def build(arch):
        return SPACE.build(arch, num_classes=4, **BUILD)

    vals = [s["sigeo"].value for s in score_candidates(build, pool.archs, (b.x, b.y), 4, ["sigeo"], progress=False)]
    assert res.history[0]["arch"] == pool.spellings[int(np.argmax(vals))]
    assert all(math.isfinite(v) for v in vals)


def test_option_errors(pool, cache):
    with pytest.raises(StrategyError, match="sigeo mode 'grid' is not one of rank, evolve"):
        _strategy(pool, cache, mode="grid")
    with pytest.raises(StrategyError, match=r"sigeo evolution has no option\(s\) \['size'\]"):
        _strategy(pool, cache, evolution={"size": 3})
    with pytest.raises(StrategyError, match="warmup.fraction must be a number in"):
        _strategy(pool, cache, warmup={"fraction": 2})
    strat = make_strategy("sigeo", SPACE, pool, 1, 0, cache_dir=str(cache))
    with pytest.raises(StrategyError, match="needs the run's data module"):
        strat.ask()


def test_config_group_builds_the_strategy_with_its_defaults(pool):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        cfg = compose("run", overrides=["strategy=sigeo"])
    options = OmegaConf.to_container(cfg.strategy.options, resolve=True)
    strat = make_strategy("sigeo", SPACE, pool, int(cfg.strategy.budget), 0, datamodule=_dm(), **options)
    assert cfg.strategy.name == "sigeo" and list(cfg.strategy.proxies) == []
    assert strat.warmup_cfg.fraction == 0.1 and strat.scoring["batch_size"] == 256
    assert {k: strat.options[k] for k in ("mode", "fitness", "per_candidate")} == {
        "mode": "rank", "fitness": "sigeo", "per_candidate": False}
