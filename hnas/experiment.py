"""One search run assembled from a Hydra config: space, pool + proxy scores, strategy, evaluator, tracker.

``hnas.run`` is the CLI around this; tests and notebooks can build an ``Experiment`` from a composed config.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that cannot work; the message names it and what would be valid."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) or OmegaConf.is_list(node) \
        else node


def pool_archs(cfg_pool: Any, space: Any) -> list[Any]:
    """The candidate architectures named by the ``pool`` config group (sample / all / list / table)."""
    kind = cfg_pool.get("kind", "sample")
    if kind == "sample":
        size, seed = int(cfg_pool.size), int(cfg_pool.seed)
        if size <= 0:
            raise ConfigError(f"pool.size must be > 0, got {size}")
        archs = space.sample_many(size, np.random.default_rng(seed))
    elif kind == "all":
        archs = list(space.enumerate())
    elif kind == "list":
        archs = [space.parse(str(a)) for a in cfg_pool.archs]
        if not archs:
            raise ConfigError("pool.archs is empty; give architecture strings, e.g. pool.archs=['|...|']")
    elif kind == "table":
        import pandas as pd

        path = Path(str(cfg_pool.path))
        if not path.is_file():
            raise ConfigError(f"pool.path {str(path)!r} does not exist (a CSV with an 'index' column)")
        idx = pd.read_csv(path, usecols=["index"])["index"].astype(int).tolist()
        limit = cfg_pool.get("limit")
        if limit is not None:
            if int(limit) <= 0:
                raise ConfigError(f"pool.limit must be > 0 (or null for every row), got {limit}")
            idx = sorted(idx)[: int(limit)]
        archs = [space.from_index(i) for i in idx]
    else:
        raise ConfigError(f"unknown pool.kind {kind!r}; valid: sample, all, list, table")
    shard = cfg_pool.get("shard")
    if shard:
        archs = shard_slice(archs, str(shard))
    return archs


def shard_slice(items: list[Any], shard: str) -> list[Any]:
    """``"i/n"`` -> the i-th (1-based) of n interleaved slices, so shards are balanced and disjoint."""
    try:
        i, n = (int(p) for p in shard.split("/"))
    except ValueError:
        raise ConfigError(f"pool.shard {shard!r} is not of the form i/n (e.g. 3/8)") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ConfigError(f"pool.shard {shard!r}: need 1 <= i <= n")
    return items[i - 1 :: n]


def scoring_settings(p: Any, seed: int) -> dict[str, Any]:
    """How proxy scores are computed (the ``proxies`` config group): scoring batch, init seed, BN mode, dtype."""
    b = p.get("batch", {}) or {}
    bn = p.get("bn_mode")
    if bn is not None and bn not in ("train", "eval", "off"):
        raise ConfigError(f"proxies.bn_mode {bn!r} is not one of: train, eval, off (or null = per-proxy default)")
    return {"n": int(b.get("size", 64)), "seed": int(b.get("seed", seed)), "mode": str(b.get("mode", "random")),
            "init_seed": int(p.get("init_seed", seed)), "bn_mode": bn, "dtype": p.get("dtype"),
            "options": dict(_plain(p.get("options", {})) or {})}


def ensure_scores(store: Any, space: Any, archs: list[Any], names: list[str], datamodule: Any,
                  settings: dict[str, Any], build_kwargs: dict[str, Any], progress: bool = True) -> list[Any]:
    """Compute (and store) every missing proxy score of the pool; return the exact ScoreSpecs to read them."""
    import torch

    from hnas.proxies.cache import score_cached_many, score_key
    from hnas.proxies.registry import get_proxy
    from hnas.search import ScoreSpec

    s = settings
    batch = datamodule.scoring_batch(s["n"], s["seed"], mode=s["mode"])
    if s["dtype"] and not isinstance(getattr(torch, str(s["dtype"]), None), torch.dtype):
        raise ConfigError(f"proxies.dtype {s['dtype']!r} is not a torch dtype name (e.g. float32, float64)")
    dtype = getattr(torch, s["dtype"]) if s["dtype"] else None
    num_classes = datamodule.num_classes
    proxies = [get_proxy(n, **s["options"].get(n, {})) for n in names]

    def factory(arch: Any) -> torch.nn.Module:
        return space.build(arch, num_classes=num_classes, **build_kwargs)

    t0 = time.perf_counter()
    score_cached_many(store, space, archs, factory, proxies, batch, seed=s["init_seed"], bn_mode=s["bn_mode"],
                      dtype=dtype, num_classes=num_classes, progress=progress)
    log.info("proxy scores for %d archs ready in %.1f s", len(archs), time.perf_counter() - t0)
    specs = []
    for name, proxy in zip(names, proxies):
        k = score_key(space.name, "", proxy, s["init_seed"], batch.fingerprint, s["bn_mode"], dtype)
        specs.append(ScoreSpec(k.proxy, name=name, version=k.version, seed=k.seed, batch_fp=k.batch_fp,
                               bn_mode=k.bn_mode, dtype=k.dtype))
    return specs


def default_run_id(cfg: DictConfig) -> str:
    """``name-strategy-seedN-<hash>``: the same command resumes the same run; another pool, proxy source,
    evaluator or strategy option gets its own trial log in a shared store."""
    import hashlib
    import json

    parts = {k: _plain(cfg.get(k)) for k in ("space", "pool", "proxies", "strategy", "evaluator", "benchmark")}
    parts["data"] = {k: _plain(cfg.data.get(k)) for k in ("name", "root")} if cfg.get("data") else None
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{cfg.name}-{cfg.strategy.name}-seed{int(cfg.seed)}-{digest}"


class Experiment:
    """Everything one ``python -m hnas.run`` does, built from its config."""

    def __init__(self, cfg: DictConfig, output_dir: Path) -> None:
        from hnas.spaces import get_space
        from hnas.store import Store

        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.seed = int(cfg.seed)
        strat = cfg.strategy
        for name in ("budget", "budget_cost_s"):
            v = strat.get(name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"strategy.{name} must be a positive number, got {v!r}")
        if strat.get("budget") is None and strat.get("budget_cost_s") is None:
            raise ConfigError("give strategy.budget (distinct queries) and/or strategy.budget_cost_s (seconds)")
        from hnas.search import strategy_names

        if strat.name not in strategy_names():
            raise ConfigError(f"unknown strategy {strat.name!r}; valid: {', '.join(strategy_names())}")
        self.space = get_space(cfg.space.name)
        self.build_kwargs = dict(_plain(cfg.space.get("build", {})) or {})
        self.store = Store(Path(str(cfg.store)).expanduser())
        self.run_id = cfg.get("run_id") or default_run_id(cfg)
        self.benchmark = self._benchmark()
        self.datamodule = None
        self.evaluator = self._evaluator()
        self.pool = self._pool()

    # --- parts ---------------------------------------------------------------------------------------------
    def _benchmark(self) -> Any:
        b = self.cfg.get("benchmark")
        if not b or not b.get("name"):
            return None
        from hnas.benchmarks import load_benchmark

        return load_benchmark(b.name, str(b.path))

    def _data(self) -> Any:
        if self.datamodule is None:
            from hnas.data import build_datamodule

            d = dict(_plain(self.cfg.data))
            name = d.pop("name")
            self.datamodule = build_datamodule(name, **d)
        return self.datamodule

    def _evaluator(self) -> Any:
        e = self.cfg.evaluator
        if e.kind == "benchmark":
            from hnas.evaluate import BenchmarkEvaluator

            if self.benchmark is None:
                raise ConfigError("evaluator=benchmark needs a benchmark (benchmark=nb201 benchmark.path=...)")
            return BenchmarkEvaluator(self.benchmark, self.space, metric=e.metric, cost=e.get("cost"),
                                      test_metrics=list(e.get("test_metrics", [])))
        if e.kind == "train":
            from hnas.evaluate import TrainingEvaluator

            cand = dict(_plain(e.get("candidate", {})) or {})
            cand.setdefault("build_kwargs", self.build_kwargs)
            return TrainingEvaluator(self.space, self._data(), budget=_plain(e.budget),
                                     trainer=_plain(self.cfg.trainer), candidate=cand, seed=self.seed,
                                     limit_val_batches=e.get("limit_val_batches"),
                                     default_root_dir=str(self.output_dir))
        if e.kind == "nafbee":
            from hnas.nafbee import NAFBeeEvaluator

            if self.benchmark is None:
                raise ConfigError("evaluator=nafbee needs benchmark.name=nafbee and benchmark.path=<nafbee.csv>")
            return NAFBeeEvaluator(self.benchmark, self.space, metric=str(e.metric),
                                   test_metrics=list(e.get("test_metrics") or [e.metric]))
        raise ConfigError(f"unknown evaluator.kind {e.kind!r}; valid: benchmark, train, nafbee")

    def strategy_proxies(self) -> list[str]:
        return [str(p) for p in (self.cfg.strategy.get("proxies") or [])]

    def _pool(self) -> Any:
        from hnas.search import CandidatePool, ScoreSpec

        archs = pool_archs(self.cfg.pool, self.space)
        names = self.strategy_proxies()
        if not names:
            return CandidatePool(archs, [self.space.format(a) for a in archs], {}, {})
        pcfg = self.cfg.proxies
        source = pcfg.get("source") or "compute"
        if source == "compute":
            specs = self.ensure_scores(archs, names)
        else:
            if pcfg.get("import_path"):
                from hnas.benchmarks.score_tables import import_score_table

                n = import_score_table(self.store, str(pcfg.import_path), space=self.space.name, source=source)
                log.info("imported %d rows of %s as source %r", n, pcfg.import_path, source)
            specs = [ScoreSpec(p, source=source, arch_key="spelling") for p in names]
        return CandidatePool.from_store(self.store, self.space, archs, specs)

    def scoring_settings(self) -> dict[str, Any]:
        return scoring_settings(self.cfg.proxies, self.seed)

    def ensure_scores(self, archs: list[Any], names: list[str]) -> list[Any]:
        from hnas.search import get_strategy_class

        settings = self.scoring_settings()
        prepare = getattr(get_strategy_class(str(self.cfg.strategy.name)), "prepare_scoring", None)
        if prepare is not None:  # e.g. RBFleX's HDA: kernel widths decided before the pool is scored
            settings = prepare(self, archs, settings)
        return ensure_scores(self.store, self.space, archs, names, self._data(), settings, self.build_kwargs)

    # --- run -----------------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        from hnas.search import get_strategy_class, make_strategy, run_search
        from hnas.tracking import make_tracker, tracking

        strat = self.cfg.strategy
        options = dict(_plain(strat.get("options", {})) or {})
        if getattr(get_strategy_class(strat.name), "needs_datamodule", False):
            options.update(datamodule=self._data(), trainer=dict(_plain(self.cfg.trainer) or {}),
                           build_kwargs=self.build_kwargs)
        strategy = make_strategy(strat.name, self.space, self.pool, strat.get("budget"), self.seed, **options)
        lcfg = dict(_plain(self.cfg.logger))
        kind = lcfg.pop("kind")
        tracker = make_tracker(kind, dir=str(self.output_dir), name=self.run_id,
                               config=_plain(self.cfg), **lcfg)
        with tracking(tracker):
            res = run_search(strategy, self.evaluator, self.store, self.run_id,
                             budget_queries=strat.get("budget"), budget_cost_s=strat.get("budget_cost_s"),
                             tracker=tracker, space=self.space)
            if hasattr(strategy, "summary"):
                res.extra.update(strategy.summary())
            result = self.result_dict(res)
            tracker.log_summary({"best_value": result["best"]["value"], **{
                f"best_{k}": v for k, v in (result["best"].get("test") or {}).items()},
                "search_cost_s": result["search_cost_s"], "n_evaluations": result["n_evaluations"]})
        return result

    def result_dict(self, res: Any) -> dict[str, Any]:
        best = dict(res.best)
        test = None
        if hasattr(self.evaluator, "test_metrics_of") and best.get("arch") is not None:
            test = self.evaluator.test_metrics_of(best["arch"])
        out: dict[str, Any] = {
            "experiment": str(self.cfg.name), "space": self.space.name, "strategy": str(self.cfg.strategy.name),
            "seed": self.seed, "run_id": self.run_id, "target": self.cfg.get("target"),
            "best": {"arch": best.get("arch"), "value": best.get("value"), "test": test},
            "n_evaluations": len(res.history), "search_cost_s": float(res.search_cost_s),
            "wall_s": None,
            "history": [{k: h[k] for k in ("arch", "value", "cost_s", "test") if k in h} for h in res.history],
            "pool": self.pool.describe(), "replayed": int(res.n_replayed),
        }
        if test is not None:
            out["pool"]["optimum"] = self.pool_optimum(list(test))
        if res.extra:
            out["strategy_info"] = res.extra
        return out

    def pool_optimum(self, metrics: list[str]) -> dict[str, float]:
        """Best value of each test metric over the candidate pool: what a perfect search could reach."""
        if hasattr(self.evaluator, "pool_optimum"):
            return self.evaluator.pool_optimum(self.pool.archs, metrics)
        frame = self.benchmark.frame
        idx = [self.space.index(a) for a in self.pool.archs]
        return {m: float(frame.loc[idx, m].max()) for m in metrics}

    def plot(self, result: dict[str, Any], path: Path) -> None:
        """Best-so-far observed value (and target test metric) vs number of queries."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        vals = [h["value"] for h in result["history"]]
        if not vals:
            return
        best = np.maximum.accumulate(vals)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(range(1, len(vals) + 1), vals, "o", alpha=0.4, label="observed")
        ax.plot(range(1, len(vals) + 1), best, "-", label="best so far")
        ax.set_xlabel("queries")
        ax.set_ylabel("observed value")
        ax.set_title(f"{result['experiment']} · {result['strategy']} · seed {result['seed']}")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def build_experiment(cfg: DictConfig, output_dir: Path) -> Experiment:
    return Experiment(cfg, output_dir)
