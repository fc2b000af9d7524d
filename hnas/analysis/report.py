"""Aggregate result.json files into a markdown table and a trajectory plot (the ``hnas report`` command).

Every search ``result.json`` under the given directories (searched recursively) is one run; other result.json
files (``hnas score`` writes one too) are skipped, and a run found twice (under outputs/ and multirun/, say)
counts once, by its run id:
``{"experiment", "space", "strategy", "seed", "best": {"arch", "value", "test": {metric: acc}},
"n_evaluations", "search_cost_s", "wall_s", "history": [{"arch", "value", "cost_s"[, "test"]}]}``.
Runs are grouped by (experiment, strategy); the table gives mean ± std over seeds (population std, as the
papers' "± 0.00" rows for deterministic results suggest) of every test metric, the search cost and the
wall time. The plot shows, per group, the mean best-so-far test accuracy against the number of queries
(the incumbent is the best *observed* value so far; its test accuracy is plotted when the history carries
test accuracies, otherwise the observed value itself).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hnas.errors import HNASError
from hnas.files import atomic_write_text

log = logging.getLogger(__name__)

REQUIRED = ("strategy", "best", "history")


class ReportError(HNASError, ValueError):
    """No result files, or a result file without the fields a report needs."""


def find_results(dirs: Sequence[str | Path]) -> list[Path]:
    """Every result.json under ``dirs`` (a path to a result.json itself is accepted too), sorted."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(p.rglob("result.json")))
        else:
            raise ReportError(f"{p} is neither a directory nor a result.json file")
    if not out:
        raise ReportError(f"no result.json found under {', '.join(map(str, dirs))}")
    return out


