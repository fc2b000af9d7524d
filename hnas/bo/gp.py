"""Exact GP regression, float64, Matern-5/2 — the surrogate HNAS and RoBoT were published with.

Why this shape: both reference codes use bayes_opt 1.2.0, i.e. scikit-learn's
``GaussianProcessRegressor(Matern(nu=2.5), alpha=1e-6, normalize_y=True, n_restarts_optimizer=5)``
(methods.md §1.1). Reproducing their search trajectories needs the same model: one isotropic length scale
(initial 1, bounds 1e-5..1e5, fitted in log space by L-BFGS-B with random restarts), no separate outputscale
(targets standardised instead), a fixed observation noise ``alpha`` on the diagonal.

The covariance is GPyTorch's ``MaternKernel``; the linear algebra (Cholesky with a jitter floor, marginal
likelihood, posterior) is written out here because with <= a few hundred points the closed forms are both
faster and easier to check than the ExactGP prediction machinery.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import gpytorch
import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

DTYPE = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run tiny-matrix GP work on one thread.

    With n <= a few hundred points, multi-threaded BLAS/torch only adds synchronisation: measured here on a
    loaded 2-core machine, 20 BO steps took 47 s with default threading and 3.3 s single-threaded.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(n)


class GPError(ValueError):
    """Bad GP input (shapes, non-finite values, bounds)."""


def matern52(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor | float) -> torch.Tensor:
    """Unit-amplitude isotropic Matern-5/2 covariance between the rows of ``x1`` and ``x2``.

    The length scale divides the inputs (instead of being set on the kernel) so that gradients with respect
    to it and to the inputs flow through one autograd graph.
    """
    kernel = _unit_matern()
    return kernel.forward(x1 / lengthscale, x2 / lengthscale)


_KERNEL: gpytorch.kernels.MaternKernel | None = None


def _unit_matern() -> gpytorch.kernels.MaternKernel:
    global _KERNEL
    if _KERNEL is None:
        k = gpytorch.kernels.MaternKernel(nu=2.5).to(DTYPE)
        k.lengthscale = torch.ones(1, 1, dtype=DTYPE)
        k.requires_grad_(False)
        _KERNEL = k
    return _KERNEL


def safe_cholesky(k: torch.Tensor, jitter: float = 0.0, max_tries: int = 8) -> tuple[torch.Tensor, float]:
    """Cholesky factor of ``k + jitter*I``, raising the jitter tenfold (from 1e-10) until it succeeds.

    Near-duplicate inputs make the kernel matrix numerically singular; a floor on the diagonal keeps the fit
    alive instead of raising ``NotPSDError`` (design.md, known pitfalls). Returns (L, jitter actually added).
    """
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    added = float(jitter)
    for _ in range(max_tries + 1):
        chol, info = torch.linalg.cholesky_ex(k + added * eye if added > 0 else k)
        if int(info) == 0 and torch.isfinite(chol).all():
            return chol, added
        added = 1e-10 if added <= 0 else added * 10.0
    raise GPError(f"kernel matrix is not positive definite even with jitter {added:.1e}")


class GP:
    """Exact GP with standardised targets and an isotropic Matern-5/2 kernel.

    ``fit`` refits the log length scale by maximising the marginal likelihood (first from the initial
    length scale, then from ``n_restarts`` log-uniform random starts, like scikit-learn); ``predict`` returns
    the posterior mean and standard deviation in the original target units.
    """

    def __init__(
        self,
        alpha: float = 1e-6,
        lengthscale: float = 1.0,
        lengthscale_bounds: tuple[float, float] = (1e-5, 1e5),
        n_restarts: int = 5,
        optimize: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        lo, hi = lengthscale_bounds
        if not (0 < lo <= lengthscale <= hi):
            raise GPError(
                f"need 0 < lower <= lengthscale <= upper, got {lengthscale} in {lengthscale_bounds}"
            )
        if alpha < 0:
            raise GPError(f"alpha (noise variance) must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.init_lengthscale = float(lengthscale)
        self.bounds = (float(lo), float(hi))
        self.n_restarts = int(n_restarts)
        self.optimize = bool(optimize)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.lengthscale = float(lengthscale)
        self.jitter = 0.0
        self._x: torch.Tensor | None = None

    # ------------------------------------------------------------------ fitting
    def _nll(self, log_ls: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log marginal likelihood of standardised targets ``y`` at log length scale ``log_ls``."""
        k = matern52(x, x, torch.exp(log_ls))
        k = k + self.alpha * torch.eye(len(x), dtype=DTYPE)
        chol, _ = safe_cholesky(k)
        a = torch.cholesky_solve(y[:, None], chol)[:, 0]
        return 0.5 * (y @ a) + torch.log(torch.diagonal(chol)).sum() + 0.5 * len(y) * _LOG_2PI

    def log_marginal_likelihood(self, lengthscale: float) -> float:
        """Log marginal likelihood of the fitted data (standardised) at ``lengthscale``."""
        if self._x is None:
            raise GPError("call fit() first")
        with torch.no_grad():
            return -float(self._nll(torch.tensor(math.log(lengthscale), dtype=DTYPE), self._x, self._y))

    def fit(self, x: np.ndarray, y: np.ndarray) -> GP:
        with single_thread():
            return self._fit(x, y)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> GP:
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=DTYPE)
        y_np = np.asarray(y, dtype=np.float64).reshape(-1)
        if x_t.ndim != 2 or x_t.shape[0] != y_np.shape[0] or x_t.shape[0] == 0:
            raise GPError(
                f"fit wants x of shape (n, d) and y of shape (n,), n >= 1; got {tuple(x_t.shape)}, "
                f"{y_np.shape}"
            )
        if not (torch.isfinite(x_t).all() and np.isfinite(y_np).all()):
            raise GPError("fit got non-finite inputs or targets")
        # normalize_y: standardise; a constant target keeps scale 1 (scikit-learn's _handle_zeros_in_scale)
        self.y_mean = float(y_np.mean())
        std = float(y_np.std())
        self.y_std = std if std > 10 * np.finfo(np.float64).eps else 1.0
        y_t = torch.as_tensor((y_np - self.y_mean) / self.y_std, dtype=DTYPE)
        self._x, self._y = x_t, y_t
        if self.optimize:
            self.lengthscale = self._fit_lengthscale(x_t, y_t)
        k = matern52(x_t, x_t, self.lengthscale) + self.alpha * torch.eye(len(x_t), dtype=DTYPE)
        self._chol, self.jitter = safe_cholesky(k)
        if self.jitter > 0:
            log.debug("GP fit needed jitter %.1e (near-duplicate inputs)", self.jitter)
        self._a = torch.cholesky_solve(y_t[:, None], self._chol)[:, 0]
        return self

    def _fit_lengthscale(self, x: torch.Tensor, y: torch.Tensor) -> float:
        lo, hi = math.log(self.bounds[0]), math.log(self.bounds[1])

        def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = torch.tensor(float(theta[0]), dtype=DTYPE, requires_grad=True)
            nll = self._nll(t, x, y)
            (g,) = torch.autograd.grad(nll, t)
            return float(nll.detach()), np.array([float(g)])

        starts = [math.log(self.init_lengthscale)]
        starts += list(self.rng.uniform(lo, hi, size=self.n_restarts))
        best_theta, best_val = starts[0], math.inf
        for s in starts:
            try:
                res = minimize(f, np.array([s]), jac=True, method="L-BFGS-B", bounds=[(lo, hi)])
            except GPError:
                continue
            if np.isfinite(res.fun) and res.fun < best_val:
                best_val, best_theta = float(res.fun), float(res.x[0])
        return math.exp(best_theta)

    def conditioned(self, x_new: np.ndarray, y_new: np.ndarray) -> GP:
        """A copy of this fitted GP that also holds the points ``(x_new, y_new)``, with the same length scale
        and target standardisation (no refit): how fantasised observations of pending points enter a batch
        (Kriging believer / constant liar, Ginsbourger et al. 2010)."""
        if self._x is None:
            raise GPError("call fit() first")
        xn = torch.as_tensor(np.atleast_2d(np.asarray(x_new, dtype=np.float64)), dtype=DTYPE)
        yn = np.asarray(y_new, dtype=np.float64).reshape(-1)
        if xn.shape[0] != yn.shape[0] or xn.shape[1] != self._x.shape[1] or not np.isfinite(yn).all():
            raise GPError(f"conditioned wants x of shape (m, {self._x.shape[1]}) and m finite targets; got "
                          f"{tuple(xn.shape)}, {yn.shape}")
        g = copy.copy(self)
        g._x = torch.cat([self._x, xn])
        g._y = torch.cat([self._y, torch.as_tensor((yn - self.y_mean) / self.y_std, dtype=DTYPE)])
        with single_thread():
            k = matern52(g._x, g._x, self.lengthscale) + self.alpha * torch.eye(len(g._x), dtype=DTYPE)
            g._chol, g.jitter = safe_cholesky(k)
            g._a = torch.cholesky_solve(g._y[:, None], g._chol)[:, 0]
        return g

    # ------------------------------------------------------------------ prediction
    def posterior(self, xq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std (original units) at the rows of ``xq``; differentiable in ``xq``."""
        if self._x is None:
            raise GPError("call fit() first")
        ks = matern52(xq, self._x, self.lengthscale)
        mean = ks @ self._a
        v = torch.linalg.solve_triangular(self._chol, ks.T, upper=False)
        var = (1.0 - (v * v).sum(0)).clamp_min(0.0)
        std = torch.sqrt(var.clamp_min(1e-24))
        return mean * self.y_std + self.y_mean, std * self.y_std

    def predict(self, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xq_t = torch.as_tensor(np.atleast_2d(np.asarray(xq, dtype=np.float64)), dtype=DTYPE)
        with torch.no_grad():
            m, s = self.posterior(xq_t)
        return m.numpy(), s.numpy()
