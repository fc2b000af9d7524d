"""The search loop: budgets, trial log, exact resume (including a run killed with SIGKILL)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_strategies import ToyEvaluator, ToySpace, new_store, toy_pool, toy_value

from hnas.evaluators import Observation
from hnas.search import SearchError, make_strategy, run_search
from hnas.store import Store, StoreError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAST_BO = {"n_warmup": 1000, "n_starts": 3}
OPTIONS = {
    "robot": {"metrics": ["good", "anti", "noise"], **FAST_BO},
    "hnas": {"scale": 100.0, "n_sample": 20, **FAST_BO},
    "rea": {"population_size": 4},
    "hybrid": {"metrics": ["good", "anti", "noise"], "n_weights": 2048},
}


def make(name: str, seed: int = 0, T: int = 12):
    space = ToySpace()
    return make_strategy(name, space, toy_pool(space), T, seed, **OPTIONS[name])


class CountingEvaluator(ToyEvaluator):
    """Fails (like a crash) after ``fail_after`` calls when given."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after

    def evaluate(self, arch) -> Observation:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        return super().evaluate(arch)


class ListTracker:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_architecture(self, row: dict) -> None:
        self.rows.append(row)


def summary(res) -> tuple:
    return (
        [(h["arch"], h["value"], h["cost_s"]) for h in res.history],
        res.best["arch"],
        res.best["value"],
        res.search_cost_s,
    )


