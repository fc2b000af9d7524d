"""The Hydra entry points end to end: hnas run (search) and hnas score (proxy scoring + correlations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.errors import MissingConfigException

from hnas.experiment.runner import run_experiment as run
from hnas.spaces import get_space

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def fake_nb201(tmp_path_factory) -> Path:
    """A complete compact NB201 table with synthetic but structured values (a fresh clone has no ../shared)."""
    return write_fake_nb201(tmp_path_factory.mktemp("bench") / "nb201.csv")


def write_fake_nb201(path: Path, **change) -> Path:
    """The fake table at ``path``; ``change``: column -> callable(frame) -> new column (to break it)."""
    rng = np.random.default_rng(0)
    archs = list(SPACE.enumerate())
    n_conv = np.array([sum(op.startswith("nor_conv") for op in a) for a in archs], dtype=float)
    base = 60 + 5 * n_conv + rng.normal(0, 1, len(archs))
    df = pd.DataFrame({
        "index": range(len(archs)), "arch": [SPACE.format(a) for a in archs],
        "cifar10_test": base + 20, "cifar100_test": base, "imagenet16_test": base - 20,
        "cifar10_valid_12ep": base + 10 + rng.normal(0, 0.5, len(archs)),
        "cost_12ep_s": 50 + 10 * n_conv,
    })
    for col, fn in change.items():
        df[col] = fn(df)
    df.to_csv(path, index=False)
    return path


def _cfg(name: str, overrides: list[str]):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose(name, overrides=overrides)


def test_random_search_on_benchmark_writes_result_and_is_deterministic(fake_nb201, tmp_path):
    over = ["+experiment=nb201_cifar10", "strategy=random", "strategy.budget=20", "seed=0",
            f"benchmark.path={fake_nb201}", f"store={tmp_path / 'a.sqlite'}", "logger=none"]
    r1 = run(_cfg("run", over), tmp_path / "out1")
    saved = json.loads((tmp_path / "out1" / "result.json").read_text())
    assert set(saved) >= {"experiment", "space", "strategy", "seed", "best", "n_evaluations", "search_cost_s",
                          "wall_s", "history"}
    assert saved["experiment"] == "nb201_cifar10" and saved["strategy"] == "random" and saved["seed"] == 0
    assert saved["n_evaluations"] == 20 == len(saved["history"])
    assert len({h["arch"] for h in saved["history"]}) == 20
    table = pd.read_csv(fake_nb201).set_index("arch")
    best = max(saved["history"], key=lambda h: h["value"])
    assert saved["best"]["arch"] == best["arch"] and saved["best"]["value"] == best["value"]
    assert saved["best"]["test"]["cifar10_test"] == pytest.approx(table.loc[best["arch"], "cifar10_test"])
    assert saved["search_cost_s"] == pytest.approx(sum(table.loc[h["arch"], "cost_12ep_s"]
                                                       for h in saved["history"]))
    assert (tmp_path / "out1" / "trajectory.png").stat().st_size > 0
    # same seed, fresh store -> same result; another seed -> another history
    r2 = run(_cfg("run", [*over[:-2], f"store={tmp_path / 'b.sqlite'}", "logger=none"]), tmp_path / "out2")
    assert r2["history"] == r1["history"] and r2["best"] == r1["best"]
    r3 = run(_cfg("run", [*over[:3], "seed=1", *over[4:]]), tmp_path / "out3")
    assert r3["history"] != r1["history"]


def test_rerun_with_same_run_id_replays_the_log(fake_nb201, tmp_path):
    over = ["+experiment=nb201_cifar10", "strategy=rea", "strategy.budget=8", f"benchmark.path={fake_nb201}",
            f"store={tmp_path / 's.sqlite'}", "logger=csv"]
    first = run(_cfg("run", over), tmp_path / "o")
    again = run(_cfg("run", over), tmp_path / "o")
    assert again["replayed"] == 8 and first["replayed"] == 0
    assert again["history"] == first["history"]


def test_unknown_names_are_rejected_by_the_config_layer(fake_nb201):
    with pytest.raises(MissingConfigException, match=r"Could not find 'experiment/nope'\s+Available options in "
                                                      r"'experiment':\s+cifar10"):
        _cfg("run", ["+experiment=nope"])
    with pytest.raises(MissingConfigException, match=r"Could not find 'strategy/nope'\s+Available options in "
                                                      r"'strategy':\s+gp_bo\s+hnas"):
        _cfg("run", ["+experiment=nb201_cifar10", "strategy=nope"])
    with pytest.raises(MissingConfigException, match=r"Could not find 'space/nope'\s+Available options in "
                                                      r"'space':"):
        _cfg("run", ["space=nope"])


def test_missing_proxy_scores_name_the_command_that_computes_them(fake_nb201, tmp_path):
    from hnas.search import PoolError

    over = ["+experiment=nb201_cifar10", "strategy=robot", f"benchmark.path={fake_nb201}",
            f"store={tmp_path / 's.sqlite'}", "proxies.source=suite_zero:absent.csv", "pool.size=30"]
    with pytest.raises(PoolError, match=r"lacks proxy scores .*`hnas score space=nb201 .*proxies.names=\[grad_norm"):
        run(_cfg("run", over), tmp_path / "out")


def test_training_evaluator_with_ddp_sim_inside_the_search_loop(tmp_path):
    """Warm-ups on 2 CPU processes (gloo, ddp_spawn) while the search loop itself runs once, here."""
    over = ["strategy=random", "strategy.budget=2", "evaluator=train", "evaluator.budget.max_steps=2",
            "evaluator.limit_val_batches=2", "data=synthetic", "data.batch_size=8", "trainer=ddp_sim",
            "benchmark=none", "space.build.C=4", "space.build.N=1", f"store={tmp_path / 's.sqlite'}", "logger=csv",
            "name=ddp_sim_test"]
    r = run(_cfg("run", over), tmp_path / "out")
    assert r["n_evaluations"] == 2
    for h in r["history"]:
        assert 0.0 <= h["value"] <= 100.0 and h["cost_s"] > 0
    rows = pd.read_csv(tmp_path / "out" / "architectures.csv")
    assert len(rows) == 2
    from hnas.store import Store

    logged = Store(tmp_path / "s.sqlite").trials(r["run_id"])
    assert [(t["info"]["world_size"], t["info"]["steps"]) for t in logged] == [(2, 2), (2, 2)]


def test_score_command_scores_caches_and_correlates(fake_nb201, tmp_path):
    from hnas.cli.score import score_pool

    over = ["data=synthetic", "pool.size=6", "pool.seed=1", "proxies.names=[params,synflow,grad_norm]",
            "proxies.batch.size=8", "space.build.C=4", "space.build.N=1", f"benchmark.path={fake_nb201}",
            f"store={tmp_path / 's.sqlite'}", "timing_archs=2"]
    out = score_pool(_cfg("score", over), tmp_path / "o1")
    assert out["n_archs"] == 6 and out["target"] == "cifar10_test" and out["fwd_bwd_median_s"] > 0
    for name in ("params", "synflow", "grad_norm"):
        e = out["proxies"][name]
        assert set(e) >= {"spearman", "kendall", "n", "median_s", "n_failed"} and e["n"] == 6
        assert (tmp_path / "o1" / f"{name}.png").exists()
    md = (tmp_path / "o1" / "result.md").read_text()
    assert f"| params | {out['proxies']['params']['spearman']:.3f} |" in md
    scores = pd.read_csv(tmp_path / "o1" / "scores.csv")
    assert len(scores) == 6 and {"arch", "index", "params", "cifar10_test"} <= set(scores.columns)
    # the reported correlations are those of the written columns, signed by the proxy's direction
    from scipy import stats

    for name in ("params", "synflow"):
        rho = stats.spearmanr(scores[name], scores["cifar10_test"]).statistic
        tau = stats.kendalltau(scores[name], scores["cifar10_test"]).statistic
        assert out["proxies"][name]["spearman"] == pytest.approx(rho)
        assert out["proxies"][name]["kendall"] == pytest.approx(tau)
    # a second run reads everything from the store: the same numbers, nothing recomputed
    from hnas.store import Store

    n_rows = Store(tmp_path / "s.sqlite").count_scores()
    again = score_pool(_cfg("score", over), tmp_path / "o2")
    assert Store(tmp_path / "s.sqlite").count_scores() == n_rows == 18
    assert again["proxies"]["synflow"]["spearman"] == out["proxies"]["synflow"]["spearman"]


def test_pool_shards_are_disjoint_and_cover_the_pool(tmp_path):
    from hnas.errors import ConfigError
    from hnas.experiment.build import pool_archs

    cfg = _cfg("score", ["pool.size=10"])
    full = pool_archs(cfg.pool, SPACE)
    shards = []
    for i in (1, 2, 3):
        cfg = _cfg("score", ["pool.size=10", f"pool.shard={i}/3"])
        shards.append(pool_archs(cfg.pool, SPACE))
    assert sorted(map(SPACE.format, sum(shards, []))) == sorted(map(SPACE.format, full))
    with pytest.raises(ConfigError, match="pool.shard '4/3': need 1 <= i <= n"):
        pool_archs(_cfg("score", ["pool.size=10", "pool.shard=4/3"]).pool, SPACE)


def test_score_command_compares_with_a_reference_table(fake_nb201, tmp_path):
    from scipy import stats

    from hnas.cli.score import score_pool

    archs = [SPACE.from_index(i) for i in (5, 17, 42, 99, 123, 456, 789)]
    ref = pd.DataFrame({"index": [SPACE.index(a) for a in archs],
                        "params": [float(i % 5) for i in range(7)], "jacov": np.linspace(0, 1, 7)})
    ref_path = tmp_path / "ref.csv"
    ref.to_csv(ref_path, index=False)
    over = ["data=synthetic", "pool=table", f"pool.path={ref_path}", "pool.limit=6", "proxies.names=[params]",
            "proxies.batch.size=8", "space.build.C=4", "space.build.N=1", f"benchmark.path={fake_nb201}",
            f"store={tmp_path / 's.sqlite'}", "timing_archs=0", f"reference={ref_path}", "plots=false"]
    out = score_pool(_cfg("score", over), tmp_path / "o")
    assert out["n_archs"] == 6  # limit: the first 6 rows by index
    ours = pd.read_csv(tmp_path / "o" / "scores.csv")
    expected = stats.spearmanr(ours["params"], ref.sort_values("index")["params"][:6]).statistic
    assert out["proxies"]["params"]["reference_spearman"] == pytest.approx(expected)
    assert out["proxies"]["params"]["reference_n"] == 6


def test_correlations_count_failed_scores_as_worst_only_in_the_failed_last_figures():
    from hnas.analysis.correlation import rank_correlations as correlations

    truth = np.array([10.0, 20.0, 30.0, 40.0, 5.0])
    scores = np.array([1.0, 2.0, 4.0, 3.0, np.nan])  # the failed network is also the worst one
    c = correlations(scores, truth, higher_is_better=True)
    assert c["n"] == 4 and c["spearman"] == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert c["spearman_failed_last"] == pytest.approx(0.9)      # 1 - 6*2/(5*24)
    lower = correlations(-scores, truth, higher_is_better=False)
    assert lower["spearman"] == pytest.approx(0.8) and lower["spearman_failed_last"] == pytest.approx(0.9)


def test_unknown_proxy_in_a_strategy_is_named_with_the_valid_ones(fake_nb201, tmp_path):
    from hnas.proxies.registry import ProxyError

    over = ["+experiment=nb201_cifar10", "strategy=robot", "strategy.options.metrics=[snip,bogus]",
            f"benchmark.path={fake_nb201}", f"store={tmp_path / 's.sqlite'}", "data=synthetic", "pool.size=5",
            "space.build.C=4", "space.build.N=1", "logger=none"]
    with pytest.raises(ProxyError, match=r"unknown proxy 'bogus'; valid: .*grad_norm.*synflow"):
        run(_cfg("run", over), tmp_path / "out")
    assert not (tmp_path / "out" / "result.json").exists()


def test_a_resumed_run_leaves_one_csv_row_per_step(fake_nb201, tmp_path):
    """Killed after 3 of 5 steps (a crash in the evaluator), resumed twice: architectures.csv has 5 rows."""
    from hnas.evaluators.table import TableEvaluator

    over = ["+experiment=nb201_cifar10", "strategy=random", "strategy.budget=5", f"benchmark.path={fake_nb201}",
            f"store={tmp_path / 's.sqlite'}", "logger=csv"]
    real = TableEvaluator.evaluate
    calls = []

    def crash_after_three(self, arch):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(arch)
        return real(self, arch)

    TableEvaluator.evaluate = crash_after_three
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(_cfg("run", over), tmp_path / "o")
    finally:
        TableEvaluator.evaluate = real
    assert len(pd.read_csv(tmp_path / "o" / "architectures.csv")) == 3
    first = run(_cfg("run", over), tmp_path / "o")
    again = run(_cfg("run", over), tmp_path / "o")
    rows = pd.read_csv(tmp_path / "o" / "architectures.csv")
    assert list(rows["step"]) == [0, 1, 2, 3, 4]
    assert list(rows["arch"]) == [h["arch"] for h in first["history"]] == [h["arch"] for h in again["history"]]
    assert first["replayed"] == 3 and again["replayed"] == 5


def test_runs_that_differ_in_any_override_get_their_own_output_folder_and_run_id(fake_nb201):
    from hnas.experiment.build import default_run_id, run_dir_name

    base = ["+experiment=nb201_cifar10", "strategy=robot", f"benchmark.path={fake_nb201}"]
    a, b = _cfg("run", base), _cfg("run", [*base, "strategy.options.kappa=1.0"])
    assert run_dir_name(a) != run_dir_name(b) and default_run_id(a) != default_run_id(b)
    assert run_dir_name(a).startswith("seed0-") and default_run_id(a).endswith(run_dir_name(a)[len("seed0-"):])
    assert run_dir_name(_cfg("run", [*base, "run_id=mine"])) == "mine"


def test_hydra_run_dir_resolves_to_the_distinct_folder(fake_nb201):
    from hydra.core.global_hydra import GlobalHydra

    from hnas.experiment.build import register_resolvers, run_dir_name

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        cfg = compose("run", overrides=["+experiment=nb201_cifar10", f"benchmark.path={fake_nb201}"],
                      return_hydra_config=True)
    assert cfg.hydra.run.dir == f"outputs/nb201_cifar10/random/{run_dir_name(cfg)}"
    assert cfg.hydra.sweep.subdir == f"random/{run_dir_name(cfg)}"


def test_pool_source_names_the_scores_the_run_used(fake_nb201, tmp_path):
    """After an import into the same store, a self-computed run still says its scores came from hnas."""
    from hnas.benchmarks.score_tables import import_score_table
    from hnas.store import Store

    archs = [SPACE.from_index(i) for i in range(12)]
    table = tmp_path / "zc.csv"
    pd.DataFrame({"index": range(12), "synflow": np.arange(12.0)}).to_csv(table, index=False)
    import_score_table(Store(tmp_path / "s.sqlite"), table, source="suite_zero:zc.csv")
    over = ["+experiment=nb201_cifar10", "strategy=training_free", "strategy.budget=3", "data=synthetic",
            "pool=list", "pool.archs=[" + ",".join(f"'{SPACE.format(a)}'" for a in archs) + "]", "proxies.batch.size=8",
            "space.build.C=4", "space.build.N=1", f"benchmark.path={fake_nb201}", f"store={tmp_path / 's.sqlite'}",
            "logger=none"]
    own = run(_cfg("run", over), tmp_path / "own")
    assert own["pool"]["proxies"]["synflow"]["source"] == "hnas"
    imported = run(_cfg("run", [*over, "proxies.source=suite_zero:zc.csv"]), tmp_path / "imp")
    assert imported["pool"]["proxies"]["synflow"]["source"] == "suite_zero:zc.csv"
    assert [h["arch"] for h in imported["history"]] == [SPACE.format(archs[i]) for i in (11, 10, 9)]


def test_extra_proxies_of_a_run_are_scored_and_shown_in_its_rows(fake_nb201, tmp_path):
    over = ["+experiment=nb201_cifar10", "strategy=random", "strategy.budget=3", "data=synthetic", "pool.size=6",
            "proxies.names=[params]", "proxies.batch.size=8", "space.build.C=4", "space.build.N=1",
            f"benchmark.path={fake_nb201}", f"store={tmp_path / 's.sqlite'}", "logger=csv"]
    r = run(_cfg("run", over), tmp_path / "o")
    rows = pd.read_csv(tmp_path / "o" / "architectures.csv")
    assert "proxy/params" in rows.columns and rows["proxy/params"].gt(0).all()
    assert r["pool"]["proxies"]["params"]["source"] == "hnas"
