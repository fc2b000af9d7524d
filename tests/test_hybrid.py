"""strategy=hybrid and its ingredients: combination prior, normalisation, pool neighbourhood, additive GP,
local moves, the EI switch; ask/tell, state and replay (resume after SIGKILL is in test_loop.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_strategies import ToyEvaluator, ToySpace, new_store, toy_pool, toy_value

from hnas.bo.additive import AdditiveGP, KernelBlock
from hnas.bo.gp import GPError
from hnas.evaluators import Observation
from hnas.search import CandidatePool, StrategyError, make_strategy, run_search
from hnas.search.combination import CombinationError, combination_prior, normalise, rank_normalise
from hnas.search.neighbourhood import PoolNeighbourhood
from hnas.spaces import get_space

FAST = {"metrics": ["good", "anti", "noise"], "n_weights": 2048}


@pytest.fixture()
def space() -> ToySpace:
    return ToySpace()


@pytest.fixture()
def pool(space) -> CandidatePool:
    return toy_pool(space)


# ---------------------------------------------------------------- normalisation
def test_rank_normalise_by_hand():
    m = np.array([[3.0, 5.0], [1.0, 5.0], [2.0, 5.0], [np.nan, 5.0], [2.0, 5.0]])
    r = rank_normalise(m)
    # column 0: ranks of 3, 1, 2, 2 are 4, 1, 2.5, 2.5 -> (r - 1) / 3; NaN -> 0; constant column -> 0
    assert r[:, 0] == pytest.approx([1.0, 0.0, 0.5, 0.0, 0.5])
    assert r[:, 1] == pytest.approx([0.0] * 5)


def test_normalise_minmax_and_bad_name():
    m = np.array([[0.0, 1e40], [5.0, 1.0], [10.0, 3.0]])
    assert normalise(m, "minmax")[:, 0] == pytest.approx([0.0, 0.5, 1.0])
    # a heavy tail squashes the rest to ~0 under min-max, ranks keep the order evenly spaced
    assert normalise(m, "minmax")[:, 1] == pytest.approx([1.0, 0.0, 2e-40])
    assert normalise(m, "rank")[:, 1] == pytest.approx([1.0, 0.0, 0.5])
    with pytest.raises(CombinationError, match="unknown normalisation 'zscore'; valid: minmax, rank"):
        normalise(m, "zscore")


# ---------------------------------------------------------------- combination prior
def test_combination_prior_cone_masses_by_hand():
    """Points A(1,0), B(0,1), C(0,0), D(.4,.4); w ~ U[-1,1]^2. D lies inside the hull (never the argmax);
    A wins when w1 > max(0, w2): area 1.5 of 4 -> 0.375; B likewise; C when both w < 0: 0.25."""
    f = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.4, 0.4]])
    prior = combination_prior(f, 40_000, np.random.default_rng(0))
    assert prior.mass == pytest.approx([0.375, 0.375, 0.25, 0.0], abs=0.01)
    assert set(prior.vertices[:2].tolist()) == {0, 1} and prior.vertices[2] == 2 and len(prior.vertices) == 3
    assert prior.centroid[2] == pytest.approx([-0.5, -0.5], abs=0.02)  # C's cone is the negative quadrant
    assert prior.centroid[3] == pytest.approx([0.0, 0.0])
    # positive weights only: A and B split the box along w1 = w2, C never wins
    pos = combination_prior(f, 20_000, np.random.default_rng(1), bounds=(0.0, 1.0))
    assert pos.mass == pytest.approx([0.5, 0.5, 0.0, 0.0], abs=0.02)


def test_combination_prior_rejects_bad_input():
    with pytest.raises(CombinationError, match="normalise them first"):
        combination_prior(np.array([[np.nan, 1.0]]), 10, np.random.default_rng(0))
    with pytest.raises(CombinationError, match="n_samples must be a positive integer, got 0"):
        combination_prior(np.ones((2, 2)), 0, np.random.default_rng(0))
    with pytest.raises(CombinationError, match=r"lower < upper, got \(1.0, -1.0\)"):
        combination_prior(np.ones((2, 2)), 5, np.random.default_rng(0), bounds=(1.0, -1.0))


# ---------------------------------------------------------------- pool neighbourhood
def test_pool_neighbourhood_on_the_toy_space(space):
    archs = [(0, 0, 0), (1, 0, 0), (0, 2, 0), (1, 1, 1), (0, 0, 3)]
    pool = CandidatePool(archs, [space.key(a) for a in archs])
    nb = PoolNeighbourhood(space, pool)
    assert nb.of(0) == [1, 2, 4]  # one edit away and in the pool
    assert nb.of(3) == []  # (1,1,1) differs from every pool member in at least two positions
    assert nb.index((0, 2, 0)) == 2 and nb.index((3, 3, 3)) is None


def test_pool_neighbourhood_maps_isomorphic_spellings_to_the_pool_member():
    """NB201 spellings with the same canonical key are one network: a neighbour spelled differently from the
    pool member still maps to it."""
    sp = get_space("nb201")
    base = ("nor_conv_3x3",) * 6
    by_key: dict[str, list] = {}
    for nbr in sp.neighbours(base):
        for nbr2 in sp.neighbours(nbr):
            by_key.setdefault(sp.key(nbr2), []).append(nbr2)
    twins = next(v for v in by_key.values() if len({sp.format(a) for a in v}) > 1)
    a, b = sorted({sp.format(t) for t in twins})[:2]
    a, b = sp.parse(a), sp.parse(b)
    assert sp.key(a) == sp.key(b) and sp.format(a) != sp.format(b)
    pool = CandidatePool([base, a], [sp.format(base), sp.format(a)])
    nb = PoolNeighbourhood(sp, pool)
    assert nb.index(b) == 1  # the other spelling is found as pool member 1


# ---------------------------------------------------------------- additive GP
def test_additive_gp_learns_which_linear_column_matters():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(25, 3))
    y = 2.0 * x[:, 0] + rng.normal(0, 0.01, 25)
    gp = AdditiveGP([KernelBlock("linear", 0, 3)], n_restarts=1, rng=np.random.default_rng(1)).fit(x, y)
    v = gp.hyperparameters()["block0_variances"]
    assert v[0] > 100 * max(v[1], v[2])
    xq = np.array([[0.5, 0.3, -0.7], [-0.25, -0.9, 0.2]])
    mean, std = gp.predict(xq)
    assert mean == pytest.approx([1.0, -0.5], abs=0.05) and (std < 0.1).all()


def test_additive_gp_matern_block_interpolates_and_is_uncertain_far_away():
    x = np.linspace(0, 3, 8)[:, None]
    y = np.sin(2 * x[:, 0])
    gp = AdditiveGP([KernelBlock("matern", 0, 1)], rng=np.random.default_rng(0)).fit(x, y)
    mean, std = gp.predict(x)
    assert mean == pytest.approx(y, abs=0.05)
    _, far = gp.predict(np.array([[30.0]]))
    assert far[0] > 5 * std.max()


def test_additive_gp_errors():
    with pytest.raises(GPError, match="kernel block kind 'rbf' is not one of linear, matern"):
        KernelBlock("rbf", 0, 2)
    with pytest.raises(GPError, match="columns 2:2 are empty"):
        KernelBlock("linear", 2, 2)
    gp = AdditiveGP([KernelBlock("linear", 0, 3)])
    with pytest.raises(GPError, match=r"fit wants x of shape \(n, >= 3\)"):
        gp.fit(np.ones((4, 2)), np.ones(4))
    with pytest.raises(GPError, match="call fit\\(\\) first"):
        gp.predict(np.ones((1, 3)))


# ---------------------------------------------------------------- the strategy
def test_options_are_checked(space, pool):
    with pytest.raises(StrategyError, match="hybrid switch 'greedy' is not one of: ei, local_first, global_first"):
        make_strategy("hybrid", space, pool, 10, 0, **FAST, switch="greedy")
    with pytest.raises(StrategyError, match="hybrid normalisation 'z' is not one of: minmax, rank"):
        make_strategy("hybrid", space, pool, 10, 0, **FAST, normalisation="z")
    with pytest.raises(StrategyError, match="local_rank='cone' needs the combination prior"):
        make_strategy("hybrid", space, pool, 10, 0, **FAST, prior=False)
    with pytest.raises(StrategyError, match=r"has no option\(s\) \['kappa'\]"):
        make_strategy("hybrid", space, pool, 10, 0, kappa=1.0)


def test_first_query_is_the_largest_cone(space, pool):
    """With positive weights on one proxy, the prior has a single vertex: that proxy's argmax."""
    st = make_strategy("hybrid", space, pool, 5, 0, metrics=["good"], weight_bounds=(0.0, 1.0), n_weights=64)
    assert st.cones.vertices.tolist() == [int(np.argmax(pool.scores["good"]))]
    a = st.ask()
    assert st.spelling(a) == pool.spellings[int(np.argmax(pool.scores["good"]))]
    assert st.moves[0]["move"] == "prior"


