"""``hnas rbflex-protocol``: the RBFleX-NAS search protocol (methods.md §6.4), trial by trial.

Each of ``trials`` trials samples ``n_archs`` architectures uniformly without replacement (seed
``[seed, trial]``), scores them with the ``rbflex`` proxy (through the store cache: a score shared by two
trials is computed once), takes the argmax and reports its ground-truth test accuracies; the result is
mean ± std (population std, ddof=0) over trials. Unlike the reference script, the best score/accuracy is
reset at the start of every trial (the reference initialises them once, so later trials report the best
so far across trials and the std shrinks).

γ's: HDA (default) over ``n_gamma`` networks sampled from the space on the first ``n_images`` images of the
scoring batch, once for all trials (as the reference runs HDA once), or fixed. The γ's are logged and
written with statistics of the scores they give.

Spaces without tabular ground truth (the NATS size space here) get the chosen configurations and a note
that no accuracy is available -- no number is made up.

Configured like ``hnas run`` (same config tree, ``strategy=rbflex`` implied), e.g.
``hnas rbflex-protocol +experiment=nb201_cifar10 benchmark.path=../shared/data/nb201/nb201.csv``;
protocol sizes in ``strategy.protocol.{trials,n_archs}``, γ options in ``strategy.options``. Writes
``rbflex_protocol.json`` and ``rbflex_protocol.md`` (one markdown table row) in the output directory.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from hnas.cli import exits_on_user_error
from hnas.errors import ConfigError
from hnas.experiment.build import Parts, plain, register_resolvers
from hnas.experiment.results import write_json
from hnas.files import atomic_write_text
from hnas.proxies.cache import score_cached_many
from hnas.proxies.settings import ScoringSettings
from hnas.search.rbflex import RBFleXSearch, resolve_gammas

log = logging.getLogger("hnas.rbflex_search")

NB201_TEST_METRICS = ("cifar10_test", "cifar100_test", "imagenet16_test")
MD_HEADER = "| space | data | target | γ | trials × archs | target mean ± std | search s/trial |"


def trial_archs(space: Any, n_archs: int, trials: int, seed: int) -> list[list[Any]]:
    """The architectures of every trial: ``n_archs`` distinct ones, uniform, rng seeded by (seed, trial)."""
    for name, v in (("n_archs", n_archs), ("trials", trials)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"strategy.protocol.{name} must be a positive integer, got {v!r}")
    return [space.sample_many(int(n_archs), np.random.default_rng([int(seed), t])) for t in range(int(trials))]


def rbflex_protocol(
    space: Any,
    datamodule: Any,
    store: Any,
    settings: ScoringSettings,
    build_kwargs: dict[str, Any] | None = None,
    n_archs: int = 1000,
    trials: int = 10,
    seed: int = 0,
    gammas: str = "hda",
    gamma_k: float | None = None,
    gamma_q: float | None = None,
    n_gamma: int = 10,
    positive_only: bool = False,
    benchmark: Any = None,
    test_metrics: Sequence[str] = (),
    target: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the multi-trial protocol; returns the result dict (also what ``main`` writes).

    ``settings``: how scores are computed (scoring batch, init seed, BN mode, dtype, proxy options).
    ``benchmark`` None (or no ``test_metrics``): no accuracies, a note instead.
    """
    build_kwargs = dict(build_kwargs or {})
    test_metrics = list(test_metrics) if benchmark is not None else []
    if target is not None and test_metrics and target not in test_metrics:
        raise ConfigError(f"target {target!r} is not among the test metrics {test_metrics}")
    target = target or (test_metrics[0] if test_metrics else None)
    per_trial = trial_archs(space, n_archs, trials, seed)

    t0 = time.perf_counter()
    settings, hda_result = resolve_gammas(space, datamodule, settings, build_kwargs, gammas=gammas, gamma_k=gamma_k,
                                   gamma_q=gamma_q, n_gamma=n_gamma, seed=seed, positive_only=positive_only)
    proxy = settings.proxy("rbflex")
    batch = settings.batch(datamodule)
    num_classes = datamodule.num_classes

    # every distinct architecture once (by canonical key: the cache's identity), then per-trial argmax
    unique: dict[str, Any] = {}
    for archs in per_trial:
        for a in archs:
            unique.setdefault(space.key(a), a)
    keys = list(unique)

    scored = score_cached_many(store, space, [unique[k] for k in keys], space.builder(num_classes, **build_kwargs),
                               [proxy], batch, seed=settings.init_seed, bn_mode=settings.bn_mode,
                               dtype=settings.torch_dtype, num_classes=num_classes, progress=progress)
    by_key = {k: s["rbflex"] for k, s in zip(keys, scored)}
    wall_s = time.perf_counter() - t0

    trial_rows: list[dict[str, Any]] = []
    for t, archs in enumerate(per_trial):
        recs = [by_key[space.key(a)] for a in archs]
        vals = np.array([r.value if r.ok else -math.inf for r in recs], dtype=np.float64)
        best_i = int(np.argmax(vals))  # reset per trial; first in sample order on ties
        arch_str = space.format(archs[best_i])
        row: dict[str, Any] = {
            "trial": t, "arch": arch_str, "rbflex": float(vals[best_i]),
            "n_failed": int(sum(not r.ok for r in recs)),
            "search_s": float(sum(r.seconds for r in recs)) + (hda_result.seconds if hda_result else 0.0),
        }
        if test_metrics:
            row["test"] = {m: float(benchmark.value(arch_str, m)) for m in test_metrics}
        trial_rows.append(row)
        log.info("trial %d: %s rbflex=%.6g%s", t, arch_str, row["rbflex"],
                 f" {target}={row['test'][target]:.2f}" if test_metrics else "")

    ok_vals = [s.value for s in by_key.values() if s.ok]
    result: dict[str, Any] = {
        "protocol": "rbflex", "space": space.name, "data": getattr(datamodule, "name", None),
        "n_archs": int(n_archs), "trials": int(trials), "seed": int(seed),
        "gammas": {"mode": gammas, "gamma_k": proxy.options["gamma_k"], "gamma_q": proxy.options["gamma_q"],
                   "hda": hda_result.as_dict() if hda_result else None},
        "scores": {"n_distinct": len(keys), "n_ok": len(ok_vals), "n_failed": len(keys) - len(ok_vals),
                   "min": min(ok_vals) if ok_vals else None,
                   "median": statistics.median(ok_vals) if ok_vals else None,
                   "max": max(ok_vals) if ok_vals else None},
        "batch_fingerprint": batch.fingerprint, "n_images": int(proxy.options["n_images"]),
        "per_image_forward": bool(proxy.options["per_image_forward"]),
        "target": target, "trials_detail": trial_rows, "wall_s": wall_s,
        "search_s_per_trial": statistics.mean(r["search_s"] for r in trial_rows),
    }
    if test_metrics:
        result["test"] = {m: {"mean": float(np.mean([r["test"][m] for r in trial_rows])),
                              "std": float(np.std([r["test"][m] for r in trial_rows]))} for m in test_metrics}
    else:
        result["test"] = None
        result["note"] = (f"no tabular ground truth for space {space.name!r}: no accuracy is available; the "
                          "chosen configurations are listed in trials_detail")
    log.info("rbflex gammas (%s): gamma_k=%.6g gamma_q=%.6g -> scores min/median/max %s/%s/%s over %d archs",
             gammas, result["gammas"]["gamma_k"], result["gammas"]["gamma_q"], result["scores"]["min"],
             result["scores"]["median"], result["scores"]["max"], len(keys))
    return result


