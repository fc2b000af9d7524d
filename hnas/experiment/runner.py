"""One search run from its config: parts -> pool with scores -> strategy -> search loop -> result.json.

``hnas run`` (and ``python -m hnas.run``) is this function behind Hydra; tests and notebooks call it with a
composed config. A run started again with the same run id and store continues from the trial log.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from hnas.errors import ConfigError
from hnas.evaluators import Evaluator
from hnas.experiment.build import EvaluatorRecipe, Parts, hardware_profile, plain
from hnas.experiment.results import history_entry, plot_proxy_scatter, plot_trajectory, write_json
from hnas.experiment.scoring import candidate_pool, proxy_names
from hnas.files import sha256_file
from hnas.search import STRATEGIES, CandidatePool, SearchLoop, SearchResult
from hnas.tracking import make_tracker, tracking

log = logging.getLogger(__name__)


def check_budgets(strat: Any) -> tuple[int | None, float | None]:
    """``strategy.budget`` (distinct queries) and ``strategy.budget_cost_s`` (seconds): positive, not both None."""
    budget, cost = strat.get("budget"), strat.get("budget_cost_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise ConfigError(f"strategy.budget must be a positive integer (distinct queries), got {budget!r}")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost > 0):
        raise ConfigError(f"strategy.budget_cost_s must be a positive number of seconds, got {cost!r}")
    if budget is None and cost is None:
        raise ConfigError("give strategy.budget (distinct queries) and/or strategy.budget_cost_s (seconds)")
    return budget, cost


def run_fingerprint(parts: Parts, pool: CandidatePool, evaluator: Evaluator) -> dict[str, Any]:
    """What the trial log's meaning depends on beyond the config text (checked when a run resumes)."""
    fp: dict[str, Any] = dict(evaluator.fingerprint())
    fp["pool"] = hashlib.sha256("\n".join(pool.spellings).encode()).hexdigest()[:16]
    import_path = parts.cfg.proxies.get("import_path")
    if (parts.cfg.proxies.get("source") or "compute") != "compute" and import_path:
        fp["score_table"] = sha256_file(str(import_path))
    return fp


def announce_profile(cfg: DictConfig) -> str | None:
    """Log which hardware recipe a sized experiment resolved to (``profile``, see ``hardware_profile``)."""
    if cfg.get("profile") is None:
        return None
    name = hardware_profile(str(cfg.profile))
    note = (plain(cfg.get("profile_notes")) or {}).get(name)
    if note:
        log.info("%s", note)
    return name


