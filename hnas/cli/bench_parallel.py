"""``hnas bench-parallel``: the wall-time speedup of evaluating q candidates at once, on the NAS-Bench-201 table.

Why a simulated cost: a table lookup takes microseconds, so scheduling cannot be seen in wall time; with
``evaluator.simulate_time = f`` every query sleeps ``f x cost_12ep_s``, f chosen so that the pool's mean query
sleeps ``--query-seconds``. Each (strategy, q) is one ``hnas run`` in a fresh temporary store; the table
printed has the search's wall time, the part of it spent starting and stopping the workers (and building their
evaluators), and the speedups over q = 1 with and without that part.
A figure, not a test: the numbers depend on the machine and on what else runs on it (the load is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from hnas.cli import exits_on_user_error
from hnas.errors import ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hnas bench-parallel", description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default=os.environ.get("HNAS_NB201_CSV", "data/nb201.csv"),
                    help="the NAS-Bench-201 CSV (default: $HNAS_NB201_CSV or data/nb201.csv)")
    ap.add_argument("--pool", default=None, help="a score table in the Suite-Zero layout: pool=table with its "
                    "proxies imported (needed by robot/hnas); default: a 1,000-architecture sample, no proxies")
    ap.add_argument("--strategies", default="random", help="comma-separated strategy names (default: random)")
    ap.add_argument("--q", default="1,2,4,8", help="comma-separated batch sizes (default: 1,2,4,8)")
    ap.add_argument("--budget", type=int, default=20, help="distinct queries T (default: 20)")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--query-seconds", type=float, default=0.5, help="mean seconds one query sleeps (default 0.5)")
    ap.add_argument("--executor", default="local", help="search.executor (default: local)")
    ap.add_argument("--mode", default="sync", help="search.mode (default: sync)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. strategy.options.x=1)")
    return ap.parse_args(argv)


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    import numpy as np
    import pandas as pd
    from hydra import compose, initialize_config_module

    from hnas.experiment.build import register_resolvers
    from hnas.experiment.runner import run_experiment

    if not Path(args.benchmark).is_file():
        raise ConfigError(f"--benchmark {args.benchmark!r} does not exist (the NAS-Bench-201 CSV)")
    qs = [int(q) for q in str(args.q).split(",")]
    table = pd.read_csv(args.benchmark, usecols=["index", "cost_12ep_s"]).set_index("index")["cost_12ep_s"]
    common = ["+experiment=nb201_cifar10", f"strategy.budget={args.budget}", f"seed={args.seed}", "logger=none",
              "plot=false", f"benchmark.path={args.benchmark}", f"search.executor={args.executor}",
              f"search.mode={args.mode}"]
    if args.pool:
        if not Path(args.pool).is_file():
            raise ConfigError(f"--pool {args.pool!r} does not exist (a score table with an 'index' column)")
        idx = pd.read_csv(args.pool, usecols=["index"])["index"].to_numpy()
        common += ["proxies=suite_zero_cifar10", f"proxies.import_path={args.pool}", "pool=table",
                   f"pool.path={args.pool}"]
    else:
        idx = table.index.to_numpy()
    f = float(args.query_seconds) / float(np.mean(table.loc[idx]))
    logging.getLogger("hnas").setLevel(logging.WARNING)
    register_resolvers()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hnas-bench-parallel-") as tmp:
        for strategy in str(args.strategies).split(","):
            for q in qs:
                over = [*common, f"strategy={strategy}", f"+evaluator.simulate_time={f}", f"search.parallel={q}",
                        f"store={Path(tmp) / 'store.sqlite'}", *args.overrides]
                with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
                    cfg = compose("run", overrides=over)
                res = run_experiment(cfg, Path(tmp) / f"{strategy}-q{q}")
                s = res["search"]
                rows.append({"strategy": strategy, "q": q, "wall": s["search_wall_s"],
                             "start": s["executor_start_s"] + s["executor_stop_s"],
                             "queries": len({h["arch"] for h in res["history"]}), "sleep": f * res["search_cost_s"],
                             "test": (res["best"].get("test") or {}).get("cifar10_test")})
    print(f"evaluator.simulate_time={f:.6g} (mean query {args.query_seconds} s over {len(idx)} architectures); "  # noqa: T201
          f"executor {args.executor}, mode {args.mode}, T={args.budget}, seed {args.seed}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| strategy | q | search wall (s) | worker start+stop (s) | speedup | speedup w/o start+stop | queries "  # noqa: T201
          "| sum of sleeps (s) | best cifar10_test |")
    print("|---|---|---|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        base = next(b for b in rows if b["strategy"] == r["strategy"] and b["q"] == qs[0])
        print(f"| {r['strategy']} | {r['q']} | {r['wall']:.2f} | {r['start']:.2f} | "  # noqa: T201
              f"{base['wall'] / r['wall']:.2f} | {(base['wall'] - base['start']) / (r['wall'] - r['start']):.2f} | "
              f"{r['queries']} | {r['sleep']:.1f} | {r['test'] if r['test'] is None else round(r['test'], 2)} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    exits_on_user_error(bench)(parse_args(argv))
