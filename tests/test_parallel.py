"""Parallel evaluation: batched asks (q = 1 unchanged), fantasies, executors, sync/async modes, in-flight-safe
resume with the driver killed (SIGKILL) at several points, and worker deaths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict
from test_run import write_fake_nb201
from test_strategies import ToyEvaluator, ToySpace, new_store, toy_pool, toy_value

from hnas.bo import GP, BayesOpt, BOError
from hnas.evaluators import Observation
from hnas.search import Strategy, StrategyError, make_strategy, run_search
from hnas.search.executor import Done, ExecutorError, ExecutorSpec, LocalExecutor, Prebuilt, mps_running
from hnas.store import Store

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GOLDEN = json.loads((TESTS / "data" / "q1_histories.json").read_text())


@pytest.fixture(scope="module")
def fake_nb201(tmp_path_factory) -> Path:
    return write_fake_nb201(tmp_path_factory.mktemp("bench") / "nb201.csv")


def toy_run(name: str, seed: int = 0, T: int = 12, evaluator=None, store=None, run_id: str = "run", **loop):
    space = ToySpace()
    st = make_strategy(name, space, toy_pool(space), T, seed, **GOLDEN["options"][name])
    return run_search(st, evaluator or ToyEvaluator(), store or new_store(), run_id, T, **loop), st


def summary(res) -> tuple:
    return [(h["arch"], h["value"], h["cost_s"]) for h in res.history], res.best["arch"], res.search_cost_s


# ---------------------------------------------------------------- q = 1 is the sequential search, bit for bit
@pytest.mark.parametrize("key", sorted(GOLDEN["runs"]))
def test_q1_histories_equal_those_of_the_sequential_code(key):
    """tests/data/q1_histories.json was written by the code before batched asks (commit 9a3bb80, every strategy,
    seeds 0 and 1, T = 12): the loop with q = 1 reproduces each history, best, cost and summary exactly."""
    name, seed = key.split("/")
    want = GOLDEN["runs"][key]
    res, _ = toy_run(name, int(seed), GOLDEN["budget"], run_id=key)
    assert [h["arch"] for h in res.history] == want["history"]
    assert (res.best["arch"], res.best["value"], res.search_cost_s, res.extra) == (
        want["best"], want["best_value"], want["cost"], want["extra"])


def _sequential(strategy: Strategy, table, budget: int) -> list[str]:
    """The search as the sequential code ran it: ask one, evaluate it, tell it; a repeat is told from memory."""
    seen: dict[str, Observation] = {}
    while len(seen) < budget and not strategy.done:
        arch = strategy.ask()
        spelling = strategy.spelling(arch)
        if spelling not in seen:
            seen[spelling] = table.evaluate(arch)
        strategy.tell(arch, seen[spelling])
    return list(seen)


def test_q1_results_on_the_nb201_table_equal_those_of_the_sequential_code(shared_data, tmp_path, monkeypatch):
    """tests/data/q1_nb201_histories.json (commit 9a3bb80): random through the loop, REA and random through
    `hnas run`, on the real table with the Suite-Zero pool, seed 10, T = 20 (RoBoT: test_strategies).

    HNAS fits a GP to the table's values, and the last bits of a GP fit differ between CPU families (AVX2 vs
    AVX-512 kernels): its history is checked against the sequential ask/evaluate/tell loop run here, not pinned.
    Run ids hash the data paths as given, so the runs use ``shared`` (a link to the data) from their folder."""
    import pandas as pd
    from test_run import _cfg

    from hnas.experiment.runner import run_experiment
    from hnas.search import CandidatePool

    want = json.loads((TESTS / "data" / "q1_nb201_histories.json").read_text())
    nb = pd.read_csv(shared_data / "nb201" / "nb201.csv").set_index("index")
    zc = pd.read_csv(shared_data / "nb201" / "suite_zero_cifar10.csv")
    idx = zc["index"].to_numpy()
    cols = {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp", "fisher": "fisher", "synflow": "synflow",
            "jacob_cov": "jacov"}
    pool = CandidatePool([int(i) for i in idx], [str(i) for i in idx], {k: zc[v].to_numpy() for k, v in cols.items()})
    val, cost = nb["cifar10_valid_12ep"].to_dict(), nb["cost_12ep_s"].to_dict()

    class Table:
        def evaluate(self, arch):
            return Observation(val[arch], cost[arch])

    for name, opts in want["options"].items():
        res = run_search(make_strategy(name, None, pool, 20, 10, **opts), Table(), new_store(), name, 20)
        history = [h["arch"] for h in res.history]
        assert history == _sequential(make_strategy(name, None, pool, 20, 10, **opts), Table(), 20), name
        assert len(set(history)) == 20 and res.search_cost_s == pytest.approx(sum(cost[int(a)] for a in history))
        if name in want["runs"]:
            assert history == want["runs"][name]["history"], name
            assert (res.best["arch"], res.search_cost_s) == (want["runs"][name]["best"], want["runs"][name]["cost"])
    (tmp_path / "shared").symlink_to(shared_data.resolve())
    monkeypatch.chdir(tmp_path)
    for name, run in want["run"].items():
        over = [o.format(shared="shared") for o in want["run_overrides"]]
        res = run_experiment(_cfg("run", [*over, f"strategy={name}", f"store={tmp_path / 's.sqlite'}"]),
                             tmp_path / name)
        assert res["run_id"] == run["run_id"]  # a sequential run keeps its run id
        assert [h["arch"] for h in res["history"]] == run["history"], name
        assert (res["best"]["arch"], res["best"]["test"]) == (run["best"], run["test"])


# ---------------------------------------------------------------- batches
@pytest.mark.parametrize("name", sorted(GOLDEN["options"]))
def test_q4_batches_are_distinct_deterministic_and_told_in_ask_order(name):
    ev = ToyEvaluator()
    res, st = toy_run(name, 3, 12, evaluator=ev, parallel=4)
    archs = [h["arch"] for h in res.history]
    assert len(archs) == 12 == len(set(archs)) == res.n_evaluations
    assert archs == [ToySpace().key(a) for a in ev.calls]  # synchronous: told in ask (= evaluation) order
    assert not st.pending
    again, _ = toy_run(name, 3, 12, parallel=4)
    assert summary(again) == summary(res)
    # q changes the trajectory of the model-based strategies but not what a batch is made of: a 4-batch holds
    # 4 archs, none observed before it
    for i in range(0, 12, 4):
        assert len(set(archs[i:i + 4])) == 4 and not set(archs[i:i + 4]) & set(archs[:i])


def test_robot_and_hnas_batches_find_the_toy_optimum():
    for name in ("robot", "hnas"):
        res, _ = toy_run(name, 0, 12, parallel=4)
        assert res.best["value"] >= 90.0, name  # optimum 100; random search of 12 of 64 averages ~88


class Greedy(Strategy):
    """A strictly sequential strategy (no ``concurrent_asks``): it refuses a second ask while one is pending and
    asks the best unobserved neighbour of the best observation (the first ask: random)."""

    name = "greedy_test"
    defaults: dict = {}

    def _ask(self):
        if self.pending:
            raise AssertionError("asked while an architecture is pending")
        if not any(o.finite for o in self.observed.values()):
            return self.random_unseen(self.rng)
        best, _ = self.best()
        free = [n for n in self.space.neighbours(best) if self.spelling(n) not in self.observed]
        return free[0] if free else self.random_unseen(self.rng)


def test_the_generic_batch_of_a_sequential_strategy_uses_a_believer_copy():
    space = ToySpace()
    st = Greedy(space, None, 12, 5)
    batch = st.ask_batch(3)  # before any value: the copy is told NaN, so it draws at random (skipping pending)
    assert len({space.key(a) for a in batch}) == 3 and set(st.pending) == {space.key(a) for a in batch}
    ref = Greedy(space, None, 12, 5)
    assert space.key(ref.ask()) == space.key(batch[0])  # the first one is the strategy's own ask
    for a in batch:
        st.tell(a, ToyEvaluator().evaluate(a))
    assert not st.pending and len(st.observed) == 3  # it learnt from tells it did not ask itself
    best = max(batch, key=toy_value)
    nxt = st.ask_batch(3)
    # its own ask: the first free neighbour of the best; the copy, told the worst value so far (CL-min) for the
    # pending ones, asks the next free neighbours of the same best
    free = [space.key(n) for n in space.neighbours(best) if space.key(n) not in st.observed]
    assert [space.key(a) for a in nxt] == free[:3]
    # a strategy rebuilt from the saved events (one "batch" event per generic batch) has the same pending ones
    twin = Greedy(space, None, 12, 5)
    twin.load_state_dict(st.state_dict())
    assert list(twin.pending) == list(st.pending)
    # in the loop: 12 distinct queries, deterministic, and q = 1 is the plain sequential search
    r4 = run_search(Greedy(space, None, 12, 5), ToyEvaluator(), new_store(), "g", 12, parallel=4)
    assert len({h["arch"] for h in r4.history}) == 12
    assert summary(r4) == summary(run_search(Greedy(space, None, 12, 5), ToyEvaluator(), new_store(), "g", 12,
                                             parallel=4))
    ra = run_search(Greedy(space, None, 12, 5), ToyEvaluator(), new_store(), "g", 12, parallel=3, mode="async")
    assert len({h["arch"] for h in ra.history}) == 12  # refills of 1 while 2 are pending: all from the copy
    r1 = run_search(Greedy(space, None, 12, 5), ToyEvaluator(), new_store(), "g", 12)
    seq, st1 = [], Greedy(space, None, 12, 5)
    while len(seq) < 12:
        a = st1.ask()
        st1.tell(a, ToyEvaluator().evaluate(a))
        seq.append(space.key(a))
    assert [h["arch"] for h in r1.history] == seq


def test_ask_batch_rejects_a_bad_size_and_robot_waits_for_its_bo_calls():
    space = ToySpace()
    st = make_strategy("robot", space, toy_pool(space), 4, 0, **GOLDEN["options"]["robot"])
    with pytest.raises(StrategyError, match="batch size >= 1, got 0"):
        st.ask_batch(0)
    first = st.ask_batch(6)  # at most T = 4 BO calls; the greedy phase needs all of their values
    assert 1 <= len(first) <= 4 and st.phase == "greedy" and len(st._waiting) == 4
    assert st.ask_batch(2) == []  # nothing until a BO call is told
    with pytest.raises(StrategyError, match="can propose nothing until one of its pending"):
        st.ask()
    for a in first:
        st.tell(a, ToyEvaluator().evaluate(a))
    assert st.T0 == len(first) and len(st.ask_batch(2)) == 2  # greedy now


# ---------------------------------------------------------------- fantasies in hnas.bo
def test_bayesopt_asks_a_batch_with_fantasies_and_conditioned_gp_keeps_the_mean():
    bo = BayesOpt([[-2.0, 2.0]] * 2, acquisition="ucb", rng=3, n_warmup=300, n_starts=2)
    for x in ([0.0, 0.0], [1.0, -1.0], [-1.5, 1.0]):
        bo.tell(x, -float(np.sum(np.square(x))))
    x1 = bo.ask()
    with pytest.raises(BOError, match="still pending"):
        bo.ask()
    with pytest.raises(BOError, match="unknown fantasy 'mean'"):
        bo.ask(fantasy="mean")
    x2, x3 = bo.ask(fantasy="believer"), bo.ask(fantasy="liar")
    assert len({tuple(x1), tuple(x2), tuple(x3)}) == 3 and len(bo.pending) == 3
    bo.tell(x2, 0.5)
    assert len(bo.pending) == 2 and any(np.array_equal(p, x1) for p in bo.pending)
    # Kriging believer: conditioning on the posterior mean leaves the mean unchanged and the variance ~0 there
    gp = GP(rng=np.random.default_rng(0)).fit(np.array([[0.0], [1.0], [2.0]]), np.array([0.0, 1.0, 0.5]))
    xq = np.array([[1.5]])
    m, s = gp.predict(xq)
    g2 = gp.conditioned(xq, m)
    m2, s2 = g2.predict(np.array([[1.5], [0.5]]))
    assert m2[0] == pytest.approx(m[0], abs=1e-6) and s2[0] < 1e-3 < s[0]
    assert g2.predict(np.array([[0.5]]))[0][0] == pytest.approx(gp.predict(np.array([[0.5]]))[0][0], abs=1e-6)
    assert g2.lengthscale == gp.lengthscale and gp.predict(xq)[1][0] == s[0]  # the original is untouched


# ---------------------------------------------------------------- asynchronous mode
class FailingToy(ToyEvaluator):
    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after

    def evaluate(self, arch):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        return super().evaluate(arch)


@pytest.mark.parametrize("name", ["robot", "rea"])
def test_async_mode_records_the_tell_order_and_resumes_exactly(tmp_path, name):
    full, _ = toy_run(name, 1, 12, store=Store(tmp_path / "a.sqlite"), parallel=3, mode="async")
    assert len({h["arch"] for h in full.history}) == 12
    told = [r["info"]["told"] for r in Store(tmp_path / "a.sqlite").trials("run")]
    assert sorted(told) == list(range(12))
    store = Store(tmp_path / "b.sqlite")
    with pytest.raises(RuntimeError, match="simulated crash"):
        toy_run(name, 1, 12, evaluator=FailingToy(fail_after=7), store=store, parallel=3, mode="async")
    assert len(store.trials("run")) == 7 and len(store.trials("run", status="pending")) >= 1
    ev = FailingToy()
    resumed, _ = toy_run(name, 1, 12, evaluator=ev, store=store, parallel=3, mode="async")
    assert resumed.n_replayed == 7 and len(ev.calls) == 5
    assert summary(resumed) == summary(full)


def test_a_resume_with_another_q_is_refused_by_the_replay(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    toy_run("robot", 0, 12, store=store, parallel=4)
    from hnas.search import SearchError

    with pytest.raises(SearchError, match=r"cannot resume: step \d+ .*search.parallel\) changed"):
        toy_run("robot", 0, 12, store=store)


# ---------------------------------------------------------------- executors
def test_local_executor_q4_on_two_processes_matches_the_inline_run(fake_nb201):
    from hnas.benchmarks import load_benchmark
    from hnas.evaluators.table import TableEvaluator
    from hnas.spaces import get_space

    space = get_space("nb201")
    table = load_benchmark("nb201", str(fake_nb201))
    ev = TableEvaluator(table, space, test_metrics=["cifar10_test"])
    rng = np.random.default_rng(0)
    archs = list(space.enumerate())[:300]
    from hnas.search import CandidatePool

    vals = table.values([space.format(a) for a in archs], "cifar10_valid_12ep")
    pool = CandidatePool(archs, [space.format(a) for a in archs],
                         {"good": vals + rng.normal(0, 1, len(archs)), "noise": rng.normal(0, 1, len(archs))})
    opts = {"metrics": ["good", "noise"], "n_warmup": 1000, "n_starts": 3}

    def run(spec, store):
        return run_search(make_strategy("robot", space, pool, 20, 10, **opts), ev, store, "run", 20, parallel=4,
                          executor=spec)

    store = new_store()
    local = run(ExecutorSpec("local", workers=2), store)
    assert len({h["arch"] for h in local.history}) == 20 == local.n_evaluations
    workers = {r["worker"] for r in store.trials("run")}
    assert len(workers) == 2 and all(w.startswith("local-") for w in workers), workers
    assert summary(local) == summary(run(ExecutorSpec("inline"), new_store()))


def _die_on_first_attempt(marker_dir: str, payload: int) -> int:
    """An evaluation whose worker process is killed (as by the OOM killer) the first time it runs a payload,
    or every time when the payload is negative."""
    marker = Path(marker_dir) / str(payload)
    if payload < 0 or not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return payload * 10


def test_a_killed_worker_is_replaced_and_its_evaluation_retried_then_a_clear_error(tmp_path):
    ex = LocalExecutor(Prebuilt(str(tmp_path)), _die_on_first_attempt, [{}], retries=1, start_method="fork",
                       describe=lambda p: f"payload {p}")
    try:
        assert ex.map([1, 2]) == [10, 20]  # each died once and succeeded on the retry
        ex.submit("bad", -1)
        done: list[Done] = []
        while not done:
            done = ex.wait()
        assert isinstance(done[0].error, ExecutorError)
        msg = str(done[0].error)
        assert "payload -1 lost its worker 2 times" in msg and "killed by signal 9" in msg
        assert "search.retries=1" in msg
    finally:
        ex.close()
    with pytest.raises(Exception, match=r"search.retries=-1 must be an integer >= 0"):
        ExecutorSpec("local", retries=-1)
    with pytest.raises(Exception, match=r"search.executor='dask' is not one of: inline, local, ray"):
        ExecutorSpec("dask")


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is installed by the dev extra (pip install -e '.[dev]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(ROOT), str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}})
    yield ray
    ray.shutdown()


def test_ray_q4_completes_20_distinct_queries_and_matches_the_inline_run(ray_local, fake_nb201):
    from hnas.benchmarks import load_benchmark
    from hnas.evaluators.table import TableEvaluator
    from hnas.spaces import get_space

    space = get_space("nb201")
    ev = TableEvaluator(load_benchmark("nb201", str(fake_nb201)), space, test_metrics=["cifar10_test"])

    def run(spec, store):
        st = make_strategy("rea", space, None, 20, 7, population_size=6)
        return run_search(st, ev, store, "run", 20, parallel=4, executor=spec)

    store = new_store()
    res = run(ExecutorSpec("ray"), store)
    assert len({h["arch"] for h in res.history}) == 20 == res.n_evaluations
    assert all(r["worker"].startswith("ray:") for r in store.trials("run"))
    assert summary(res) == summary(run(ExecutorSpec("inline"), new_store()))
    assert ray_local.is_initialized()  # the executor used the running instance and left it running


# ---------------------------------------------------------------- SIGKILL of the driver at several points
KILL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from test_strategies import ToyEvaluator, ToySpace, toy_pool
    from hnas.search import make_strategy, run_search
    from hnas.search.executor import ExecutorSpec
    from hnas.store import Store

    class Slow(ToyEvaluator):
        def __init__(self, calls):
            super().__init__()
            self.calls_file = calls

        def evaluate(self, arch):
            time.sleep(0.25)
            obs = super().evaluate(arch)
            with open(self.calls_file, "a") as f:
                f.write("-".join(map(str, arch)) + "\\n")
            return obs

    if __name__ == "__main__":
        store_path, out, calls = sys.argv[1:4]
        space = ToySpace()
        st = make_strategy("robot", space, toy_pool(space), 12, 0, metrics=["good", "anti", "noise"],
                           n_warmup=1000, n_starts=3)
        res = run_search(st, Slow(calls), Store(store_path), "run", 12, parallel=2,
                         executor=ExecutorSpec("local", workers=2, start_method="fork"))
        with open(out, "w") as f:
            json.dump({"history": [[h["arch"], h["value"], h["cost_s"]] for h in res.history],
                       "best": res.best["arch"], "cost": res.search_cost_s}, f)
    """
)


