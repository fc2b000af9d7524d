"""GP, acquisitions and the bayes_opt-1.2.0-style ask/tell loop, checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hnas.bo import (
    GP,
    AcquisitionError,
    BayesOpt,
    BOError,
    expected_improvement,
    make_acquisition,
    matern52,
    maximize_box,
    maximize_discrete,
    probability_of_improvement,
    ucb,
)
from hnas.bo.optimize import legacy_rng

SQ5 = math.sqrt(5.0)


def matern_by_hand(r: float) -> float:
    return (1 + SQ5 * r + 5.0 / 3.0 * r * r) * math.exp(-SQ5 * r)


def test_matern52_values():
    x = torch.tensor([[0.0], [1.0], [0.5]], dtype=torch.float64)
    k = matern52(x, x, 1.0)
    assert k[0, 1].item() == pytest.approx(0.5239941088318203, abs=1e-12)
    assert k[0, 2].item() == pytest.approx(0.8286491424181253, abs=1e-12)
    assert torch.allclose(torch.diagonal(k), torch.ones(3, dtype=torch.float64))
    # the length scale divides distances: r = 1 at lengthscale 2 is r = 0.5 at lengthscale 1
    assert matern52(x[:1], x[1:2], 2.0).item() == pytest.approx(matern_by_hand(0.5), abs=1e-12)


def test_gp_posterior_equals_hand_computed_matern_posterior():
    """1-D toy X=[0,1], y=[0,1], length scale fixed at 1, alpha 1e-6, standardised targets."""
    alpha = 1e-6
    gp = GP(alpha=alpha, optimize=False).fit(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))
    # by hand: y standardised to [-1, 1] (mean 0.5, std 0.5); K = [[1+a, k1], [k1, 1+a]]
    k1 = matern_by_hand(1.0)
    kinv = np.array([[1 + alpha, -k1], [-k1, 1 + alpha]]) / ((1 + alpha) ** 2 - k1**2)
    yn = np.array([-1.0, 1.0])
    for xs in (0.5, 0.25, 1.7):
        ks = np.array([matern_by_hand(abs(xs - 0.0)), matern_by_hand(abs(xs - 1.0))])
        mean = 0.5 + 0.5 * ks @ kinv @ yn
        std = 0.5 * math.sqrt(1.0 - ks @ kinv @ ks)
        m, s = gp.predict(np.array([[xs]]))
        assert m[0] == pytest.approx(mean, abs=1e-10)
        assert s[0] == pytest.approx(std, abs=1e-10)
    m, s = gp.predict(np.array([[0.5]]))
    assert m[0] == pytest.approx(0.5, abs=1e-12)  # symmetry
    assert s[0] == pytest.approx(0.15724, abs=1e-4)


def test_gp_marginal_likelihood_by_hand_and_fit_maximises_it():
    x = np.linspace(0.0, 3.0, 10)[:, None]
    y = np.sin(x[:, 0])
    gp = GP(rng=np.random.default_rng(0)).fit(x, y)
    yn = (y - y.mean()) / y.std()
    ell = 0.7
    k = np.array([[matern_by_hand(abs(a - b) / ell) for b in x[:, 0]] for a in x[:, 0]]) + 1e-6 * np.eye(10)
    lml = -0.5 * yn @ np.linalg.solve(k, yn) - 0.5 * np.linalg.slogdet(k)[1] - 5 * math.log(2 * math.pi)
    assert gp.log_marginal_likelihood(ell) == pytest.approx(lml, abs=1e-9)
    best = gp.log_marginal_likelihood(gp.lengthscale)
    for ls in np.logspace(-3, 3, 61):
        assert best >= gp.log_marginal_likelihood(float(ls)) - 1e-6
    assert 0.1 < gp.lengthscale < 10  # a smooth function: an interior optimum


def test_gp_duplicate_and_near_duplicate_inputs_do_not_crash():
    rng = np.random.default_rng(1)
    base = rng.uniform(-1, 1, size=(4, 3))
    x = np.concatenate([base, base, base + 1e-13, np.repeat(base[:1], 5, axis=0)])
    y = np.concatenate([np.arange(4.0), np.arange(4.0) + 0.5, np.arange(4.0), np.zeros(5)])
    gp = GP(rng=np.random.default_rng(0)).fit(x, y)
    m, s = gp.predict(rng.uniform(-1, 1, size=(7, 3)))
    assert np.isfinite(m).all() and np.isfinite(s).all() and (s >= 0).all()
    # all inputs identical, constant target: still fits (std handled like scikit-learn: scale 1)
    gp2 = GP(rng=np.random.default_rng(0)).fit(np.zeros((6, 2)), np.full(6, 3.0))
    m2, _ = gp2.predict(np.zeros((1, 2)))
    assert m2[0] == pytest.approx(3.0)


def test_gp_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        GP().fit(np.array([[0.0], [1.0]]), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="shape"):
        GP().fit(np.zeros((3, 1)), np.zeros(2))


def test_acquisition_closed_forms():
    mean, std = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    # a = 0.5, z = 0.25: EI = 0.5*Phi(0.25) + 2*phi(0.25); PI = Phi(0.25)
    assert expected_improvement(mean, std, 0.5).item() == pytest.approx(1.0726893964471604, abs=1e-12)
    assert probability_of_improvement(mean, std, 0.5).item() == pytest.approx(0.5987063256829237, abs=1e-12)
    assert ucb(mean, std).item() == pytest.approx(1.0 + 2.576 * 2.0)
    assert expected_improvement(mean, std, 0.5, xi=0.5).item() == pytest.approx(2 * 0.3989422804014327)
    with pytest.raises(AcquisitionError, match="unknown acquisition 'foo'"):
        make_acquisition("foo", GP(), 0.0)


def test_maximize_box_and_discrete():
    target = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def acq(x: torch.Tensor) -> torch.Tensor:
        return -((x - target) ** 2).sum(-1)

    x = maximize_box(acq, np.array([[-1.0, 1.0], [-1.0, 1.0]]), np.random.default_rng(0), n_warmup=200)
    assert np.allclose(x, [0.3, -0.7], atol=1e-5)
    # the maximiser on the boundary is clipped into the box
    x = maximize_box(lambda z: z.sum(-1), np.array([[0.0, 2.0]]), np.random.default_rng(0), n_warmup=50)
    assert x[0] == pytest.approx(2.0)
    cands = np.array([[0.0], [2.0], [1.0], [2.0]])
    assert maximize_discrete(lambda z: z[:, 0], cands) == 1
    assert maximize_discrete(lambda z: z[:, 0], cands, last=True) == 3


def test_bayesopt_queue_semantics_probes_first():
    bo = BayesOpt([[0.0, 1.0], [-4.0, 0.0]], acquisition="ei", rng=3, n_warmup=500, n_starts=2)
    probes = [[-2.0, t] for t in np.linspace(0, 1, 3)]
    for p in probes:
        bo.probe(p)
    asked = []
    for _ in range(6):
        x = bo.ask()
        asked.append(x)
        bo.tell(x, -float((x[1] - 0.6) ** 2))
    assert [a.tolist() for a in asked[:3]] == probes
    assert bo.n_random == 0  # probes queued: no random point
    assert bo.n_suggested == 3
    assert bo.n_observed == 6


def test_bayesopt_one_random_point_then_gp_matches_randomstate():
    bounds = [[-1.0, 1.0]] * 3
    bo = BayesOpt(bounds, rng=11, n_warmup=500, n_starts=2)
    x0 = bo.ask()
    # bayes_opt's first point is RandomState(seed).uniform per dimension (its TargetSpace stream)
    assert np.array_equal(x0, np.random.RandomState(11).uniform([-1.0] * 3, [1.0] * 3))
    bo.tell(x0, 1.0)
    T = 5
    for _ in range(T - 1):
        x = bo.ask()
        bo.tell(x, float(-np.sum(x**2)))
    assert (bo.n_random, bo.n_suggested, bo.n_observed) == (1, T - 1, T)


def test_bayesopt_protocol_errors_and_cache():
    bo = BayesOpt([[0.0, 1.0]], rng=0, n_warmup=100, n_starts=1)
    x = bo.ask()
    with pytest.raises(BOError, match="still pending"):
        bo.ask()
    bo.tell(x, 2.0)
    bo.tell(x, 5.0)  # an observed point keeps its first value (bayes_opt's cache)
    assert bo.n_observed == 1 and bo.lookup(x) == 2.0
    with pytest.raises(BOError, match="has 2 coordinates"):
        bo.probe([0.1, 0.2])
    with pytest.raises(BOError, match="lower < upper"):
        BayesOpt([[1.0, 0.0]])
    with pytest.raises(BOError, match="unknown acquisition"):
        BayesOpt([[0.0, 1.0]], acquisition="thompson")


def test_bayesopt_is_deterministic_and_optimises():
    def run(seed: int) -> list[list[float]]:
        bo = BayesOpt([[-2.0, 2.0]] * 2, acquisition="ei", rng=seed, n_warmup=300, n_starts=2)
        out = []
        for _ in range(10):
            x = bo.ask()
            bo.tell(x, float(-np.sum((x - 0.5) ** 2)))
            out.append(x.tolist())
        return out

    a, b = run(5), run(5)
    assert a == b
    assert run(6) != a
    best = max(a, key=lambda x: -np.sum((np.array(x) - 0.5) ** 2))
    assert np.sum((np.array(best) - 0.5) ** 2) < 0.02  # a random point has E[dist^2] ~ 3


def test_legacy_rng_matches_randomstate():
    g, r = legacy_rng(19), np.random.RandomState(19)
    assert np.array_equal(g.uniform(-1, 1, size=(4, 3)), r.uniform(-1, 1, size=(4, 3)))


def test_make_acquisition_routes_each_name_and_its_parameters():
    """Each name reaches its own formula with its own parameter: 'pi'/'poi' -> PI (with xi), 'ei' -> EI (with
    xi), 'ucb' -> UCB (with kappa); checked against the closed forms on a fitted GP's posterior."""
    gp = GP(rng=np.random.default_rng(0))
    gp.fit(np.array([[0.0], [0.5], [1.0]]), np.array([1.0, 3.0, 2.0]))
    x = torch.tensor([[0.25], [0.8]], dtype=torch.float64)
    mean, std = gp.posterior(x)
    y_max = 3.0
    pi = make_acquisition("pi", gp, y_max, xi=0.3)(x)
    assert torch.allclose(pi, probability_of_improvement(mean, std, y_max, xi=0.3))
    assert torch.allclose(make_acquisition("poi", gp, y_max, xi=0.3)(x), pi)
    assert not torch.allclose(pi, probability_of_improvement(mean, std, y_max, xi=0.0))  # xi reached it
    assert not torch.allclose(pi, ucb(mean, std))
    ei = make_acquisition("ei", gp, y_max, xi=0.3)(x)
    assert torch.allclose(ei, expected_improvement(mean, std, y_max, xi=0.3))
    assert not torch.allclose(ei, expected_improvement(mean, std, y_max, xi=0.0))
    assert torch.allclose(make_acquisition("ucb", gp, y_max, kappa=0.7)(x), mean + 0.7 * std)