def test_history_best_cost_and_trial_log(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    tracker = ListTracker()
    res = run_search(make("robot"), CountingEvaluator(), store, "r1", budget_queries=12, tracker=tracker)
    assert len(res.history) == 12 and res.n_evaluations == 12 and res.n_replayed == 0
    assert res.best["value"] == max(h["value"] for h in res.history)
    assert res.best["test"] == {"toy": res.best["value"] - 1.0}
    assert res.search_cost_s == pytest.approx(sum(h["cost_s"] for h in res.history))
    rows = store.trials("r1")
    assert [r["arch"] for r in rows] == [h["arch"] for h in res.history]
    assert [r["step"] for r in rows] == list(range(12))
    assert len(tracker.rows) == 12 and tracker.rows[3]["step"] == 3
    assert store.load_state("r1")["strategy"] == "robot"
    assert "T0" in res.extra


def test_cost_budget_and_bad_budgets(tmp_path):
    ev = CountingEvaluator()
    res = run_search(make("rea"), ev, new_store(), "c", budget_cost_s=40.0)
    costs = [h["cost_s"] for h in res.history]
    assert sum(costs) >= 40.0 and sum(costs[:-1]) < 40.0
    for bad in (0, -3):
        with pytest.raises(SearchError, match=f"budget_queries must be a positive number .* got {bad}"):
            run_search(make("rea"), ev, new_store(), "c", budget_queries=bad)
    with pytest.raises(SearchError, match="budget_cost_s must be a positive number .* got 0"):
        run_search(make("rea"), ev, new_store(), "c", budget_cost_s=0)


@pytest.mark.parametrize("name", ["robot", "hnas", "rea", "hybrid"])
def test_resume_after_crash_is_exact(tmp_path, name):
    full = run_search(make(name), CountingEvaluator(), Store(tmp_path / "a.sqlite"), "run", 12)
    store = Store(tmp_path / "b.sqlite")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_search(make(name), CountingEvaluator(fail_after=5), store, "run", 12)
    assert len(store.trials("run")) == 5
    ev = CountingEvaluator()
    resumed = run_search(make(name), ev, store, "run", 12)
    assert len(ev.calls) == 12 - 5
    assert resumed.n_replayed == 5 and resumed.n_evaluations == 7
    assert summary(resumed) == summary(full)


def test_resume_with_changed_config_is_an_error(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_search(make("rea", seed=0), CountingEvaluator(), store, "run", 6)
    with pytest.raises(
        SearchError, match=r"run 'run' cannot resume: step 0 of its trial log queried .*use a new run id"
    ):
        run_search(make("rea", seed=1), CountingEvaluator(), store, "run", 6)


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from test_strategies import ToyEvaluator, ToySpace, toy_pool
    from hnas.search import make_strategy, run_search
    from hnas.store import Store

    name, store_path, out = sys.argv[1:4]
    sleep, options = float(sys.argv[4]), json.loads(sys.argv[5])

    class Slow(ToyEvaluator):
        def evaluate(self, arch):
            time.sleep(sleep)
            with open(out + ".calls", "a") as f:
                f.write("x\\n")
            return super().evaluate(arch)

    space = ToySpace()
    st = make_strategy(name, space, toy_pool(space), 12, 0, **options)
    res = run_search(st, Slow(), Store(store_path), "run", 12)
    with open(out, "w") as f:
        json.dump({"history": [[h["arch"], h["value"], h["cost_s"]] for h in res.history],
                   "best": [res.best["arch"], res.best["value"]], "cost": res.search_cost_s,
                   "n_evaluations": res.n_evaluations}, f)
    """
)


def _run_script(tmp_path: Path, name: str, store: Path, out: Path, sleep: float) -> subprocess.Popen:
    script = tmp_path / "search_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), name, str(store), str(out), str(sleep), json.dumps(OPTIONS[name])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("name", ["robot", "hnas", "rea", "hybrid"])
def test_sigkill_mid_search_then_resume(tmp_path, name):
    """A subprocess search killed with SIGKILL after k logged trials; the rerun evaluates only the rest."""
    store_path, out = tmp_path / "s.sqlite", tmp_path / "res.json"
    proc = _run_script(tmp_path, name, store_path, out, sleep=0.3)
    store = Store(store_path)
    deadline = time.time() + 120
    while len(store.trials("run")) < 4:
        if proc.poll() is not None:
            pytest.fail(f"search subprocess ended early: {proc.stdout.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("search subprocess logged no 4 trials in 120 s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    k = len(store.trials("run"))
    assert 4 <= k < 12

    # the rerun (in this process, same seed and run id) calls the evaluator only for the remaining steps
    ev = CountingEvaluator()
    resumed = run_search(make(name), ev, store, "run", 12)
    assert len(ev.calls) == 12 - k and resumed.n_replayed == k
    full = run_search(make(name), CountingEvaluator(), Store(tmp_path / "fresh.sqlite"), "run", 12)
    assert summary(resumed) == summary(full)


def test_report_aggregates_result_files(tmp_path):
    from hnas.analysis.report import ReportError, build_report, incumbent_curve
    from hnas.cli.report import main

    for seed, (best, tests) in enumerate([(84.0, 94.0), (80.0, 92.0)]):
        hist = [
            {"arch": "a", "value": 70.0, "cost_s": 10.0, "test": {"cifar10": 90.0}},
            {"arch": "b", "value": best, "cost_s": 20.0, "test": {"cifar10": tests}},
            {"arch": "c", "value": 60.0, "cost_s": 5.0, "test": {"cifar10": 99.0}},
        ]
        r = {
            "experiment": "nb201_cifar10",
            "space": "nb201",
            "strategy": "robot",
            "seed": seed,
            "best": {"arch": "b", "value": best, "test": {"cifar10": tests}},
            "n_evaluations": 3,
            "search_cost_s": 35.0,
            "wall_s": 1.0 + seed,
            "history": hist,
            "target": "cifar10",
            "pool": {"optimum": {"cifar10": 99.5}},
            "strategy_info": {"T0": 6 + 2 * seed},
        }
        d = tmp_path / "runs" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r))
    text = build_report([tmp_path / "runs"], out=tmp_path / "results.md")
    row = [line for line in text.splitlines() if "| robot |" in line][0]
    assert (
        "| nb201_cifar10 | robot | 2 | cifar10 | 93.00 ± 1.00 | 99.50 | 82.00 ± 2.00 | 3.0 | 7.0 | 35.00 ± 0.00 "
        "| 1.50 ± 0.50 |"
        == row
    )
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert incumbent_curve(
        json.loads((tmp_path / "runs/seed0/result.json").read_text())["history"], "cifar10"
    ).tolist() == [90.0, 94.0, 94.0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no result.json found under .*empty"):
        build_report([tmp_path / "empty"])
    with pytest.raises(ReportError, match="missing is neither a directory nor a result.json"):
        build_report([tmp_path / "missing"])
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nowhere")])
    assert e.value.code == 2


class NaNEvaluator(ToyEvaluator):
    """The best architecture of the toy landscape 'diverges' (NaN), as a failed warm-up would."""

    def evaluate(self, arch) -> Observation:
        obs = super().evaluate(arch)
        if toy_value(arch) >= 90.0:
            return Observation(float("nan"), obs.cost_s, {"note": "loss diverged"})
        return obs


def test_nan_observations_are_logged_with_their_reason_and_never_best(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    res = run_search(make("rea", T=40), NaNEvaluator(), store, "nan", 40)
    nan_steps = [h for h in res.history if math.isnan(h["value"])]
    assert nan_steps and all(h["note"] == "loss diverged" for h in nan_steps)
    assert res.best["value"] == max(h["value"] for h in res.history if not math.isnan(h["value"])) < 90.0
    rows = {r["arch"]: r for r in store.trials("nan")}
    assert all(rows[h["arch"]]["value"] is None and rows[h["arch"]]["info"]["note"] == "loss diverged"
               for h in nan_steps)
    # a resume replays the NULLs as NaN, with the same best
    again = run_search(make("rea", T=40), NaNEvaluator(), store, "nan", 40)
    assert again.n_evaluations == 0 and again.best == res.best


def test_a_changed_fingerprint_refuses_to_resume(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_search(make("rea"), CountingEvaluator(), store, "fp", 6, fingerprint={"benchmark": "aaa"})
    with pytest.raises(StoreError, match=r"run 'fp' cannot resume: its trial log was written with a different "
                                         r"benchmark \(benchmark: 'aaa' -> 'bbb'\)"):
        run_search(make("rea"), CountingEvaluator(), store, "fp", 6, fingerprint={"benchmark": "bbb"})
    # the same fingerprint resumes
    same = run_search(make("rea"), CountingEvaluator(), store, "fp", 6, fingerprint={"benchmark": "aaa"})
    assert same.n_replayed == 6


HOLD = textwrap.dedent(
    """
    import sys, time
    from hnas.store import Store
    with Store(sys.argv[1]).lease("held"):
        print("holding", flush=True)
        time.sleep(60)
    """
)


def test_a_second_process_on_a_held_run_id_is_refused_and_a_killed_holder_is_taken_over(tmp_path):
    store_path = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError, match=rf"run 'held' is being run by process {proc.pid} on .*; wait for it"):
            run_search(make("rea"), CountingEvaluator(), Store(store_path), "held", 4)
    finally:
        proc.kill()
        proc.wait()
    # the holder died (SIGKILL: no clean release): its lease is stale and this process takes the run over
    ev = CountingEvaluator()
    assert run_search(make("rea"), ev, Store(store_path), "held", 4).n_evaluations == 4 == len(ev.calls)


def test_same_process_can_rerun_a_run_and_release_its_lease(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_search(make("rea"), CountingEvaluator(), store, "twice", 4)
    run_search(make("rea"), CountingEvaluator(), store, "twice", 4)
    assert store.conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def _result(exp: str, target: str, seed: int, values: list[float], run_id: str | None = None) -> dict:
    tests = {"cifar10_test": 90.0, "cifar100_test": 70.0, "imagenet16_test": 45.0}
    hist = [{"arch": f"a{i}", "value": v, "cost_s": 1.0, "test": {k: t + i for k, t in tests.items()}}
            for i, v in enumerate(values)]
    best = max(hist, key=lambda h: h["value"])
    return {"experiment": exp, "strategy": "robot", "seed": seed, "target": target, "run_id": run_id or f"{exp}-{seed}",
            "best": {"arch": best["arch"], "value": best["value"], "test": best["test"]}, "history": hist,
            "n_evaluations": len(hist), "search_cost_s": float(len(hist)), "wall_s": 1.0}


def test_each_report_panel_plots_its_own_target_with_integer_query_ticks(tmp_path):
    """cifar100_test sorts before cifar10_test: the CIFAR-10 and ImageNet16 panels must still show their own."""
    from hnas.analysis.report import load_results, trajectory_curves

    for exp, target in (("nb201_cifar10", "cifar10_test"), ("nb201_cifar100", "cifar100_test"),
                        ("nb201_imagenet16", "imagenet16_test")):
        d = tmp_path / exp
        d.mkdir()
        (d / "result.json").write_text(json.dumps(_result(exp, target, 0, [70.0, 80.0, 75.0])))
    runs = load_results(sorted(tmp_path.rglob("result.json")))
    panels = trajectory_curves(runs)
    assert {e: p["metric"] for e, p in panels.items()} == {
        "nb201_cifar10": "cifar10_test", "nb201_cifar100": "cifar100_test", "nb201_imagenet16": "imagenet16_test"}
    # incumbent after queries 1..3: a0, a1, a1 -> its target test accuracy
    assert panels["nb201_cifar10"]["curves"]["robot"]["mean"].tolist() == [90.0, 91.0, 91.0]
    assert panels["nb201_imagenet16"]["curves"]["robot"]["mean"].tolist() == [45.0, 46.0, 46.0]


def test_report_skips_non_search_results_dedups_run_ids_and_rejects_bad_costs(tmp_path):
    from hnas.analysis.report import ReportError, build_report

    out = tmp_path / "outputs" / "x" / "result.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(_result("nb201_cifar10", "cifar10_test", 0, [70.0, 80.0], run_id="r0")))
    multi = tmp_path / "multirun" / "x" / "result.json"  # the same run found again under multirun/
    multi.parent.mkdir(parents=True)
    multi.write_text(out.read_text())
    score = tmp_path / "outputs" / "score" / "result.json"  # hnas score's result: not a search
    score.parent.mkdir(parents=True)
    score.write_text(json.dumps({"target": "cifar10_test", "n_archs": 5, "proxies": {}}))
    text = build_report([tmp_path])
    assert "| nb201_cifar10 | robot | 1 |" in text and text.startswith("# Search results (1 runs)")
    bad = _result("nb201_cifar10", "cifar10_test", 1, [70.0], run_id="r1")
    bad["history"][0]["cost_s"] = -3.0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text(json.dumps(bad))
    with pytest.raises(ReportError, match=r"bad/result.json: history\[0\].cost_s is -3.0; a cost must be a finite"):
        build_report([tmp_path])
    bad["history"][0]["cost_s"] = 1.0
    bad["search_cost_s"] = None
    bad["search_cost_s"] = float("nan")
    (tmp_path / "bad" / "result.json").write_text(json.dumps(bad))  # bare NaN, as an old writer left it
    with pytest.raises(ReportError, match=r"search_cost_s is nan; a cost must be a finite number"):
        build_report([tmp_path])