def run_experiment(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Execute the search described by ``cfg``; returns the result dict also written to result.json."""
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    announce_profile(cfg)
    parts = Parts(cfg, output_dir)
    budget, budget_cost = check_budgets(cfg.strategy)
    strategy_cls = STRATEGIES.get(str(cfg.strategy.name))
    options = dict(plain(cfg.strategy.get("options")) or {})
    names = proxy_names(cfg, [str(p) for p in plain(cfg.strategy.get("proxies")) or []])
    evaluator = parts.evaluator  # validated before any (long) scoring
    par = parts.parallelism
    log.info("run %s: %s on %s, %d candidates, evaluator %s%s", parts.run_id, cfg.strategy.name, parts.space.name,
             len(parts.archs), type(evaluator).__name__,
             f", {par.parallel} at once ({par.mode}, executor {par.executor.kind})" if par.parallel > 1 else "")
    pool, decided = candidate_pool(parts, strategy_cls, options, names)
    options.update(decided)
    runtime = ({"datamodule": parts.datamodule, "trainer": parts.trainer, "build_kwargs": parts.build_kwargs}
               if strategy_cls.needs_datamodule else {})
    strategy = strategy_cls(parts.space, pool, budget, parts.seed, **runtime, **options)

    def annotate(arch: Any) -> dict[str, Any]:
        i = pool.index_of.get(strategy.spelling(arch))
        return {} if i is None else {f"proxy/{n}": float(c[i]) for n, c in pool.scores.items()}

    logger = dict(plain(cfg.logger))
    tracker = make_tracker(logger.pop("kind"), dir=output_dir, name=parts.run_id, config=plain(cfg), **logger)
    with tracking(tracker):
        res = SearchLoop(strategy, evaluator, parts.store, parts.run_id, budget_queries=budget,
                         budget_cost_s=budget_cost, tracker=tracker, space=parts.space,
                         fingerprint=run_fingerprint(parts, pool, evaluator), annotate=annotate,
                         parallel=par.parallel, mode=par.mode, executor=par.executor,
                         evaluator_factory=EvaluatorRecipe(cfg, output_dir)).run()
        result = result_dict(parts, pool, evaluator, res)
        best = result["best"]
        tracker.log_summary({"best_arch": best["arch"], "best_value": best["value"],
                             **{f"best_{k}": v for k, v in (best.get("test") or {}).items()},
                             **{f"best_reference/{k}": v for k, v in (best.get("reference") or {}).items()},
                             "search_cost_s": result["search_cost_s"], "n_evaluations": result["n_evaluations"]})
        result["wall_s"] = round(time.perf_counter() - t0, 3)
        write_json(output_dir / "result.json", result)
        if cfg.get("plot", True):
            plot_trajectory(result, output_dir / "trajectory.png")
            plot_proxy_scatter(result, pool, output_dir / "proxies_vs_value.png")
            for name in ("trajectory", "proxies_vs_value"):
                if (output_dir / f"{name}.png").is_file():
                    tracker.log_image(name, output_dir / f"{name}.png")
        tracker.log_artifact(f"best-{parts.run_id}", output_dir / "result.json", "architecture")
    log.info("best %s value=%s test=%s%s -> %s", best["arch"], best["value"], best.get("test"),
             f" reference {best['reference']}" if best.get("reference") else "", output_dir / "result.json")
    if cfg.get("train_best"):  # hnas train on the best architecture (train.recipe / the space's default recipe)
        from hnas.experiment.final import train_best

        result["train"] = train_best(cfg, result, output_dir / "train")
        write_json(output_dir / "result.json", result)
    return result


def result_dict(parts: Parts, pool: CandidatePool, evaluator: Evaluator, res: SearchResult) -> dict[str, Any]:
    """The result.json content of a finished search (see README for the fields)."""
    if res.best is None:
        best: dict[str, Any] = {"arch": None, "value": None, "test": None,
                                "note": "no query returned a finite value, so there is no best architecture"}
    else:
        test = evaluator.test_metrics_of(res.best["arch"])
        best = {"arch": res.best["arch"], "value": res.best["value"], "test": test}
        reference = evaluator.reference_of(res.best["arch"])
        if reference is not None:
            best["reference"] = reference  # the table's accuracies: shown beside real training, never used by it
    out: dict[str, Any] = {
        "experiment": str(parts.cfg.name), "space": parts.space.name, "strategy": str(parts.cfg.strategy.name),
        "seed": parts.seed, "run_id": parts.run_id, "target": parts.target, "best": best,
        "n_evaluations": len(res.history), "search_cost_s": float(res.search_cost_s), "wall_s": None,
        "history": [history_entry(h) for h in res.history], "pool": pool.describe(), "replayed": int(res.n_replayed),
        "search": {"parallel": parts.parallelism.parallel, "mode": parts.parallelism.mode,
                   "executor": parts.parallelism.executor.kind, "search_wall_s": round(res.wall_s, 3),
                   "executor_start_s": round(res.executor_start_s, 3),
                   "executor_stop_s": round(res.executor_stop_s, 3)},
    }
    metrics = (list(best["test"]) if best.get("test") else list(best["reference"]) if best.get("reference")
               else [parts.target] if parts.target else [])
    optimum = evaluator.pool_optimum(pool.archs, metrics) if metrics else None
    if optimum:
        out["pool"]["optimum"] = {k: (None if not np.isfinite(v) else v) for k, v in optimum.items()}
    if res.extra:
        out["strategy_info"] = res.extra
    return out
