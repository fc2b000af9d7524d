"""NAFBee with RBFleX (methods.md §6.5): rank the 11 activations of VGG-19-BN by their RBFleX score.

``nafbee_ranking`` scores every activation variant of the ``nafbee`` space with the ``rbflex`` proxy on
CIFAR-10 images, with γ's from HDA over the 11 variants themselves (the "sampled networks" of the reference's
NAFBee-BERT variant, candidates > 0 only), and compares the ranking with the NAFBee table: Kendall's tau-b
against ``vgg19_cifar10_acc`` (tau-b because GELU and SiLU tie at 91.03) and whether the ground-truth best
activation (ReLU) is ranked first -- the paper's claim.

``NAFBeeEvaluator`` answers a search's queries from the NAFBee table (the adapter ``hnas.run`` uses for
``+experiment=nafbee``: strategy=rbflex over pool=all, one query = the RBFleX argmax).

``python -m hnas.nafbee [hydra overrides]`` composes ``run`` + ``+experiment=nafbee`` with the overrides,
prints the ranking table and writes ``nafbee_ranking.json`` / ``.md`` under ``outputs/nafbee/ranking``
(``HNAS_OUTPUT`` overrides that folder), e.g. on the image folders here:
``python -m hnas.nafbee data=imagefolder data.root=../shared/data/cifar10
benchmark.path=../shared/data/nafbee/nafbee.csv``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hnas.evaluate import Observation

log = logging.getLogger("hnas.nafbee")

DEFAULT_METRIC = "vgg19_cifar10_acc"


class NAFBeeEvaluator:
    """Observation = the table's accuracy of the activation (cost 0: the table is the ground truth)."""

    def __init__(
        self,
        table: Any,
        space: Any,
        metric: str = DEFAULT_METRIC,
        test_metrics: Sequence[str] | None = None,
    ) -> None:
        valid = table.metrics()
        tests = [metric] if test_metrics is None else list(test_metrics)
        for m in [metric, *tests]:
            if m not in valid:
                raise ValueError(f"NAFBee table has no metric {m!r}; valid: {', '.join(valid)}")
        self.table, self.space, self.metric, self.test_metrics = table, space, metric, tests

    def _name(self, arch: Any) -> str:
        return self.space.format(self.space.coerce(arch))

    def evaluate(self, arch: Any) -> Observation:
        name = self._name(arch)
        return Observation(self.table.value(name, self.metric), 0.0,
                           {"source": "benchmark", "test": self.test_metrics_of(name)})

    def test_metrics_of(self, arch: Any) -> dict[str, float]:
        name = self._name(arch)
        return {m: self.table.value(name, m) for m in self.test_metrics}

    def pool_optimum(self, archs: Sequence[Any], metrics: Sequence[str]) -> dict[str, float]:
        """Best value of each metric over ``archs``: what a perfect search of the pool reaches."""
        names = [self._name(a) for a in archs]
        return {m: max(self.table.value(n, m) for n in names) for m in metrics}


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-b of the finite pairs (ties in either list handled), NaN if fewer than 2."""
    from scipy import stats

    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(t)
    if ok.sum() < 2:
        return float("nan")
    return float(stats.kendalltau(s[ok], t[ok], variant="b").statistic)


def nafbee_ranking(
    space: Any,
    datamodule: Any,
    table: Any,
    settings: dict[str, Any],
    build_kwargs: dict[str, Any] | None = None,
    store: Any = None,
    gammas: str = "hda",
    gamma_k: float | None = None,
    gamma_q: float | None = None,
    positive_only: bool = True,
    metric: str = DEFAULT_METRIC,
    progress: bool = False,
) -> dict[str, Any]:
    """RBFleX ranking of the 11 activations vs the NAFBee table; see the module docstring.

    ``settings``: ``hnas.experiment.scoring_settings(cfg.proxies, seed)``. ``store`` None scores without the
    cache. Returns {gammas, rows (best RBFleX first), kendall, top, truth_best, best_is_first, ...}.
    """
    import torch

    from hnas.proxies.cache import score_cached_many
    from hnas.proxies.registry import get_proxy
    from hnas.proxies.runtime import score_network
    from hnas.search.rbflex import GAMMA_MODES, hda_for_scoring
    from hnas.search.training_free import rank_order

    if gammas not in GAMMA_MODES:
        raise ValueError(f"gammas={gammas!r} is not one of: {', '.join(GAMMA_MODES)}")
    if metric not in table.metrics():
        raise ValueError(f"NAFBee table has no metric {metric!r}; valid: {', '.join(table.metrics())}")
    build_kwargs = dict(build_kwargs or {})
    archs = list(space.enumerate())
    t0 = time.perf_counter()
    rb = dict(settings["options"].get("rbflex", {}))
    hda = None
    if gammas == "hda":
        hda = hda_for_scoring(space, datamodule, settings, build_kwargs, archs, positive_only=positive_only)
        rb.update(gamma_k=hda.gamma_k, gamma_q=hda.gamma_q)
    elif gamma_k is not None and gamma_q is not None:
        rb.update(gamma_k=float(gamma_k), gamma_q=float(gamma_q))
    elif gamma_k is not None or gamma_q is not None:
        raise ValueError(f"give both gamma_k and gamma_q or neither, got {gamma_k!r}, {gamma_q!r}")
    proxy = get_proxy("rbflex", **rb)
    batch = datamodule.scoring_batch(settings["n"], settings["seed"], mode=settings["mode"])
    dtype = getattr(torch, settings["dtype"]) if settings.get("dtype") else None
    nc, init_seed = datamodule.num_classes, int(settings["init_seed"])

    def factory(arch: Any) -> torch.nn.Module:
        return space.build(arch, num_classes=nc, **build_kwargs)

    if store is not None:
        res = score_cached_many(store, space, archs, factory, [proxy], batch, seed=init_seed,
                                bn_mode=settings.get("bn_mode"), dtype=dtype, num_classes=nc, progress=progress)
    else:
        res = []
        for a in archs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                net = factory(a)
            res.append(score_network(net, [proxy], batch.x, batch.y, nc, seed=init_seed,
                                     bn_mode=settings.get("bn_mode"), dtype=dtype))
    recs = [r["rbflex"] for r in res]
    scores = np.array([r.value if r.ok else np.nan for r in recs], dtype=np.float64)
    names = [space.format(a) for a in archs]
    acc = np.array([table.value(n, metric) for n in names], dtype=np.float64)
    order = rank_order(scores)
    truth_rank = {a.lower(): i + 1 for i, (a, _) in enumerate(table.ranking(metric[: -len("_acc")]))}
    rows = [{"rank": r + 1, "activation": names[i], "rbflex": float(scores[i]), "status": recs[i].status,
             "accuracy": float(acc[i]), "truth_rank": truth_rank[names[i].lower()]}
            for r, i in enumerate(order)]
    top = rows[0]["activation"]
    best_acc = float(np.max(acc))
    out = {
        "metric": metric, "data": getattr(datamodule, "name", None), "batch_fingerprint": batch.fingerprint,
        "n_images": int(proxy.options["n_images"]), "per_image_forward": bool(proxy.options["per_image_forward"]),
        "build": build_kwargs,
        "gammas": {"mode": gammas, "gamma_k": proxy.options["gamma_k"], "gamma_q": proxy.options["gamma_q"],
                   "hda": hda.as_dict() if hda else None},
        "rows": rows, "kendall": kendall_tau(scores, acc), "top": top,
        "truth_best": table.optimum(metric)[0], "best_is_first": bool(acc[int(order[0])] == best_acc),
        "wall_s": time.perf_counter() - t0,
    }
    log.info("NAFBee RBFleX: gamma_k=%.6g gamma_q=%.6g kendall=%.3f top=%s (truth best %s)",
             out["gammas"]["gamma_k"], out["gammas"]["gamma_q"], out["kendall"], top, out["truth_best"])
    return out


def ranking_markdown(result: dict[str, Any]) -> str:
    """The ranking as a markdown table plus a summary line."""
    lines = ["| RBFleX rank | activation | RBFleX score | accuracy (%) | true rank |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['rank']} | {r['activation']} | {r['rbflex']:.6g} | {r['accuracy']:.2f} | "
                     f"{r['truth_rank']} |")
    g = result["gammas"]
    lines.append("")
    lines.append(f"Kendall tau-b vs {result['metric']}: {result['kendall']:.3f}; ranked first: {result['top']} "
                 f"(ground-truth best: {result['truth_best']}; best ranked first: {result['best_is_first']}); "
                 f"γ ({g['mode']}): γK={g['gamma_k']:.6g}, γQ={g['gamma_q']:.6g}; "
                 f"{result['n_images']} images, data {result['data']}")
    return "\n".join(lines)


def ranking_from_config(cfg: Any, store: Any = None) -> dict[str, Any]:
    """``nafbee_ranking`` for a composed ``run`` config of ``+experiment=nafbee`` (space, data, benchmark,
    proxies, strategy options)."""
    from hnas.benchmarks import load_benchmark
    from hnas.data import build_datamodule
    from hnas.experiment import ConfigError, _plain, scoring_settings
    from hnas.search.rbflex import RBFleXSearch
    from hnas.spaces import get_space

    if cfg.space.name != "nafbee":
        raise ConfigError(f"the NAFBee ranking needs space=nafbee, got space={cfg.space.name!r}")
    if not cfg.get("benchmark") or cfg.benchmark.get("name") != "nafbee":
        raise ConfigError("the NAFBee ranking needs benchmark.name=nafbee and benchmark.path=<nafbee.csv>")
    opts = {**RBFleXSearch.defaults, **(_plain(cfg.strategy.get("options", {})) or {})}
    d = dict(_plain(cfg.data))
    dm = build_datamodule(d.pop("name"), **d)
    metric = str(cfg.evaluator.get("metric", DEFAULT_METRIC))
    return nafbee_ranking(get_space("nafbee"), dm, load_benchmark("nafbee", str(cfg.benchmark.path)),
                          scoring_settings(cfg.proxies, int(cfg.seed)), dict(_plain(cfg.space.get("build", {})) or {}),
                          store=store, gammas=str(opts["gammas"]), gamma_k=opts["gamma_k"], gamma_q=opts["gamma_q"],
                          positive_only=bool(opts["positive_only"]), metric=metric)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: compose ``run`` + ``+experiment=nafbee`` + ``argv`` overrides, rank, print, write files."""
    from hydra import compose, initialize_config_module

    from hnas.run import _atomic_write_text
    from hnas.store import Store

    overrides = ["+experiment=nafbee", *(sys.argv[1:] if argv is None else argv)]
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        cfg = compose("run", overrides=overrides)
    result = ranking_from_config(cfg, Store(Path(str(cfg.store)).expanduser()))
    out = Path(os.environ.get("HNAS_OUTPUT", "outputs/nafbee/ranking"))
    _atomic_write_text(out / "nafbee_ranking.json", json.dumps(result, indent=2, default=float) + "\n")
    text = ranking_markdown(result)
    _atomic_write_text(out / "nafbee_ranking.md", text + "\n")
    print(text)  # the command's output
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