def markdown_row(result: dict[str, Any]) -> str:
    """One row under ``MD_HEADER`` summarising ``result``."""
    g = result["gammas"]
    gam = f"{'HDA' if g['mode'] == 'hda' else 'fixed'} γK={g['gamma_k']:.3g}, γQ={g['gamma_q']:.3g}"
    if result["test"]:
        t = result["test"][result["target"]]
        acc = f"{t['mean']:.2f} ± {t['std']:.2f}"
    else:
        acc = "n/a (no ground truth)"
    return (f"| {result['space']} | {result['data']} | {result['target'] or '—'} | {gam} | "
            f"{result['trials']} × {result['n_archs']} | {acc} | {result['search_s_per_trial']:.1f} |")


def run_protocol(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """The command for a composed ``run`` config with ``strategy=rbflex``: protocol, JSON and markdown."""
    if cfg.strategy.name != "rbflex":
        raise ConfigError(f"hnas rbflex-protocol needs strategy=rbflex, got strategy={cfg.strategy.name!r}")
    parts = Parts(cfg, output_dir)
    opts = {**RBFleXSearch.defaults, **(plain(cfg.strategy.get("options", {})) or {})}
    proto = plain(cfg.strategy.get("protocol", {})) or {}
    bench, metrics = parts.benchmark, []
    if bench is not None:
        ev = cfg.get("evaluator") or {}
        wanted = list(ev.get("test_metrics", [])) if ev.get("kind") == "benchmark" else list(NB201_TEST_METRICS)
        metrics = [m for m in wanted if m in set(bench.metrics())]
    result = rbflex_protocol(
        parts.space, parts.datamodule, parts.store, parts.scoring, parts.build_kwargs,
        n_archs=proto.get("n_archs", 1000), trials=proto.get("trials", 10), seed=parts.seed,
        gammas=str(opts["gammas"]), gamma_k=opts["gamma_k"], gamma_q=opts["gamma_q"], n_gamma=int(opts["n_gamma"]),
        positive_only=bool(opts["positive_only"]), benchmark=bench, test_metrics=metrics,
        target=cfg.get("target") if metrics else None,
    )
    result["experiment"] = str(cfg.name)
    out = Path(output_dir)
    write_json(out / "rbflex_protocol.json", result)
    atomic_write_text(out / "rbflex_protocol.md", MD_HEADER + "\n|" + "---|" * 7 + "\n" + markdown_row(result) + "\n")
    log.info("%s\n%s", MD_HEADER, markdown_row(result))
    return result


def with_rbflex_strategy(argv: list[str]) -> list[str]:
    """``argv`` with ``strategy=rbflex`` added unless a strategy is already chosen."""
    if any(a.split("=", 1)[0].lstrip("+~") == "strategy" for a in argv[1:]):
        return argv
    return [argv[0], "strategy=rbflex", *argv[1:]]


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    exits_on_user_error(run_protocol)(cfg, HydraConfig.get().runtime.output_dir)


def main() -> None:
    """``hnas rbflex-protocol [overrides]`` (``strategy=rbflex`` implied)."""
    register_resolvers()
    sys.argv = with_rbflex_strategy(sys.argv)
    _hydra_main()
