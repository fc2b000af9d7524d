"""Query-efficiency table: the incumbent's test accuracy after k queries, and queries to the best value.

``hnas efficiency DIR... [--at 5 10 20] [--out table.md]``

Reads every search result.json under DIRs (as ``hnas report``). Runs are grouped by (experiment, strategy, T) with
T = the run's number of queries; the strategy is labelled with the run's ``strategy.options.*`` command-line
overrides (from Hydra's ``.hydra/overrides.yaml`` beside the result.json), so ablation sweeps get one row per
variant, so a strategy that plans around its budget (RoBoT: T BO calls, then greedy)
and was run with several budgets gets one row per budget. For each group and each k in ``--at`` (k <= T) the
table gives the mean ± std over seeds of the target test accuracy of the best *observed* architecture among
the first k queries (a prefix of the run: the honest T = k figure only for strategies that do not plan
around T -- hybrid, REA, random -- and for the row whose T equals k), and "to best": the number of distinct
queries a run needed to first observe the best value that any run of the same experiment observed (mean over
the runs that reached it, and how many did). On a tabular benchmark where some run finds the signal's pool
optimum, that is the number of queries to the optimum.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hnas.analysis.report import incumbent_curve, target_metric


def queries_to(history: list[dict[str, Any]], value: float, tol: float = 1e-9) -> int | None:
    """1-based index of the first query whose value reaches ``value`` (None if none does)."""
    for i, h in enumerate(history):
        v = h.get("value")
        if v is not None and not math.isnan(v) and v >= value - tol:
            return i + 1
    return None


def variant(r: dict[str, Any]) -> str:
    """The strategy name plus its ``strategy.options.*`` overrides (e.g. ``hybrid local=false``)."""
    over = Path(r.get("_path", "")).parent / ".hydra" / "overrides.yaml"
    opts: list[str] = []
    if over.is_file():
        from omegaconf import OmegaConf

        opts = [str(o).removeprefix("strategy.options.") for o in OmegaConf.load(over)
                if str(o).startswith("strategy.options.")]
    return " ".join([str(r["strategy"]), *opts])


def efficiency_table(runs: list[dict[str, Any]], at: Sequence[int] = (5, 10, 20)) -> str:
    """The markdown table of the module docstring: one row per (experiment, strategy variant, T)."""
    best_of: dict[str, float] = defaultdict(lambda: -math.inf)
    for r in runs:
        vals = [h["value"] for h in r["history"] if h.get("value") is not None and not math.isnan(h["value"])]
        if vals:
            best_of[str(r.get("experiment", "-"))] = max(best_of[str(r.get("experiment", "-"))], max(vals))
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(str(r.get("experiment", "-")), variant(r), len(r["history"]))].append(r)
    head = ["experiment", "strategy", "T (run)", "seeds", "target", *[f"test @{k}" for k in at],
            "best value", "to best (mean)", "reached"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (exp, strat, t), rs in sorted(groups.items()):
        target = target_metric(rs[0])
        cells = [exp, strat, str(t), str(len(rs)), target or "–"]
        for k in at:
            if k > t:
                cells.append("–")
                continue
            acc = [incumbent_curve(r["history"], target)[k - 1] for r in rs]
            a = np.array([x for x in acc if not math.isnan(x)])
            cells.append(f"{a.mean():.2f} ± {a.std():.2f}" if a.size else "–")
        best = best_of[exp]
        reach = [queries_to(r["history"], best) for r in rs]
        hit = [q for q in reach if q is not None]
        cells += [f"{best:.3f}", f"{np.mean(hit):.1f}" if hit else "–", f"{len(hit)}/{len(rs)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
