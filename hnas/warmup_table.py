"""Warm-up table (issue 5 item 4): rank correlation of SiGeo and ZiCo with NB201 test accuracy vs warm-up.

For each warm-up fraction (share of ALL training images, e.g. 0, 1 %, 5 %, 10 % of CIFAR-10's 50,000) the
NB201 supernet is warmed up (or its checkpoint loaded), every architecture of the pool is scored as a
sub-network with inherited weights (supernet mode, hnas.supernet), and Spearman / Kendall against the
benchmark column (``cifar10_test``) are written as a markdown table, a PNG plot and a JSON of all scores.

Each fraction's scores are saved under ``<cache-dir>/scores/`` named after the supernet checkpoint, the pool, the
scoring batch, the seed and the proxy versions, so a crashed table resumes at the first unfinished fraction, and
the slow fractions can be filled by separate processes (``--fractions 0.01`` here, ``--fractions 0.05`` there)
before the one command with every fraction assembles the table from them (``--recompute`` scores again).

Example (real data; the pool is the one of ``pool.size=200 pool.seed=0``)::

    python -m hnas.warmup_table --benchmark ../shared/data/nb201/nb201.csv \\
        --data imagefolder --data-option root=../shared/data/cifar10 \\
        --pool-size 200 --pool-seed 0 --fractions 0 0.01 0.05 0.1 --out docs/results.md \\
        --plot docs/img/warmup_table.png
"""

from __future__ import annotations

import argparse
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

import numpy as np
import yaml

log = logging.getLogger("hnas.warmup_table")

PROXIES = ("sigeo", "zico")
LABELS = {"sigeo": "SiGeo", "zico": "ZiCo"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hnas.warmup_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", required=True, help="NB201 compact CSV (index, arch, metric columns)")
    p.add_argument("--metric", default="cifar10_test", help="ground-truth column (default cifar10_test)")
    p.add_argument("--data", default="cifar10", help="data module name (hnas.data.build_datamodule)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="data module argument (YAML value), repeatable, e.g. root=../shared/data/cifar10")
    p.add_argument("--pool-size", type=int, default=200)
    p.add_argument("--pool-seed", type=int, default=0)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1])
    p.add_argument("--epochs", type=int, default=1, help="warm-up passes over the subset")
    p.add_argument("--max-steps", type=int, default=None, help="warm-up steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=64, help="warm-up batch size")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--scoring-batch", type=int, default=256, help="scoring images (4 chunks)")
    p.add_argument("--sigeo-batching", choices=("split", "reference"), default="split",
                   help="SiGeo's batching option (hnas.proxies.sigeo): split = the batch in 4 chunks; reference = "
                   "64-sample chunks of the last 256 images, plus the reference's own 10-epoch warm-up of every "
                   "candidate when --scoring-batch > 256 (identical to split at the default 256)")
    p.add_argument("--seed", type=int, default=0, help="supernet init / warm-up / scoring batch seed")
    p.add_argument("--cache-dir", default=None, help="warm-up checkpoints (default <hnas cache>/supernets)")
    p.add_argument("--device", default=None, help="scoring device (default cuda when available)")
    p.add_argument("--accelerator", default="auto", help="lightning accelerator of the warm-up")
    p.add_argument("--out", required=True,
                   help="markdown file; an existing one (docs/results.md) only has its warm-up section replaced")
    p.add_argument("--plot", default=None, help="PNG path (default: <out stem>.png); the JSON of all scores is "
                   "written next to it")
    p.add_argument("--recompute", action="store_true",
                   help="score every fraction again instead of reusing the scores saved by an earlier run")
    args = p.parse_args(argv)
    for f in args.fractions:
        if not 0.0 <= f <= 1.0:
            p.error(f"--fractions values must be in [0, 1] (share of the training images), got {f}")
    if args.pool_size < 3:
        p.error(f"--pool-size must be >= 3 for a rank correlation, got {args.pool_size}")
    return args


def data_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--data-option {item!r} is not KEY=VALUE (e.g. root=../shared/data/cifar10)")
        out[key] = yaml.safe_load(value)
    return out