def _check_cost(p: Path, where: str, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ReportError(f"{p}: {where} is {v!r}; a cost must be a finite number of seconds >= 0")


def load_results(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The search results among ``paths``, one per run id (the most recently written wins)."""
    by_run: dict[str, dict[str, Any]] = {}
    skipped = 0
    for p in paths:
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{p} is not valid JSON: {e}") from e
        if not isinstance(r, dict) or "strategy" not in r:
            skipped += 1  # e.g. the result.json of `hnas score`: not a search run
            continue
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ReportError(f"{p} lacks field(s) {missing}; a search result.json needs {list(REQUIRED)}")
        _check_cost(p, "search_cost_s", r.get("search_cost_s"))
        for i, h in enumerate(r["history"]):
            _check_cost(p, f"history[{i}].cost_s", h.get("cost_s"))
        r["_path"] = str(p)
        run_id = str(r.get("run_id") or p)
        old = by_run.get(run_id)
        if old is None or p.stat().st_mtime >= Path(old["_path"]).stat().st_mtime:
            by_run[run_id] = r
    if skipped:
        log.info("skipped %d result.json file(s) that are not search results", skipped)
    if not by_run:
        raise ReportError(f"no search result.json among the {len(paths)} result.json file(s) found")
    return list(by_run.values())


def _mean_std(xs: list[float | None]) -> str:
    a = np.array([x for x in xs if x is not None and not math.isnan(x)], dtype=np.float64)
    if a.size == 0:
        return "–"
    return f"{a.mean():.2f} ± {a.std():.2f}"


def group_runs(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(str(r.get("experiment", "-")), str(r["strategy"]))].append(r)
    return dict(sorted(groups.items()))


def target_metric(r: dict[str, Any]) -> str | None:
    """The run's target test metric (result.json ``target``), else its only/first test metric."""
    test = r["best"].get("test") or {}
    t = r.get("target")
    if t in test:
        return t
    return sorted(test)[0] if test else None


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """One row per (experiment, strategy): seeds, the target test accuracy mean ± std beside the pool's optimum,
    the best observed value, evaluations, distinct queries before RoBoT's greedy phase (T0), cost, wall time."""
    groups = group_runs(runs)
    head = ["experiment", "strategy", "seeds", "target", "test acc (mean ± std)", "pool optimum",
            "best observed", "evaluations", "T0", "search cost (s)", "wall (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (exp, strat), rs in groups.items():
        target = target_metric(rs[0])
        cells = [exp, strat, str(len(rs)), target or "–"]
        cells.append(_mean_std([(r["best"].get("test") or {}).get(target, math.nan) for r in rs]))
        optima = [((r.get("pool") or {}).get("optimum") or {}).get(target) for r in rs]
        cells.append(f"{optima[0]:.2f}" if optima and optima[0] is not None else "–")
        cells.append(_mean_std([r["best"].get("value") for r in rs]))
        cells.append(f"{np.mean([float(r.get('n_evaluations', len(r['history']))) for r in rs]):.1f}")
        t0 = [(r.get("strategy_info") or {}).get("T0") for r in rs]
        cells.append(f"{np.mean([x for x in t0 if x is not None]):.1f}" if any(x is not None for x in t0) else "–")
        cells.append(_mean_std([r.get("search_cost_s", math.nan) for r in rs]))
        cells.append(_mean_std([r.get("wall_s", math.nan) for r in rs]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def incumbent_curve(history: list[dict[str, Any]], metric: str | None) -> np.ndarray:
    """Best-so-far curve: after query i, the test ``metric`` (or the value) of the best observed arch."""
    out, best_v, best_y = [], -math.inf, math.nan
    for h in history:
        v = h.get("value")
        v = -math.inf if v is None or math.isnan(v) else float(v)
        if v > best_v or (math.isnan(best_y) and v > -math.inf):
            best_v = v
            best_y = float((h.get("test") or {}).get(metric, math.nan)) if metric else v
        out.append(best_y)
    return np.array(out, dtype=np.float64)


def trajectory_curves(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the trajectory plot shows: per experiment, the plotted metric (its target, or None = the observed
    value) and per strategy the mean and std over seeds of the incumbent's value after each query."""
    out: dict[str, dict[str, Any]] = {}
    for (exp, strat), rs in group_runs(runs).items():
        metric = _plot_metric(rs)
        panel = out.setdefault(exp, {"metric": metric, "curves": {}})
        if metric != panel["metric"]:
            panel["metric"] = None  # strategies disagree: fall back to the observed value for all
        curves = [incumbent_curve(r["history"], metric) for r in rs]
        n = max(len(c) for c in curves)
        m = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            m[i, : len(c)] = c
            if len(c) < n and len(c):
                m[i, len(c) :] = c[-1]
        with np.errstate(invalid="ignore"):
            panel["curves"][strat] = {"mean": np.nanmean(m, 0), "std": np.nanstd(m, 0), "n": len(rs)}
    return out


def plot_trajectories(runs: list[dict[str, Any]], path: str | Path) -> Path:
    """PNG of mean best-so-far test accuracy (± std band) vs number of queries: one panel per experiment,
    showing that experiment's own target metric, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = trajectory_curves(runs)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (exp, panel) in zip(axes[0], sorted(panels.items())):
        for strat, c in panel["curves"].items():
            x = np.arange(1, len(c["mean"]) + 1)
            ax.plot(x, c["mean"], label=f"{strat} (n={c['n']})")
            ax.fill_between(x, c["mean"] - c["std"], c["mean"] + c["std"], alpha=0.15)
        ax.set_title(exp)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("number of queries")
        ax.set_ylabel(f"test accuracy ({panel['metric']}) of incumbent" if panel["metric"] else "best observed value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_metric(rs: list[dict[str, Any]]) -> str | None:
    """The test metric to plot: the runs' target (``_target``) when every history entry has it, else None
    (the observed value is plotted then)."""
    m = target_metric(rs[0])
    if m and all(all(m in (h.get("test") or {}) for h in r["history"]) for r in rs):
        return m
    return None


def build_report(
    dirs: Sequence[str | Path], out: str | Path | None = None, plot: str | Path | None = None
) -> str:
    """The markdown table of every search run under ``dirs`` (written to ``out`` when given) and the plot."""
    runs = load_results(find_results(dirs))
    text = f"# Search results ({len(runs)} runs)\n\n" + markdown_table(runs)
    if out is not None:
        out = Path(out)
        plot = plot or out.with_suffix(".png")
    if plot is not None:
        p = plot_trajectories(runs, plot)
        text += f"\n![best-so-far vs queries]({p.name})\n"
    if out is not None:
        atomic_write_text(out, text)
    return text
