"""Exact GP whose kernel is a sum of blocks over column groups: ARD-linear and Matern-5/2.

Why a second GP beside ``hnas.bo.gp.GP``: that one reproduces bayes_opt (one isotropic length scale over all
inputs), right for the published HNAS/RoBoT runs. A surrogate over *architectures* described by two very
different kinds of input -- a handful of proxy scores and a one-hot cell encoding -- needs them kept apart:

* ``linear`` block: sum_j v_j x_j x'_j, i.e. Bayesian linear regression on those columns with one prior
  variance per column (ARD). Its marginal-likelihood fit is how proxy weights are learned from queries.
* ``matern`` block: s^2 * Matern-5/2(|x - x'| / l) on the encoding (GPyTorch's ``MaternKernel``, through
  ``hnas.bo.gp.matern52``): architectures a few edits apart have correlated accuracies.

Targets are standardised; hyper-parameters are fitted by MAP (marginal likelihood plus weak log-normal priors,
which keep a fit on 3-20 points from collapsing to a zero length scale or noise) with L-BFGS-B from a default
start, the previous optimum (warm start) and ``n_restarts`` random starts drawn from the given Generator, so a
fit is a deterministic function of (rng state, data). float64 throughout, Cholesky with a jitter floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from hnas.bo.gp import DTYPE, GPError, matern52, safe_cholesky, single_thread

KINDS = ("linear", "matern")
# log-normal priors (mean, std of the log) on standardised targets
_PRIOR_LOG_VAR = (0.0, 3.0)  # linear variances and Matern outputscale: log v ~ N(0, 3^2) (v = exp(2*theta))
_PRIOR_LOG_LS = (math.log(2.0), 1.0)  # Matern length scale
_PRIOR_LOG_NOISE = (math.log(1e-2), 2.0)
_BOUNDS_LOG_SCALE = (-5.0, 3.0)
_BOUNDS_LOG_LS = (-3.0, 4.0)
_BOUNDS_LOG_NOISE = (-12.0, 1.0)
_BOUNDS_MEAN = (-5.0, 5.0)
NOISE_FLOOR = 1e-4


@dataclass(frozen=True)
class KernelBlock:
    """One additive kernel term over the columns ``start:stop`` of the input matrix."""

    kind: str
    start: int
    stop: int
    ard: bool = True  # linear blocks: one variance per column (else one shared)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GPError(f"kernel block kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0 <= self.start < self.stop:
            raise GPError(f"kernel block columns {self.start}:{self.stop} are empty or negative")

    @property
    def n_params(self) -> int:
        if self.kind == "linear":
            return self.stop - self.start if self.ard else 1
        return 2  # log outputscale, log length scale


class AdditiveGP:
    """Exact GP regression, constant mean, kernel = sum of ``blocks``; ``fit`` then ``predict``/``posterior``."""

    def __init__(self, blocks: list[KernelBlock], n_restarts: int = 1, rng: np.random.Generator | None = None):
        if not blocks:
            raise GPError("AdditiveGP needs at least one kernel block")
        self.blocks = list(blocks)
        self.n_cols = max(b.stop for b in blocks)
        self.n_restarts = int(n_restarts)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.theta: np.ndarray | None = None
        self._x: torch.Tensor | None = None

    # ------------------------------------------------------------------ parameters
    def _default_theta(self) -> np.ndarray:
        th: list[float] = []
        for b in self.blocks:
            th += [0.0] * b.n_params if b.kind == "linear" else [0.0, _PRIOR_LOG_LS[0]]
        return np.array(th + [_PRIOR_LOG_NOISE[0], 0.0])

    def _bounds(self) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for b in self.blocks:
            out += [_BOUNDS_LOG_SCALE] * b.n_params if b.kind == "linear" else [_BOUNDS_LOG_SCALE, _BOUNDS_LOG_LS]
        return out + [_BOUNDS_LOG_NOISE, _BOUNDS_MEAN]

    def _kernel(self, th: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        k = torch.zeros(x1.shape[0], x2.shape[0], dtype=DTYPE)
        i = 0
        for b in self.blocks:
            p = th[i : i + b.n_params]
            i += b.n_params
            a, c = x1[:, b.start : b.stop], x2[:, b.start : b.stop]
            if b.kind == "linear":
                k = k + (a * torch.exp(2 * p)) @ c.T
            else:
                k = k + torch.exp(2 * p[0]) * matern52(a, c, torch.exp(p[1]))
        return k

    def _prior_var(self, th: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = torch.zeros(x.shape[0], dtype=DTYPE)
        i = 0
        for b in self.blocks:
            p = th[i : i + b.n_params]
            i += b.n_params
            if b.kind == "linear":
                d = d + (x[:, b.start : b.stop] ** 2 * torch.exp(2 * p)).sum(1)
            else:
                d = d + torch.exp(2 * p[0])
        return d

    def _log_prior(self, th: torch.Tensor) -> torch.Tensor:
        lp = torch.zeros((), dtype=DTYPE)
        i = 0
        for b in self.blocks:
            p = th[i : i + b.n_params]
            i += b.n_params
            scales = p if b.kind == "linear" else p[:1]
            lp = lp - 0.5 * (((2 * scales - _PRIOR_LOG_VAR[0]) / _PRIOR_LOG_VAR[1]) ** 2).sum()
            if b.kind == "matern":
                lp = lp - 0.5 * ((p[1] - _PRIOR_LOG_LS[0]) / _PRIOR_LOG_LS[1]) ** 2
        return lp - 0.5 * ((th[i] - _PRIOR_LOG_NOISE[0]) / _PRIOR_LOG_NOISE[1]) ** 2

    def _noise(self, th: torch.Tensor) -> torch.Tensor:
        return NOISE_FLOOR + torch.exp(th[-2])

    def _neg_log_posterior(self, th: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = self._kernel(th, x, x) + self._noise(th) * torch.eye(len(y), dtype=DTYPE)
        chol, _ = safe_cholesky(k)
        r = (y - th[-1])[:, None]
        a = torch.cholesky_solve(r, chol)
        nll = 0.5 * (r * a).sum() + torch.log(torch.diagonal(chol)).sum() + 0.5 * len(y) * math.log(2 * math.pi)
        return nll - self._log_prior(th)

    # ------------------------------------------------------------------ fit / predict
    def fit(self, x: np.ndarray, y: np.ndarray) -> AdditiveGP:
        x_np = np.asarray(x, dtype=np.float64)
        y_np = np.asarray(y, dtype=np.float64).reshape(-1)
        if x_np.ndim != 2 or x_np.shape[0] != y_np.shape[0] or x_np.shape[0] == 0 or x_np.shape[1] < self.n_cols:
            raise GPError(
                f"fit wants x of shape (n, >= {self.n_cols}) and y of shape (n,), n >= 1; got {x_np.shape}, "
                f"{y_np.shape}"
            )
        if not (np.isfinite(x_np).all() and np.isfinite(y_np).all()):
            raise GPError("fit got non-finite inputs or targets")
        with single_thread():
            self._fit(x_np, y_np)
        return self

    def _fit(self, x_np: np.ndarray, y_np: np.ndarray) -> None:
        self.y_mean = float(y_np.mean())
        std = float(y_np.std())
        self.y_std = std if std > 1e-12 else 1.0
        x = torch.as_tensor(x_np, dtype=DTYPE)
        y = torch.as_tensor((y_np - self.y_mean) / self.y_std, dtype=DTYPE)

        def f(th: np.ndarray) -> tuple[float, np.ndarray]:
            t = torch.tensor(th, dtype=DTYPE, requires_grad=True)
            try:
                v = self._neg_log_posterior(t, x, y)
            except GPError:
                return 1e10, np.zeros_like(th)
            (g,) = torch.autograd.grad(v, t)
            return float(v.detach()), g.numpy()

        base = self._default_theta()
        starts = [base] + ([self.theta] if self.theta is not None else [])
        for _ in range(self.n_restarts):
            jitter = self.rng.normal(0.0, 1.0, size=base.shape)
            jitter[-2:] = 0.0
            starts.append(base + jitter)
        bounds = self._bounds()
        best_x, best_f = base, math.inf
        for s in starts:
            s = np.clip(s, [lo for lo, _ in bounds], [hi for _, hi in bounds])
            res = minimize(f, s, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 200})
            if np.isfinite(res.fun) and res.fun < best_f:
                best_x, best_f = np.asarray(res.x, dtype=np.float64), float(res.fun)
        self.theta = best_x
        th = torch.as_tensor(best_x, dtype=DTYPE)
        k = self._kernel(th, x, x) + self._noise(th) * torch.eye(len(y), dtype=DTYPE)
        self._chol, self.jitter = safe_cholesky(k)
        self._alpha = torch.cholesky_solve((y - th[-1])[:, None], self._chol)[:, 0]
        self._x, self._th = x, th

    def posterior(self, xq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of the latent function (original units) at the rows of ``xq``."""
        if self._x is None:
            raise GPError("call fit() first")
        ks = self._kernel(self._th, xq, self._x)
        mean = self._th[-1] + ks @ self._alpha
        v = torch.linalg.solve_triangular(self._chol, ks.T, upper=False)
        var = (self._prior_var(self._th, xq) - (v * v).sum(0)).clamp_min(1e-12)
        return mean * self.y_std + self.y_mean, torch.sqrt(var) * self.y_std

    def predict(self, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xq_t = torch.as_tensor(np.atleast_2d(np.asarray(xq, dtype=np.float64)), dtype=DTYPE)
        with torch.no_grad(), single_thread():
            m, s = self.posterior(xq_t)
        return m.numpy(), s.numpy()

    def hyperparameters(self) -> dict[str, object]:
        """The fitted values in readable form (linear variances per column, outputscale, length scale...)."""
        if self.theta is None:
            raise GPError("call fit() first")
        out: dict[str, object] = {}
        i = 0
        for n, b in enumerate(self.blocks):
            p = self.theta[i : i + b.n_params]
            i += b.n_params
            if b.kind == "linear":
                out[f"block{n}_variances"] = np.exp(2 * p).tolist()
            else:
                out[f"block{n}_outputscale"] = float(np.exp(2 * p[0]))
                out[f"block{n}_lengthscale"] = float(np.exp(p[1]))
        out["noise"] = float(NOISE_FLOOR + np.exp(self.theta[-2]))
        out["mean"] = float(self.theta[-1]) * self.y_std + self.y_mean
        return out
