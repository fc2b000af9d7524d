"""Rank correlations of proxy scores (or any ranking) with ground truth, one way for every command.

``rank_correlations`` gives Spearman and Kendall (tau-b) signed so that higher = the scores agree with the
truth, over the finite scores only and with failed scores ranked last -- NAS-Bench-Suite-Zero's convention (it
maps failed scores to -1e8), so the ``*_failed_last`` figures compare with its published correlations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _stat(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def rank_correlations(scores: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray,
                      higher_is_better: bool = True) -> dict[str, Any]:
    """{spearman, kendall, n, spearman_failed_last, kendall_failed_last}; None where fewer than 3 pairs.

    Scores that are None/NaN/inf are "failed"; architectures without a finite truth value are left out.
    """
    from scipy import stats

    s = np.array([np.nan if v is None else v for v in scores], dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    has_truth = np.isfinite(t)
    ok = np.isfinite(s) & has_truth
    n = int(ok.sum())
    out: dict[str, Any] = {"spearman": None, "kendall": None, "n": n,
                           "spearman_failed_last": None, "kendall_failed_last": None}
    if n >= 3:
        out["spearman"] = _stat(stats.spearmanr(sign * s[ok], t[ok]).statistic)
        out["kendall"] = _stat(stats.kendalltau(sign * s[ok], t[ok]).statistic)
    if has_truth.sum() >= 3:
        ranked = np.where(np.isfinite(s), sign * s, -np.inf)[has_truth]
        finite = ranked[np.isfinite(ranked)]
        ranked = np.where(np.isinf(ranked), (finite.min() if finite.size else 0.0) - 1.0, ranked)
        out["spearman_failed_last"] = _stat(stats.spearmanr(ranked, t[has_truth]).statistic)
        out["kendall_failed_last"] = _stat(stats.kendalltau(ranked, t[has_truth]).statistic)
    return out


def kendall_tau_b(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-b over the pairs where both are finite (ties in either handled); NaN if fewer than 2."""
    from scipy import stats

    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(t)
    if ok.sum() < 2:
        return float("nan")
    return float(stats.kendalltau(s[ok], t[ok], variant="b").statistic)