def test_driver_sigkilled_at_several_points_never_repeats_a_finished_evaluation(tmp_path):
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    store_path, out = tmp_path / "s.sqlite", tmp_path / "res.json"
    store = Store(store_path)

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(store_path), str(out), str(tmp_path / f"calls{i}")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    # kill: as soon as a trial is pending (nothing finished yet), after >= 3 finished, after >= 7 finished
    kill_when = [lambda done, pend: pend >= 1, lambda done, pend: done >= 3, lambda done, pend: done >= 7]
    done_before: list[set[str]] = []
    for i, when in enumerate(kill_when):
        done_before.append({r["arch"] for r in store.trials("run")})
        proc = start(i)
        deadline = time.time() + 120
        while not when(len(store.trials("run")), len(store.trials("run", status="pending"))):
            if proc.poll() is not None:
                pytest.fail(f"search ended before kill point {i}: {proc.stdout.read().decode()[-2000:]}")
            assert time.time() < deadline, f"kill point {i} not reached in 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists()
    done_before.append({r["arch"] for r in store.trials("run")})
    proc = start(len(kill_when))
    assert proc.wait(timeout=180) == 0, proc.stdout.read().decode()[-2000:]
    resumed = json.loads(out.read_text())
    # no incarnation evaluated an architecture the log already had as finished when it started
    for i, before in enumerate(done_before):
        f = tmp_path / f"calls{i}"
        evaluated = set(f.read_text().split()) if f.exists() else set()
        assert not evaluated & before, (i, evaluated & before)
    rows = store.trials("run", status=None)
    assert [r["step"] for r in rows] == list(range(12)) and all(r["status"] == "done" for r in rows)
    # the same result as an uninterrupted run
    ev = ToyEvaluator()
    space = ToySpace()
    st = make_strategy("robot", space, toy_pool(space), 12, 0, **GOLDEN["options"]["robot"])
    full = run_search(st, ev, new_store(), "run", 12, parallel=2)
    assert resumed["history"] == [[h["arch"], h["value"], h["cost_s"]] for h in full.history]
    assert resumed["best"] == full.best["arch"]
    # the workers of the killed drivers did not outlive them (a forked sibling holding the pipe open once kept them)
    deadline = time.time() + 20
    while time.time() < deadline and _processes_running(str(script)):
        time.sleep(0.5)
    assert not _processes_running(str(script))


