"""Acquisition functions of bayes_opt 1.2.0 (methods.md §1.1), in torch so L-BFGS-B gets exact gradients.

All are maximised. ``y_max`` is the best observed target in original units (the GP predicts in those units).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from hnas.bo.gp import GP

ACQUISITIONS = ("ucb", "ei", "poi")
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class AcquisitionError(ValueError):
    """Unknown acquisition name or bad parameter."""


def _cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / _SQRT2)


def _pdf(z: torch.Tensor) -> torch.Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def ucb(mean: torch.Tensor, std: torch.Tensor, kappa: float = 2.576) -> torch.Tensor:
    """Upper confidence bound: mean + kappa * std."""
    return mean + kappa * std


def expected_improvement(
    mean: torch.Tensor, std: torch.Tensor, y_max: float, xi: float = 0.0
) -> torch.Tensor:
    """EI = a*Phi(a/sd) + sd*phi(a/sd) with a = mean - y_max - xi."""
    a = mean - y_max - xi
    z = a / std
    return a * _cdf(z) + std * _pdf(z)


def probability_of_improvement(
    mean: torch.Tensor, std: torch.Tensor, y_max: float, xi: float = 0.0
) -> torch.Tensor:
    """PI = Phi((mean - y_max - xi) / sd)."""
    return _cdf((mean - y_max - xi) / std)


def make_acquisition(
    kind: str, gp: GP, y_max: float, kappa: float = 2.576, xi: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x (n, d) -> acquisition (n,)`` for a fitted GP; ``kind`` in ucb / ei / poi (``pi`` accepted)."""
    kind = {"pi": "poi"}.get(kind.lower(), kind.lower())
    if kind not in ACQUISITIONS:
        raise AcquisitionError(f"unknown acquisition {kind!r}; valid: {', '.join(ACQUISITIONS)} (or 'pi')")
    if kind == "ucb":
        return lambda x: ucb(*gp.posterior(x), kappa=kappa)
    if kind == "ei":
        return lambda x: expected_improvement(*gp.posterior(x), y_max=y_max, xi=xi)
    return lambda x: probability_of_improvement(*gp.posterior(x), y_max=y_max, xi=xi)
