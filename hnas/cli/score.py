"""``hnas score``: score a pool of architectures with a list of proxies and correlate with truth.

Scores go to (and come from) the store, so a re-run computes nothing already there and several processes
(``pool.shard=i/n``) can fill one store; or one command shards the pool over worker processes
(``search.workers=N``) or Ray (``search.executor=ray``), its driver alone writing the store.
Writes ``scores.csv``, a PNG per proxy (score vs the ground-truth
``target`` when a benchmark is configured) and ``result.json``:
``{"target", "n_archs", "fwd_bwd_median_s", "proxies": {NAME: {"spearman", "kendall", "n", "median_s",
"n_failed"}}}`` — correlations oriented so that higher means the proxy agrees with accuracy.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from hnas.analysis.correlation import rank_correlations
from hnas.cli import exits_on_user_error
from hnas.errors import ConfigError
from hnas.experiment.results import write_json
from hnas.files import atomic_path, atomic_write_text
from hnas.spaces import SearchSpaceError

log = logging.getLogger("hnas.score")


def fwd_bwd_seconds(build: Any, archs: list[Any], x: Any, y: Any) -> float | None:
    """Median wall time of one plain forward+backward (cross-entropy) of the pool's networks on the batch."""
    import torch

    times = []
    for arch in archs:
        torch.manual_seed(0)
        net = build(arch)
        net.train()
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) if times else None


def score_pool(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """The whole command: pool, scores (cached), correlations, CSV, plots, result.json."""
    import pandas as pd

    from hnas.experiment.build import Parts
    from hnas.experiment.scoring import ensure_scores
    from hnas.search import CandidatePool

    output_dir = Path(output_dir)
    names = [str(n) for n in cfg.proxies.names]
    if not names:
        raise ConfigError("proxies.names is empty; list the proxies to compute, e.g. proxies.names=[snip,synflow]")
    parts = Parts(cfg, output_dir)
    space, archs, store, settings = parts.space, parts.archs, parts.store, parts.scoring
    proxies = {n: settings.proxy(n) for n in names}
    truth = None
    target = cfg.get("target")
    bench = parts.benchmark if target else None  # checked (file, target column) before the long scoring
    dm = parts.datamodule
    specs = ensure_scores(store, space, archs, names, dm, settings, parts.build_kwargs,
                          executor=parts.parallelism.executor, parallel=parts.parallelism.parallel)
    pool = CandidatePool.from_store(store, space, archs, specs)

    # per-proxy seconds and failures, straight from the store rows
    canonical = [space.key(a) for a in archs]  # the own cache is keyed by the canonical key
    rows = {n: store.get_scores(space.name, s.proxy, s.version, s.seed, s.batch_fp, s.bn_mode, s.dtype,
                                arch_ids=canonical) for n, s in zip(names, specs)}
    frame = pd.DataFrame({"arch": [space.format(a) for a in archs]})
    try:
        frame.insert(0, "index", [space.index(a) for a in archs])
    except SearchSpaceError:  # a space without official indices (DARTS) just has no index column
        pass
    if bench is not None:
        truth = bench.values([space.format(a) for a in archs], target)
        frame[target] = truth
    out: dict[str, Any] = {"target": target if truth is not None else None, "n_archs": len(archs),
                           "space": space.name, "batch_fingerprint": specs[0].batch_fp if specs else None,
                           "fwd_bwd_median_s": None, "proxies": {}}
    for n in names:
        col = pool.scores[n]
        frame[n] = col
        recs = [rows[n].get(k) for k in canonical]
        frame[f"{n}_status"] = [r.status if r is not None else "missing" for r in recs]
        secs = [r.seconds for r in recs if r is not None]
        entry: dict[str, Any] = {"n": int(np.isfinite(col).sum()),
                                 "median_s": float(statistics.median(secs)) if secs else None,
                                 "n_failed": int(sum(1 for r in recs if r is None or not r.ok)),
                                 "higher_is_better": proxies[n].higher_is_better, "source": pool.sources.get(n)}
        if truth is not None:
            entry.update(rank_correlations(col, truth, proxies[n].higher_is_better))
        out["proxies"][n] = entry
    if cfg.get("reference"):
        compare_reference(out, frame, names, space, archs, Path(str(cfg.reference)))
    n_time = min(int(cfg.get("timing_archs", 10)), len(archs))
    if n_time > 0:
        b = settings.batch(dm)
        out["fwd_bwd_median_s"] = fwd_bwd_seconds(space.builder(dm.num_classes, **parts.build_kwargs),
                                                  archs[:n_time], b.x, b.y)
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_dir / "scores.csv") as tmp:
        frame.to_csv(tmp, index=False)
    if cfg.get("plots", True) and truth is not None:
        plot_scores(frame, names, target, output_dir)
    write_json(output_dir / "result.json", out)
    atomic_write_text(output_dir / "result.md", markdown_summary(out))
    for n, e in out["proxies"].items():
        log.info("%-12s spearman=%s kendall=%s n=%d failed=%d median=%.3fs", n, _fmt(e.get("spearman")),
                 _fmt(e.get("kendall")), e["n"], e["n_failed"], e["median_s"] or float("nan"))
    return out