def test_local_move_follows_the_lineage_cone(space, pool):
    """switch=local_first: after the first vertex, the next query is its pool neighbour with the highest score
    under that vertex's cone centroid."""
    st = make_strategy("hybrid", space, pool, 5, 0, **FAST, switch="local_first")
    a = st.ask()
    st.tell(a, ToyEvaluator().evaluate(a))
    i = pool.index_of[st.spelling(a)]
    w = st.cones.centroid[i]
    nbrs = [pool.index_of[space.key(b)] for b in space.neighbours(a)]
    expected = max(nbrs, key=lambda j: (float(st.features[j] @ w), -j))
    b = st.ask()
    assert st.spelling(b) == pool.spellings[expected] and st.moves[1]["move"] == "local"


def test_global_first_takes_vertices_in_mass_order(space, pool):
    st = make_strategy("hybrid", space, pool, 6, 0, **FAST, switch="global_first")
    n = min(4, len(st.cones.vertices))
    res, _ = _run(st, n)
    assert [h["arch"] for h in res.history] == [pool.spellings[int(v)] for v in st.cones.vertices[:n]]
    assert all(m["move"] == "prior" for m in st.moves)


def test_ei_switch_queries_the_proposal_with_larger_ei(space, pool):
    st = make_strategy("hybrid", space, pool, 12, 0, **FAST)
    _run(st, 12)
    compared = [m for m in st.moves if "ei_global" in m]
    assert len(compared) >= 3
    for m in compared:
        assert (m["move"] == "local") == (m["ei_local"] > m["ei_global"])
        assert m["ei_local"] >= 0 and m["ei_global"] >= 0