def test_bayesopt_passes_xi_to_its_acquisition():
    """Two BayesOpt runs differing only in xi propose different points once the GP drives the search."""
    def proposals(xi: float) -> list[list[float]]:
        bo = BayesOpt([[-2.0, 2.0]], acquisition="ei", xi=xi, rng=3, n_warmup=300, n_starts=2)
        out = []
        for _ in range(6):
            x = bo.ask()
            bo.tell(x, float(-np.sum((x - 0.5) ** 2)))
            out.append(x.tolist())
        return out

    a, b = proposals(0.0), proposals(5.0)
    assert a[0] == b[0] and a != b  # the random first point is the same, the GP's suggestions are not


def test_bayesopt_tells_a_non_finite_target_as_the_worst_observed_value():
    bo = BayesOpt([[0.0, 1.0]], rng=0, n_warmup=50, n_starts=1)
    for x, y in (([0.1], 4.0), ([0.5], 2.0), ([0.9], float("nan")), ([0.7], float("inf"))):
        bo.probe(x)
        bo.tell(bo.ask(), y)
    assert bo.y == [4.0, 2.0, 2.0, 2.0] and all(np.isfinite(bo.y))
    assert bo.lookup([0.9]) == 2.0
    fresh = BayesOpt([[0.0, 1.0]], rng=0)
    fresh.probe([0.2])
    fresh.tell(fresh.ask(), float("-inf"))
    assert fresh.y == [0.0]
