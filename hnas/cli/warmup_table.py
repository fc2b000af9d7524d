"""``hnas warmup-table``: rank correlation of SiGeo and ZiCo with NB201 test accuracy vs supernet warm-up.

For each warm-up fraction (share of ALL training images, e.g. 0, 1 %, 5 %, 10 % of CIFAR-10's 50,000) the
NB201 supernet is warmed up (or its checkpoint loaded), every architecture of the pool is scored as a
sub-network with inherited weights (supernet mode, hnas.supernet), and Spearman / Kendall against the
benchmark column (``cifar10_test``) are written as a markdown table, a PNG plot and a JSON of all scores.

Each fraction's scores are saved under ``<cache-dir>/scores/`` named after the supernet checkpoint, the pool, the
scoring batch, the seed and the proxy versions, so a crashed table resumes at the first unfinished fraction, and
the slow fractions can be filled by separate processes (``--fractions 0.01`` here, ``--fractions 0.05`` there)
before the one command with every fraction assembles the table from them (``--recompute`` scores again).

Configured with Hydra (``conf/warmup_table.yaml``); example (real data, the pool of ``pool.size=200
pool.seed=0``)::

    hnas warmup-table data=imagefolder data.root=../shared/data/cifar10 \\
        benchmark.path=../shared/data/nb201/nb201.csv pool.size=200 pool.seed=0 \\
        fractions=[0,0.01,0.05,0.1] out=docs/results.md plot=docs/img/warmup_table.png
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from hnas.analysis.correlation import rank_correlations
from hnas.cli import exits_on_user_error
from hnas.errors import ConfigError
from hnas.experiment.build import Parts, plain, pool_archs
from hnas.files import atomic_write_text

log = logging.getLogger("hnas.warmup_table")

PROXIES = ("sigeo", "zico")
LABELS = {"sigeo": "SiGeo", "zico": "ZiCo"}


def check_config(cfg: DictConfig) -> list[float]:
    """The fractions, each in [0, 1]; a pool big enough for a rank correlation."""
    fractions = plain(cfg.fractions)
    if not isinstance(fractions, list) or not fractions:
        raise ConfigError(f"fractions must be a non-empty list of shares in [0, 1], e.g. [0,0.1], got {fractions!r}")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ConfigError(f"fractions values must be numbers in [0, 1] (share of the training images), got {f!r}")
    size = cfg.pool.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 3:
        raise ConfigError(f"pool.size must be an integer >= 3 for a rank correlation, got {size!r}")
    return [float(f) for f in fractions]


def correlations(scores: list[float | None], truth: list[float]) -> tuple[float, float, int]:
    """Spearman and Kendall (tau-b) of ``scores`` vs ``truth``, non-finite scores ranked last (count returned)."""
    c = rank_correlations(scores, truth)
    bad = sum(1 for v in scores if v is None or not math.isfinite(v))
    return float(c["spearman_failed_last"]), float(c["kendall_failed_last"]), bad


def scores_path(cache: Path, warm_fp: str, archs: list[str], batch_fp: str, seed: int, warmed: bool,
                device: str, options: dict[str, dict[str, Any]] | None = None) -> Path:
    """Where one fraction's scores are saved: named after everything they depend on, so a finished fraction is
    reused by a later (or parallel) run of the table and a changed pool, batch, supernet or proxy option is never
    mixed in (``options``: the proxy options given on the command line; none keeps the earlier names)."""
    from hnas.proxies import get_proxy

    ident = {"supernet": warm_fp, "archs": archs, "batch": batch_fp, "seed": seed, "warmed": warmed,
             "device": device, "proxies": {p: get_proxy(p).version for p in PROXIES}}
    if options:
        ident["options"] = options
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return cache / "scores" / f"{warm_fp}-{digest}.json"


def run(cfg: DictConfig, argv: list[str]) -> dict[str, Any]:
    """Compute the table; returns the JSON-able result also written next to ``out``."""
    import torch

    from hnas.data import default_cache_dir
    from hnas.training.supernet import WarmupConfig, score_subnets, warm_up_supernet

    fractions = check_config(cfg)
    from hnas.spaces import get_space

    parts = Parts(cfg)
    space, bench, dm = get_space("nb201"), parts.benchmark, parts.datamodule
    if bench is None:
        raise ConfigError("hnas warmup-table needs a benchmark table: benchmark.path=<nb201.csv>")
    archs = pool_archs({"kind": "sample", "size": cfg.pool.size, "seed": cfg.pool.seed}, space)
    names = [space.format(a) for a in archs]
    truth = [float(v) for v in bench.values(names, str(cfg.metric))]
    seed = parts.seed
    batch = dm.scoring_batch(int(cfg.scoring_batch), seed)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cache = Path(str(cfg.cache_dir)) if cfg.cache_dir else default_cache_dir() / "supernets"
    warm_opts = dict(plain(cfg.warmup))
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[str, list[float | None]]] = {}
    options = {"sigeo": {"batching": str(cfg.sigeo_batching)}} if cfg.sigeo_batching != "split" else {}
    for fraction in fractions:
        wcfg = WarmupConfig.from_dict({**warm_opts, "fraction": fraction, "seed": seed})
        t0 = time.perf_counter()
        warm = warm_up_supernet(dm, wcfg, cache, trainer={"accelerator": str(cfg.accelerator)})
        t_warm = time.perf_counter() - t0
        key = f"{fraction:g}"
        saved = scores_path(cache, warm.fingerprint, names, batch.fingerprint, seed, warm.warmed, device.type,
                            options)
        if saved.is_file() and not cfg.recompute:
            cached = json.loads(saved.read_text())
            scores[key], t_score = cached["scores"], cached["scoring_s"]
            log.info("%g %% warm-up: scores of %d archs reused from %s", 100 * fraction, len(archs), saved)
        else:
            warm.supernet.to(device)
            t0 = time.perf_counter()
            out = score_subnets(warm.supernet, archs, (batch.x, batch.y), PROXIES, warmed=warm.warmed,
                                options=options, seed=seed, device=device)
            t_score = time.perf_counter() - t0
            scores[key] = {p: [s[p].value for s in out] for p in PROXIES}
            atomic_write_text(saved, json.dumps({"archs": names, "scores": scores[key], "scoring_s": t_score}) + "\n")
        for p in PROXIES:
            rho, tau, bad = correlations(scores[key][p], truth)
            rows.append({"proxy": p, "fraction": fraction, "spearman": rho, "kendall": tau, "non_finite": bad,
                         "warmup_steps": warm.steps, "warmup_s": round(t_warm, 2), "scoring_s": round(t_score, 2),
                         "checkpoint": str(warm.path) if warm.path else None, "trained_now": warm.trained_now,
                         "scores_file": str(saved)})
            log.info("%s at %g: Spearman %.3f Kendall %.3f", p, fraction, rho, tau)
    return {"command": "hnas warmup-table " + " ".join(shlex.quote(a) for a in argv),
            "metric": str(cfg.metric), "pool_size": int(cfg.pool.size), "pool_seed": int(cfg.pool.seed),
            "sigeo_batching": str(cfg.sigeo_batching),
            "n_train_images": len(dm.data.train_y), "device": str(device), "rows": rows,
            "archs": names, "truth": truth, "scores": scores}


def markdown(result: dict[str, Any], plot_name: str) -> str:
    """The table: one row per proxy, one column pair (Spearman / Kendall) per warm-up fraction."""
    fracs = sorted({r["fraction"] for r in result["rows"]})
    head = "| proxy | " + " | ".join(f"{100 * f:g} % warm-up" for f in fracs) + " |"
    lines = [f"Spearman / Kendall vs `{result['metric']}`, {result['pool_size']} NB201 architectures "
             f"(pool seed {result['pool_seed']}), supernet mode, fractions of {result['n_train_images']} "
             f"training images, device {result['device']}"
             + (f", SiGeo batching {result['sigeo_batching']}" if result.get("sigeo_batching", "split") != "split"
                else "") + ".", "", head,
             "|---|" + "---|" * len(fracs)]
    for p in PROXIES:
        cells = []
        for f in fracs:
            r = next(r for r in result["rows"] if r["proxy"] == p and r["fraction"] == f)
            cells.append(f"{r['spearman']:.3f} / {r['kendall']:.3f}" + (f" ({r['non_finite']} non-finite)"
                                                                          if r["non_finite"] else ""))
        lines.append(f"| {LABELS[p]} | " + " | ".join(cells) + " |")
    steps = ", ".join(f"{100 * f:g} %: {next(r['warmup_steps'] for r in result['rows'] if r['fraction'] == f)} "
                      f"steps" for f in fracs)
    lines += ["", f"Warm-up steps: {steps}.", "", f"Command: `{result['command']}`", "",
              f"![warm-up correlations]({plot_name})", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for p, color in zip(PROXIES, ("C0", "C1")):
        rows = sorted((r for r in result["rows"] if r["proxy"] == p), key=lambda r: r["fraction"])
        x = [100 * r["fraction"] for r in rows]
        ax.plot(x, [r["spearman"] for r in rows], "o-", color=color, label=f"{LABELS[p]} Spearman")
        ax.plot(x, [r["kendall"] for r in rows], "s--", color=color, label=f"{LABELS[p]} Kendall")
    ax.set_xlabel("warm-up (% of training images)")
    ax.set_ylabel(f"rank correlation vs {result['metric']}")
    ax.set_title(f"NB201, {result['pool_size']} archs, supernet warm-up")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BEGIN = "<!-- hnas.warmup_table:begin -->"
END = "<!-- hnas.warmup_table:end -->"


def write_section(path: Path, body: str) -> None:
    """Put ``body`` between the table's markers in ``path``: a new file is just the section; an existing file
    (e.g. docs/results.md) keeps everything outside the markers, and gets the section appended if it has none."""
    section = f"{BEGIN}\n{body.rstrip()}\n{END}\n"
    if not path.is_file():
        atomic_write_text(path, section)
        return
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 and end < 0:
        new = text.rstrip("\n") + "\n\n" + section
    elif 0 <= start < end:
        new = text[:start] + section + text[end + len(END):].lstrip("\n")
    else:
        raise ConfigError(f"{path}: unbalanced warm-up table markers; expected {BEGIN!r} before {END!r}")
    atomic_write_text(path, new)


def build_table(cfg: DictConfig, argv: list[str]) -> dict[str, Any]:
    """The command's body: the table, its plot and JSON, and the section of ``out``."""
    out = Path(str(cfg.out))
    result = run(cfg, argv)
    png = Path(str(cfg.plot)) if cfg.plot else out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(result, png)
    atomic_write_text(png.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_section(out, markdown(result, os.path.relpath(png, out.parent)))
    log.info("wrote %s, %s, %s", out, png, png.with_suffix(".json"))
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="warmup_table")
def _hydra_main(cfg: DictConfig) -> None:
    exits_on_user_error(build_table)(cfg, list(sys.argv[1:]))


def main() -> None:
    """``hnas warmup-table [overrides]`` (config ``warmup_table``)."""
    _hydra_main()
