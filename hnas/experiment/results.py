"""A run's results: the result dict written to result.json, strict JSON, and the trajectory plot.

JSON has no NaN: a value that is not a finite number (a diverged warm-up, a missing table cell) is written as
``null``, and the entry says why in a ``note`` -- never the bare ``NaN`` that strict JSON readers reject.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hnas.files import atomic_write_text


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (numpy scalars become Python numbers)."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (see ``strict_json``), written atomically."""
    return atomic_write_text(path, json.dumps(strict_json(obj), indent=2, allow_nan=False, default=str) + "\n")


def history_entry(h: dict[str, Any]) -> dict[str, Any]:
    """One query of result.json's history: arch, value, cost_s[, test][, note]; a non-finite value gets a note."""
    out = {k: h[k] for k in ("arch", "value", "cost_s", "test", "reference", "note") if k in h}
    v = out.get("value")
    if isinstance(v, float) and not math.isfinite(v) and "note" not in out:
        out["note"] = f"value {v} is not a finite number"
    return out


def plot_trajectory(result: dict[str, Any], path: str | Path) -> None:
    """Best-so-far observed value vs number of queries (non-finite values are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    vals = np.array([np.nan if h.get("value") is None else float(h["value"]) for h in result["history"]])
    if not np.isfinite(vals).any():
        return
    best = np.fmax.accumulate(vals)
    x = np.arange(1, len(vals) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(x, vals, "o", alpha=0.4, label="observed")
    ax.plot(x, best, "-", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("queries")
    ax.set_ylabel("observed value")
    ax.set_title(f"{result['experiment']} · {result['strategy']} · seed {result['seed']}")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_proxy_scatter(result: dict[str, Any], pool: Any, path: str | Path) -> bool:
    """One panel per proxy of the pool: the proxy score of every queried architecture against its observed value
    (how well each proxy predicted what the search measured). Returns False (nothing drawn) without proxies or
    finite observations."""
    names = list(pool.scores)
    rows = [(pool.index_of.get(h["arch"]), h.get("value")) for h in result["history"]]
    rows = [(i, float(v)) for i, v in rows if i is not None and v is not None and np.isfinite(float(v))]
    if not names or not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.array([i for i, _ in rows])
    vals = np.array([v for _, v in rows])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.scatter(pool.scores[name][idx], vals, s=12)
        ax.set_xlabel(name)
        ax.set_ylabel("observed value")
    fig.suptitle(f"{result['experiment']} · {result['strategy']}: proxies vs observed value", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