def correlations(scores: list[float], truth: list[float]) -> tuple[float, float, int]:
    """Spearman and Kendall (tau-b) of ``scores`` vs ``truth``; non-finite scores rank last (count returned)."""
    from scipy.stats import kendalltau, spearmanr

    s = np.array([v if v is not None and math.isfinite(v) else -np.inf for v in scores], dtype=float)
    bad = int(np.sum(~np.isfinite(s)))
    if bad:
        s[~np.isfinite(s)] = np.min(s[np.isfinite(s)]) - 1.0 if np.isfinite(s).any() else 0.0
    t = np.asarray(truth, dtype=float)
    return float(spearmanr(s, t).statistic), float(kendalltau(s, t).statistic), bad


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Compute the table; returns the JSON-able result also written next to ``--out``."""
    import torch

    from hnas.benchmarks import load_benchmark
    from hnas.data import build_datamodule, default_cache_dir
    from hnas.spaces import get_space
    from hnas.supernet import WarmupConfig, score_subnets, warm_up_supernet

    space = get_space("nb201")
    bench = load_benchmark("nb201", args.benchmark)
    archs = space.sample_many(args.pool_size, np.random.default_rng(args.pool_seed))
    truth = [bench.value(a, args.metric) for a in archs]
    names = [space.format(a) for a in archs]
    dm = build_datamodule(args.data, **data_options(args.data_option))
    batch = dm.scoring_batch(args.scoring_batch, args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "supernets"
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[str, list[float | None]]] = {}
    options = {"sigeo": {"batching": args.sigeo_batching}} if args.sigeo_batching != "split" else {}
    for fraction in args.fractions:
        cfg = WarmupConfig(fraction=fraction, epochs=args.epochs, max_steps=args.max_steps,
                           batch_size=args.batch_size, seed=args.seed, C=args.C, N=args.N)
        t0 = time.perf_counter()
        warm = warm_up_supernet(dm, cfg, cache, trainer={"accelerator": args.accelerator})
        t_warm = time.perf_counter() - t0
        key = f"{fraction:g}"
        saved = scores_path(cache, warm.fingerprint, names, batch.fingerprint, args.seed, warm.warmed,
                            device.type, options)
        if saved.is_file() and not args.recompute:
            cached = json.loads(saved.read_text())
            scores[key], t_score = cached["scores"], cached["scoring_s"]
            log.info("%g %% warm-up: scores of %d archs reused from %s", 100 * fraction, len(archs), saved)
        else:
            warm.supernet.to(device)
            t0 = time.perf_counter()
            out = score_subnets(warm.supernet, archs, (batch.x, batch.y), PROXIES, warmed=warm.warmed,
                                options=options, seed=args.seed, device=device)
            t_score = time.perf_counter() - t0
            scores[key] = {p: [s[p].value for s in out] for p in PROXIES}
            _atomic_write(saved, json.dumps({"archs": names, "scores": scores[key], "scoring_s": t_score}) + "\n")
        for p in PROXIES:
            rho, tau, bad = correlations(scores[key][p], truth)
            rows.append({"proxy": p, "fraction": fraction, "spearman": rho, "kendall": tau, "non_finite": bad,
                         "warmup_steps": warm.steps, "warmup_s": round(t_warm, 2), "scoring_s": round(t_score, 2),
                         "checkpoint": str(warm.path) if warm.path else None, "trained_now": warm.trained_now,
                         "scores_file": str(saved)})
            log.info("%s at %g: Spearman %.3f Kendall %.3f", p, fraction, rho, tau)
    argv = args.argv if getattr(args, "argv", None) is not None else sys.argv[1:]
    return {"command": "python -m hnas.warmup_table " + " ".join(shlex.quote(a) for a in argv),
            "metric": args.metric, "pool_size": args.pool_size, "pool_seed": args.pool_seed,
            "sigeo_batching": args.sigeo_batching,
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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_section(path: Path, body: str) -> None:
    """Put ``body`` between the table's markers in ``path``: a new file is just the section; an existing file
    (e.g. docs/results.md) keeps everything outside the markers, and gets the section appended if it has none."""
    section = f"{BEGIN}\n{body.rstrip()}\n{END}\n"
    if not path.is_file():
        _atomic_write(path, section)
        return
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 and end < 0:
        new = text.rstrip("\n") + "\n\n" + section
    elif 0 <= start < end:
        new = text[:start] + section + text[end + len(END):].lstrip("\n")
    else:
        raise SystemExit(f"{path}: unbalanced warm-up table markers; expected {BEGIN!r} before {END!r}")
    _atomic_write(path, new)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    args.argv = argv
    result = run(args)
    out = Path(args.out)
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(result, png)
    _atomic_write(png.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_section(out, markdown(result, os.path.relpath(png, out.parent)))
    log.info("wrote %s, %s, %s", out, png, png.with_suffix(".json"))
    return result


if __name__ == "__main__":
    main()