# ---------------------------------------------------------------- through the config: hnas run / hnas score
def test_hnas_run_with_search_parallel_and_the_run_ids_of_sequential_runs(fake_nb201, tmp_path):
    from test_run import _cfg

    from hnas.experiment.build import config_hash
    from hnas.experiment.runner import run_experiment

    base = ["+experiment=nb201_cifar10", "strategy=rea", "strategy.budget=20", "seed=3", "logger=none", "plot=false",
            f"benchmark.path={fake_nb201}", f"store={tmp_path / 's.sqlite'}"]
    seq = _cfg("run", base)
    # a sequential run keeps the run id it had before the search group existed
    no_group = _cfg("run", base)
    with open_dict(no_group):
        del no_group["search"]
    assert config_hash(seq) == config_hash(no_group)
    q4 = _cfg("run", [*base, "search.parallel=4", "search.workers=2", "search.start_method=fork"])
    assert config_hash(q4) != config_hash(seq)
    assert config_hash(_cfg("run", [*base, "search.parallel=4", "search.executor=ray"])) == config_hash(q4)
    res = run_experiment(q4, tmp_path / "out")
    assert {k: res["search"][k] for k in ("parallel", "mode", "executor")} == {
        "parallel": 4, "mode": "sync", "executor": "local"}
    assert 0 < res["search"]["executor_start_s"] < res["search"]["search_wall_s"] <= res["wall_s"]
    assert len({h["arch"] for h in res["history"]}) == 20 == res["n_evaluations"]
    from hnas.experiment.build import EvaluatorRecipe

    worker_side = EvaluatorRecipe(q4, tmp_path / "out")()  # what a worker builds from the config
    first = res["history"][0]
    assert (worker_side.evaluate(first["arch"]).value, worker_side.evaluate(first["arch"]).cost_s) == (
        first["value"], first["cost_s"])
    with pytest.raises(RuntimeError, match="only the driver may open the SQLite file"):
        EvaluatorRecipe(q4, tmp_path).parts().store.trials("run")
    inline = run_experiment(_cfg("run", [*base, "search.parallel=4", "search.executor=inline",
                                         f"store={tmp_path / 't.sqlite'}"]), tmp_path / "out2")
    assert [h["arch"] for h in inline["history"]] == [h["arch"] for h in res["history"]]
    for bad, msg in (("search.parallel=0", "search.parallel=0 must be an integer >= 1"),
                     ("search.mode=eager", "search.mode='eager' is not one of: sync, async"),
                     ("search.executor=dask", "search.executor='dask' is not one of: inline, local, ray"),
                     ("+search.threads=2", r"search has no key\(s\) \['threads'\]")):
        with pytest.raises(Exception, match=msg):
            run_experiment(_cfg("run", [*base, bad]), tmp_path / "bad")


