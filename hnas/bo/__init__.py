"""Bayesian optimisation: exact float64 GP (Matern-5/2), UCB/EI/PI, box and discrete acquisition optimisers,
and ``BayesOpt`` — an ask/tell loop with bayes_opt 1.2.0 semantics (methods.md §1.1), with fantasised
observations for batches of pending points."""

from hnas.bo.acquisition import (
    ACQUISITIONS,
    AcquisitionError,
    expected_improvement,
    make_acquisition,
    probability_of_improvement,
    ucb,
)
from hnas.bo.gp import GP, GPError, matern52, safe_cholesky
from hnas.bo.optimize import FANTASIES, BayesOpt, BOError, maximize_box, maximize_discrete

__all__ = [
    "ACQUISITIONS",
    "AcquisitionError",
    "BOError",
    "FANTASIES",
    "BayesOpt",
    "GP",
    "GPError",
    "expected_improvement",
    "make_acquisition",
    "matern52",
    "maximize_box",
    "maximize_discrete",
    "probability_of_improvement",
    "safe_cholesky",
    "ucb",
]
