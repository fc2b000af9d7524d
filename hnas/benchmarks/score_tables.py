"""Import an external precomputed proxy-score table (NAS-Bench-Suite-Zero layout) into the Store.

Layout: a CSV with ``index`` (official architecture index of the space) and one column per proxy
(``epe_nas, fisher, flops, grad_norm, grasp, jacov, l2_norm, nwot, params, plain, snip, synflow, zen``).
Column names map to hnas proxy names through ``SUITE_ZERO_NAMES`` (``jacov`` -> ``jacob_cov``, ``nwot`` ->
``naswot``; every other column keeps its name).

Imported scores were computed by another implementation with its own initialisation and data batch, so
they must never be mistaken for hnas' own cache entries. They are stored under an *import marker* key:

- ``version`` = ``IMPORT_VERSION`` (0; hnas proxy versions start at 1),
- ``seed`` = ``IMPORT_SEED`` (-1),
- ``batch_fp`` = ``"import:<source>"`` (so two imported tables of the same proxy never overwrite each other),
- ``bn_mode`` = ``dtype`` = ``"import"``,
- ``source`` = the label (default ``suite_zero:<file name>``).

Read them back with ``Store.find_scores(space, proxy, source=label)``; ``Store.score_sources()`` tells a
result which labels it used. Non-finite cells become ``nan``/``inf`` statuses (value NULL).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from hnas.benchmarks.table import BenchmarkError, numeric_columns, read_table
from hnas.files import sha256_file
from hnas.proxies.result import ProxyScore
from hnas.spaces import get_space
from hnas.spaces.base import SearchSpaceError
from hnas.store import ScoreKey, Store

log = logging.getLogger(__name__)

SUITE_ZERO_NAMES = {"jacov": "jacob_cov", "nwot": "naswot", "zen": "zen"}
IMPORT_VERSION = 0
IMPORT_SEED = -1
IMPORT_BN_MODE = "import"
IMPORT_DTYPE = "import"
HOW_TO_GET = "a NAS-Bench-Suite-Zero style CSV: column index (architecture index) plus one column per proxy"


def default_source(path: str | os.PathLike[str]) -> str:
    return f"suite_zero:{Path(path).name}"


def import_key(space: str, spelling: str, proxy: str, source: str) -> ScoreKey:
    """The Store key of an imported score (see the module docstring for the marker fields)."""
    return ScoreKey(
        space, spelling, proxy, IMPORT_VERSION, IMPORT_SEED, f"import:{source}", IMPORT_BN_MODE, IMPORT_DTYPE
    )


def import_score_table(
    store: Store, path: str | os.PathLike[str], space: str = "nb201", source: str | None = None
) -> int:
    """Import every row of the table at ``path``; returns the number of architectures imported.

    Idempotent: importing the same file again rewrites the same keys. Rows are keyed by the exact
    architecture spelling (``space.format``), not the canonical key: a table holds one measurement per
    spelling (index), and isomorphic spellings were scored separately (read with ScoreSpec(lookup="spelling")).
    """
    path = Path(path)
    source = source or default_source(path)
    digest = sha256_file(path) if path.is_file() else None
    done = store.load_state(f"import:{space}:{source}")
    if digest is not None and done is not None and done.get("sha256") == digest:
        log.info("%s already imported as %r (%d architectures); nothing to do", path, source, done["rows"])
        return int(done["rows"])
    df = read_table(path, ("index",), "score table", HOW_TO_GET)
    cols = [c for c in df.columns if c != "index"]
    if not cols:
        raise BenchmarkError(f"score table {path} has no proxy column; {HOW_TO_GET}")
    df = numeric_columns(df, cols, path, allow_inf=True).sort_values("index", kind="stable")
    sp = get_space(space)
    proxies = {c: SUITE_ZERO_NAMES.get(c, c) for c in cols}
    values = df[cols].to_numpy(dtype=np.float64)
    rows: list[tuple[ScoreKey, ProxyScore, str]] = []
    seen: dict[str, int] = {}
    for r, raw_index in enumerate(df["index"].tolist()):
        if isinstance(raw_index, float) and not raw_index.is_integer():
            raise BenchmarkError(f"score table {path}: index {raw_index!r} is not an integer")
        i = int(raw_index)
        try:
            spelling = sp.format(sp.from_index(i))
        except SearchSpaceError as e:
            raise BenchmarkError(f"score table {path}: {e}") from e
        if spelling in seen:
            raise BenchmarkError(f"score table {path}: index {i} appears twice")
        seen[spelling] = i
        for c, v in zip(cols, values[r]):
            score = ProxyScore.from_value(v)
            if not score.ok:
                score = ProxyScore(None, score.status, 0.0, f"{score.message or score.status} in {path.name}")
            rows.append((import_key(space, spelling, proxies[c], source), score, source))
    store.put_scores(rows)
    store.save_state(f"import:{space}:{source}", {"sha256": digest, "rows": len(seen), "path": str(path)})
    log.info("imported %d architectures x %d proxies from %s as %r", len(seen), len(cols), path, source)
    return len(seen)