def test_hnas_score_shards_the_pool_over_workers_and_stores_the_same_scores(fake_nb201, tmp_path):
    from test_run import _cfg

    from hnas.cli.score import score_pool

    over = ["data=synthetic", "pool.size=6", "pool.seed=1", "proxies.names=[params,synflow,grad_norm]",
            "proxies.batch.size=8", "space.build.C=4", "space.build.N=1", f"benchmark.path={fake_nb201}",
            "timing_archs=0", "plots=false"]
    one = score_pool(_cfg("score", [*over, f"store={tmp_path / 'a.sqlite'}"]), tmp_path / "o1")
    two = score_pool(_cfg("score", [*over, f"store={tmp_path / 'b.sqlite'}", "search.workers=2",
                                    "search.start_method=fork"]), tmp_path / "o2")
    import pandas as pd

    a, b = pd.read_csv(tmp_path / "o1" / "scores.csv"), pd.read_csv(tmp_path / "o2" / "scores.csv")
    pd.testing.assert_frame_equal(a, b)  # every score the same number (same seeds, same builds)
    assert Store(tmp_path / "b.sqlite").count_scores() == Store(tmp_path / "a.sqlite").count_scores() == 18
    assert two["proxies"]["synflow"]["spearman"] == one["proxies"]["synflow"]["spearman"]


