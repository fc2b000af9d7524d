"""Input-Jacobian proxies: jacob_cov (methods.md §2.6) and epe_nas (§2.15).

Both read J = ∂(Σ_c f_c(x_n))/∂x_n (N × D) of the shared main pass: it comes from the same forward as the
loss gradients (``autograd.grad(outputs.sum(), x, retain_graph=True)``). Under train-mode BN each row also
carries cross-sample terms through the batch statistics -- true of the references too.

A network whose output ignores its input (the NB201 all-``none`` cell) has J = 0: the correlation matrix is
undefined (0/0) and the score is NaN -- reported as status ``nan``, never as a number.
"""

from __future__ import annotations

import math

import torch

from hnas.proxies.context import ProxyContext
from hnas.proxies.registry import register_proxy

_K = 1e-5
EIG_METHODS = ("eig", "eigvalsh")


def _corrcoef(rows: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows (float64), NaN where a row is constant (as numpy.corrcoef)."""
    c = torch.corrcoef(rows.double())
    return c.reshape(1, 1) if c.dim() == 0 else c


def jacob_cov_score(jac: torch.Tensor, method: str = "eig") -> float:
    """−Σ_i [log(v_i + k) + 1/(v_i + k)], v = eigenvalues of corrcoef(J), k = 1e-5.

    ``method="eig"`` (default) is the reference's general eigen-solver: a complex pair or an eigenvalue below
    −k makes the score NaN, as in the reference. ``"eigvalsh"`` uses the symmetric solver (real by
    construction), which only differs in such degenerate cases.
    """
    if method not in EIG_METHODS:
        raise ValueError(f"jacob_cov eig method {method!r} is not one of {EIG_METHODS}")
    corr = _corrcoef(jac).cpu()  # a small matrix: the CPU eigensolvers beat cuSolver's geev/syevd at this size
    if not torch.isfinite(corr).all():
        return math.nan  # a constant Jacobian row (e.g. output independent of the input)
    if method == "eigvalsh":
        v = torch.linalg.eigvalsh(corr)
    else:
        ev = torch.linalg.eigvals(corr)
        if ev.imag.abs().max() > 1e-9 * max(1.0, float(ev.real.abs().max())):
            return math.nan
        v = ev.real
    v = v + _K
    return float(-(torch.log(v) + 1.0 / v).sum())


@register_proxy(
    "jacob_cov", needs_labels=False, passes=("jacobian",), splittable=True, options={"eig": "eig"}
)
def jacob_cov(ctx: ProxyContext) -> float:
    """NASWOT-v1 score: −Σ [log(v+k) + 1/(v+k)] over eigenvalues v of the input-Jacobian correlation."""
    return jacob_cov_score(ctx.main_pass("jacobian")["jacobian"], ctx.option("eig", "eig"))


def epe_nas_score(jac: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """EPE-NAS: per class c, s_c = Σ log(|corrcoef(J_c)| + k); score Σ_c |s_c| for <= 100 classes, else
    Σ_{c,c'} |s_c − s_c'| / #classes with s_c divided by its matrix size (the reference's two branches).

    Classes appear in the order of first occurrence; a class with one sample has the 1×1 matrix [1].
    """
    labels = labels.detach().to(jac.device)  # the class masks index the Jacobian where it lives
    if labels.dim() == 2:  # one-hot / soft labels (TNB101 style): class = argmax
        labels = labels.argmax(dim=1)
    scores: list[torch.Tensor] = []
    for c in dict.fromkeys(labels.cpu().tolist()):
        rows = jac[labels == c]
        corr = _corrcoef(rows)
        s = torch.log(corr.abs() + _K).sum()
        if n_classes > 100:
            s = s / corr.shape[0]
        scores.append(s)
    if not scores:
        return 0.0
    s = torch.stack(scores)
    if n_classes <= 100:
        return float(s.abs().sum())
    return float((s[:, None] - s[None, :]).abs().sum() / len(scores))


@register_proxy("epe_nas", passes=("jacobian",), splittable=True)
def epe_nas(ctx: ProxyContext) -> float:
    """EPE-NAS: class-wise input-Jacobian correlation statistic (needs labels to group samples)."""
    jac = ctx.main_pass("jacobian")["jacobian"]
    n_classes = ctx.num_classes
    return epe_nas_score(jac, ctx.require_labels(), n_classes)