def test_hybrid_finds_the_toy_optimum_and_queries_distinct_archs(space, pool):
    st = make_strategy("hybrid", space, pool, 12, 0, **FAST)
    res, ev = _run(st, 12)
    assert res.best["arch"] == "3-0-2" and res.best["value"] == 100.0
    assert len({space.key(a) for a in ev.calls}) == 12
    assert st.summary()["moves"].get("local", 0) >= 1


def test_without_prior_the_gp_proposes_by_ei(space, pool):
    st = make_strategy("hybrid", space, pool, 10, 3, **FAST, prior=False, local_rank="gp")
    _run(st, 10)
    assert st.cones is None and st.moves[0]["move"] == "random"
    assert {m["move"] for m in st.moves[2:]} <= {"ei", "local"}


def test_encoding_is_part_of_the_gp_input_only_when_asked(space, pool):
    with_enc = make_strategy("hybrid", space, pool, 5, 0, **FAST)
    without = make_strategy("hybrid", space, pool, 5, 0, **FAST, encoding=False)
    assert with_enc._inputs([0, 1]).shape == (2, 3 + 12)  # 3 proxies + one-hot of 3 positions x 4 ops
    assert without._inputs([0, 1]).shape == (2, 3)


def test_deterministic_and_state_round_trip(space, pool):
    a = make_strategy("hybrid", space, pool, 10, 4, **FAST)
    for _ in range(5):
        x = a.ask()
        a.tell(x, ToyEvaluator().evaluate(x))
    b = make_strategy("hybrid", space, pool, 10, 4, **FAST)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        xa, xb = a.ask(), b.ask()
        assert a.spelling(xa) == b.spelling(xb)
        a.tell(xa, ToyEvaluator().evaluate(xa))
        b.tell(xb, ToyEvaluator().evaluate(xb))
    with pytest.raises(StrategyError, match="seed=4 but this strategy has seed=5"):
        make_strategy("hybrid", space, pool, 10, 5, **FAST).load_state_dict(a.state_dict())


def test_pending_asks_are_distinct(space, pool):
    """Two asks before any tell (the future batched loop) give two different architectures."""
    st = make_strategy("hybrid", space, pool, 10, 0, **FAST)
    a, b = st.ask(), st.ask()
    assert st.spelling(a) != st.spelling(b)


def test_nan_observations_do_not_break_the_gp(space, pool):
    st = make_strategy("hybrid", space, pool, 8, 0, **FAST)
    for step in range(8):
        a = st.ask()
        v = float("nan") if step in (1, 4) else toy_value(a)
        st.tell(a, Observation(v, 1.0))
    assert np.isfinite(st.best()[1])


# ---------------------------------------------------------------- real NB201 + NAS-Bench-Suite-Zero
@pytest.mark.slow
def test_hybrid_nb201_suite_zero_reaches_13714_within_10(shared_data):
    import pandas as pd

    sp = get_space("nb201")
    nb = pd.read_csv(shared_data / "nb201" / "nb201.csv").set_index("index")
    zc = pd.read_csv(shared_data / "nb201" / "suite_zero_cifar10.csv")
    names = {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp", "fisher": "fisher",
             "synflow": "synflow", "jacob_cov": "jacov"}
    archs = [sp.from_index(int(i)) for i in zc["index"]]
    pool = CandidatePool(archs, [sp.format(a) for a in archs], {k: zc[v].to_numpy() for k, v in names.items()})
    val = nb["cifar10_valid_12ep"].to_numpy()

    class TableEvaluator:
        def evaluate(self, arch):
            return Observation(float(val[sp.index(arch)]), 1.0)

    res = run_search(make_strategy("hybrid", sp, pool, 10, 10), TableEvaluator(), new_store(), "s", 10)
    assert sp.index(sp.parse(res.best["arch"])) == 13714


def _run(strategy, T: int):
    ev = ToyEvaluator()
    return run_search(strategy, ev, new_store(), "t", budget_queries=T), ev