# ---------------------------------------------------------------- Hydra sweep launchers
def test_a_two_job_sweep_runs_on_the_joblib_launcher(fake_nb201, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher",
                        reason="the joblib launcher plugin is installed by the dev extra (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hnas", "run", "-m", "+experiment=nb201_cifar10", "strategy=random",
           "strategy.budget=5", "seed=0,1", f"benchmark.path={fake_nb201}", "logger=none", "plot=false",
           f"store={tmp_path / 's.sqlite'}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted((tmp_path / "sweep").rglob("result.json"))
    assert len(results) == 2
    seeds = sorted(json.loads(p.read_text())["seed"] for p in results)
    assert seeds == [0, 1] and all(json.loads(p.read_text())["n_evaluations"] == 5 for p in results)
    assert "Joblib.Parallel(n_jobs=2" in proc.stderr + proc.stdout  # the jobs went through joblib, 2 at a time


def test_a_launcher_whose_plugin_is_missing_ends_in_one_line_naming_the_extra(monkeypatch, capsys):
    from hnas import cli

    monkeypatch.setitem(cli.LAUNCHER_PLUGINS, "joblib", ("hydra_plugins.no_such_launcher_plugin", "joblib"))
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "-m", "seed=0,1", "hydra/launcher=joblib"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: hydra/launcher=joblib needs the Hydra plugin")
    assert "pip install 'hnas[joblib]'" in err
    monkeypatch.undo()
    # every launcher config in conf/ is covered by an extra of pyproject.toml
    configs = {p.stem for p in (ROOT / "hnas" / "conf" / "hydra" / "launcher").glob("*.yaml")}
    assert configs == set(cli.LAUNCHER_PLUGINS) == {"joblib", "submitit_slurm", "submitit_local"}
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, (module, extra) in cli.LAUNCHER_PLUGINS.items():
        plugin = module.split(".")[-1].replace("_", "-")
        assert any(d.startswith(plugin) for d in extras[extra]), (name, extras[extra])


def test_the_ray_and_slurm_recipes_parse_and_run_one_search_on_ray():
    scripts = [ROOT / "launch" / "ray" / f"{n}.sh" for n in ("head", "worker", "search")]
    scripts.append(ROOT / "launch" / "slurm" / "ray_search.sbatch")
    for path in scripts:
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, (path, proc.stderr)
        assert os.access(path, os.X_OK), path
    text = {p.name: p.read_text() for p in scripts}
    assert "ray start --head" in text["head.sh"] and "ray start --address" in text["worker.sh"]
    for name in ("search.sh", "ray_search.sbatch"):
        assert "search.executor=ray" in text[name] and "search.ray.address=" in text[name]
    assert text["ray_search.sbatch"].count("ray start") == 2 and "#SBATCH --nodes=" in text["ray_search.sbatch"]


def _processes_running(marker: str) -> list[int]:
    """Pids of this machine's processes whose command line mentions ``marker``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_workers_sharing_one_gpu_get_a_share_of_the_cores_each(monkeypatch):
    """Four scorers on one GPU: each sees that GPU and a quarter of the cores as torch/OpenMP threads."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    envs = ExecutorSpec("local", workers=4).slot_envs(1)
    assert envs == [{"CUDA_VISIBLE_DEVICES": "0", "HNAS_WORKER_THREADS": "4", "OMP_NUM_THREADS": "4"}] * 4
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert ExecutorSpec("local", workers=3).slot_envs(1) == [{"HNAS_WORKER_THREADS": "5", "OMP_NUM_THREADS": "5"}] * 3


def test_mps_running_looks_for_the_control_pipe(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    (tmp_path / "control").touch()
    assert mps_running()