def compare_reference(out: dict[str, Any], frame: Any, names: list[str], space: Any, archs: list[Any],
                      path: Path) -> None:
    """Faithfulness: Spearman between our scores and a reference implementation's table (same archs by index).

    Rank agreement only: the reference used its own initialisation and data batch, so values differ.
    """
    import pandas as pd
    from scipy import stats

    from hnas.benchmarks.score_tables import SUITE_ZERO_NAMES

    if not path.is_file():
        raise ConfigError(f"reference={str(path)!r}: no such score table (a CSV in the NAS-Bench-Suite-Zero "
                          "layout: index + one column per proxy)")
    ref = pd.read_csv(path).rename(columns=SUITE_ZERO_NAMES).set_index("index")
    idx = [space.index(a) for a in archs]
    out["reference"] = str(path)
    for n in names:
        if n not in ref.columns:
            continue
        theirs = ref[n].reindex(idx).to_numpy(dtype=float)
        ours = frame[n].to_numpy(dtype=float)
        ok = np.isfinite(theirs) & np.isfinite(ours)
        rho = stats.spearmanr(ours[ok], theirs[ok]).statistic if ok.sum() >= 3 else float("nan")
        out["proxies"][n]["reference_spearman"] = None if np.isnan(rho) else float(rho)
        out["proxies"][n]["reference_n"] = int(ok.sum())
        log.info("%-12s vs reference: spearman=%s on %d archs", n, _fmt(out["proxies"][n]["reference_spearman"]),
                 int(ok.sum()))


def markdown_summary(out: dict[str, Any]) -> str:
    """The result as a markdown table: one row per proxy."""
    ref = "reference" in out
    head = ["proxy", "Spearman", "Kendall", "Spearman (failed last)", "Kendall (failed last)", "n", "failed",
            "median s"] + (["Spearman vs reference"] if ref else [])
    lines = [f"{out['n_archs']} architectures of {out['space']}, target {out['target']}, one forward+backward "
             f"median {out['fwd_bwd_median_s'] or float('nan'):.3f} s", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in out["proxies"].items():
        cells = [name, *(_num(e.get(k)) for k in ("spearman", "kendall", "spearman_failed_last",
                                                  "kendall_failed_last")),
                 str(e["n"]), str(e["n_failed"]), _num(e.get("median_s"))]
        if ref:
            cells.append(_num(e.get("reference_spearman")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:+.3f}"


def plot_scores(frame: Any, names: list[str], target: str, output_dir: Path) -> None:
    """One scatter PNG per proxy: score against the ground-truth target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for n in names:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        ax.scatter(frame[n], frame[target], s=4, alpha=0.5)
        ax.set_xlabel(n)
        ax.set_ylabel(target)
        ax.set_title(f"{n} vs {target} ({int(np.isfinite(frame[n]).sum())} archs)")
        fig.tight_layout()
        fig.savefig(output_dir / f"{n}.png", dpi=100)
        plt.close(fig)


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    exits_on_user_error(score_pool)(cfg, Path(HydraConfig.get().runtime.output_dir))
