"""``hnas nafbee-ranking [overrides]``: NAFBee with RBFleX (methods.md §6.5) -- rank the 11 activations of
VGG-19-BN by their RBFleX score.

``nafbee_ranking`` scores every activation variant of the ``nafbee`` space with the ``rbflex`` proxy on
CIFAR-10 images, with γ's from HDA over the 11 variants themselves (the "sampled networks" of the reference's
NAFBee-BERT variant, candidates > 0 only), and compares the ranking with the NAFBee table: Kendall's tau-b
against ``vgg19_cifar10_acc`` (tau-b because GELU and SiLU tie at 91.03) and whether the ground-truth best
activation (ReLU) is ranked first -- the paper's claim.

The command composes ``run`` + ``+experiment=nafbee`` with the overrides (Hydra), prints the ranking table and
writes ``nafbee_ranking.json`` / ``.md`` in its output folder (``outputs/nafbee/ranking/...``), e.g. on the
image folders here: ``hnas nafbee-ranking data=imagefolder data.root=../shared/data/cifar10
benchmark.path=../shared/data/nafbee/nafbee.csv``. A search over the same space (query = the RBFleX argmax,
answered from the table) is ``hnas run +experiment=nafbee``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from hnas.analysis.correlation import kendall_tau_b
from hnas.cli import exits_on_user_error
from hnas.errors import ConfigError
from hnas.experiment.build import Parts, plain, register_resolvers
from hnas.experiment.results import write_json
from hnas.files import atomic_write_text
from hnas.proxies.cache import score_cached_many
from hnas.proxies.settings import ScoringSettings
from hnas.search.rbflex import RBFleXSearch, resolve_gammas
from hnas.search.training_free import rank_order

log = logging.getLogger("hnas.nafbee")

DEFAULT_METRIC = "vgg19_cifar10_acc"


def nafbee_ranking(
    space: Any,
    datamodule: Any,
    table: Any,
    settings: ScoringSettings,
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

    ``store`` None scores without the cache. Returns {gammas, rows (best RBFleX first), kendall, top,
    truth_best, best_is_first, ...}.
    """
    from hnas.proxies.runtime import score_network

    if metric not in table.metrics():
        raise ConfigError(f"evaluator.metric={metric!r} is not a NAFBee table column; valid: "
                          f"{', '.join(table.metrics())}")
    build_kwargs = dict(build_kwargs or {})
    archs = list(space.enumerate())
    t0 = time.perf_counter()
    settings, hda = resolve_gammas(space, datamodule, settings, build_kwargs, gammas=gammas, gamma_k=gamma_k,
                                   gamma_q=gamma_q, positive_only=positive_only, archs=archs)
    proxy = settings.proxy("rbflex")
    batch = settings.batch(datamodule)
    nc, init_seed = datamodule.num_classes, settings.init_seed
    build = space.builder(nc, **build_kwargs)
    if store is not None:
        res = score_cached_many(store, space, archs, build, [proxy], batch, seed=init_seed,
                                bn_mode=settings.bn_mode, dtype=settings.torch_dtype, num_classes=nc,
                                progress=progress)
    else:
        import torch

        res = []
        for a in archs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                net = build(a)
            res.append(score_network(net, [proxy], batch.x, batch.y, nc, seed=init_seed,
                                     bn_mode=settings.bn_mode, dtype=settings.torch_dtype))
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
        "rows": rows, "kendall": kendall_tau_b(scores, acc), "top": top,
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


def ranking_from_config(cfg: DictConfig, parts: Parts | None = None) -> dict[str, Any]:
    """``nafbee_ranking`` for a composed ``run`` config of ``+experiment=nafbee`` (space, data, benchmark,
    proxies, strategy options)."""
    if cfg.space.name != "nafbee":
        raise ConfigError(f"the NAFBee ranking needs space=nafbee, got space={cfg.space.name!r}")
    if not cfg.get("benchmark") or cfg.benchmark.get("name") != "nafbee":
        raise ConfigError("the NAFBee ranking needs benchmark.name=nafbee and benchmark.path=<nafbee.csv>")
    parts = parts or Parts(cfg)
    opts = {**RBFleXSearch.defaults, **(plain(cfg.strategy.get("options", {})) or {})}
    metric = str(cfg.evaluator.get("metric", DEFAULT_METRIC))
    return nafbee_ranking(parts.space, parts.datamodule, parts.benchmark, parts.scoring, parts.build_kwargs,
                          store=parts.store, gammas=str(opts["gammas"]), gamma_k=opts["gamma_k"],
                          gamma_q=opts["gamma_q"], positive_only=bool(opts["positive_only"]), metric=metric)


def rank_and_write(cfg: DictConfig, output_dir: str) -> dict[str, Any]:
    """The command's body: rank, print the table, write nafbee_ranking.json / .md in ``output_dir``."""
    result = ranking_from_config(cfg, Parts(cfg, output_dir))
    write_json(f"{output_dir}/nafbee_ranking.json", result)
    text = ranking_markdown(result)
    atomic_write_text(f"{output_dir}/nafbee_ranking.md", text + "\n")
    sys.stdout.write(text + "\n")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    exits_on_user_error(rank_and_write)(cfg, HydraConfig.get().runtime.output_dir)


def main() -> None:
    """``hnas nafbee-ranking [overrides]``: ``+experiment=nafbee`` is implied; output under
    ``outputs/nafbee/ranking/``."""
    register_resolvers()
    if not any(a.split("=", 1)[0].lstrip("+~") == "experiment" for a in sys.argv[1:]):
        sys.argv.insert(1, "+experiment=nafbee")
    if not any(a.split("=", 1)[0] == "hydra.run.dir" for a in sys.argv[1:]):
        sys.argv.insert(2, "hydra.run.dir=outputs/nafbee/ranking/${hnas_run_dir:}")
    _hydra_main()
