"""RBFleX-NAS search (methods.md §6.4): rank a pool by the label-free RBFleX score, query the argmax first.

One trial of the paper's protocol is "score the sampled pool, take the argmax"; as an ask/tell strategy the
first ask is that argmax (budget T = 1 is the paper's protocol) and later asks go down the RBFleX ranking
(T > 1: the hybrid form, real queries spent on the top-ranked candidates). The multi-trial protocol with the
per-trial reset is ``hnas.rbflex_search``.

Kernel bandwidths: ``gammas="hda"`` (default) detects (γ_K, γ_Q) with HDA (``hnas.proxies.rbflex.
detect_gammas``) over ``n_gamma`` networks sampled from the space (or, ``hda_from="pool"``, the pool's own
networks -- the NAFBee variant, with ``positive_only=True``) on the first ``n_images`` images of the scoring
batch, hooking the modules of the rbflex proxy's ``hooks`` rule (so HDA and the score see the same X), before
the pool is scored; ``gammas="fixed"`` uses ``gamma_k``/``gamma_q`` (None: the proxy's
registered constants of the official scripts). The pool scores are the ``rbflex`` proxy's, computed with
those γ's through the store cache (the γ's are proxy options, so they are part of the cache key).

``prepare_scoring`` is the capability the experiment calls before scoring the pool: it runs HDA and returns
the γ's as rbflex proxy options and as strategy options (so the strategy and its saved state carry them); the
run's config and run id stay as the user wrote them (HDA is a deterministic function of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from hnas.proxies.settings import ScoringSettings
from hnas.search.base import ScoringContext, StrategyError
from hnas.search.training_free import RankedPoolSearch

log = logging.getLogger(__name__)

GAMMA_MODES = ("hda", "fixed")
HDA_SOURCES = ("sample", "pool")


@dataclass(frozen=True)
class HDAResult:
    """γ's found by HDA, the networks (strings) they were detected on, and the detection time."""

    gamma_k: float
    gamma_q: float
    archs: list[str]
    n_images: int
    positive_only: bool
    seconds: float
    hooks: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hda_archs(space: Any, n_gamma: int, seed: int) -> list[Any]:
    """``n_gamma`` distinct architectures drawn uniformly from ``space`` with ``seed`` (HDA's M_gamma)."""
    if isinstance(n_gamma, bool) or not isinstance(n_gamma, (int, np.integer)) or n_gamma < 1:
        raise StrategyError(f"n_gamma (networks sampled for HDA) must be a positive integer, got {n_gamma!r}")
    size = space.size() if hasattr(space, "size") else None
    n = int(n_gamma) if size is None else min(int(n_gamma), int(size))
    return space.sample_many(n, np.random.default_rng(seed))


def run_hda(
    space: Any,
    archs: Sequence[Any],
    inputs: torch.Tensor,
    num_classes: int,
    build_kwargs: dict[str, Any] | None = None,
    init_seed: int = 0,
    positive_only: bool = False,
    hooks: str | None = None,
) -> HDAResult:
    """HDA over the networks of ``archs`` (each built under ``torch.manual_seed(init_seed)``) on ``inputs``,
    X hooked by the rbflex rule ``hooks`` (None: the proxy's default)."""
    from hnas.proxies.rbflex import HOOK_RULES, HOOKS, detect_gammas

    hooks = HOOKS if hooks is None else str(hooks)
    if hooks not in HOOK_RULES:
        raise StrategyError(f"rbflex hooks={hooks!r} is not one of: {', '.join(HOOK_RULES)}")

    if inputs.shape[0] < 2:
        raise StrategyError(f"HDA needs at least 2 images, got {inputs.shape[0]}")
    t0 = time.perf_counter()
    models = []
    with torch.random.fork_rng(devices=[]):
        for a in archs:
            torch.manual_seed(init_seed)
            models.append(space.build(a, num_classes=num_classes, **(build_kwargs or {})))
    gk, gq = detect_gammas(models, inputs, positive_only=positive_only, hooks=hooks)
    res = HDAResult(gk, gq, [space.format(a) for a in archs], int(inputs.shape[0]), bool(positive_only),
                    time.perf_counter() - t0, hooks)
    log.info("HDA over %d networks on %d images (hooks=%s): gamma_k=%.6g gamma_q=%.6g (%.1f s)", len(archs),
             res.n_images, hooks, gk, gq, res.seconds)
    return res


class RBFleXSearch(RankedPoolSearch):
    """Query the pool in RBFleX order: argmax first, then the next-best (see the module docstring)."""

    name = "rbflex"
    defaults: dict[str, Any] = {
        "gammas": "hda",        # hda | fixed
        "gamma_k": None,        # fixed value, or the γ's HDA found (returned by prepare_scoring)
        "gamma_q": None,
        "n_gamma": 10,          # networks HDA samples from the space
        "hda_from": "sample",   # sample (random networks of the space) | pool (the pool's networks: NAFBee)
        "positive_only": False,  # HDA keeps only candidates > 0 (the NAFBee-BERT variant)
        "hda_seed": None,       # seed of HDA's network sample (None: the run seed)
    }

    def setup(self) -> None:
        o = self.options
        if o["gammas"] not in GAMMA_MODES:
            raise StrategyError(f"rbflex gammas={o['gammas']!r} is not one of: {', '.join(GAMMA_MODES)}")
        if o["hda_from"] not in HDA_SOURCES:
            raise StrategyError(f"rbflex hda_from={o['hda_from']!r} is not one of: {', '.join(HDA_SOURCES)}")
        if (o["gamma_k"] is None) != (o["gamma_q"] is None):
            raise StrategyError(
                f"give both rbflex gamma_k and gamma_q or neither, got gamma_k={o['gamma_k']!r}, "
                f"gamma_q={o['gamma_q']!r}"
            )
        for g in ("gamma_k", "gamma_q"):
            if o[g] is not None and not (isinstance(o[g], (int, float)) and o[g] > 0):
                raise StrategyError(f"rbflex {g} must be a positive number, got {o[g]!r}")
        if o["gammas"] == "hda" and o["gamma_k"] is None:
            raise StrategyError(
                "rbflex gammas=hda but no detected γ's were given: run it through `hnas run` (the experiment "
                "runs HDA before scoring the pool, RBFleXSearch.prepare_scoring) or set gammas=fixed"
            )
        self.pool.require(["rbflex"], who="strategy 'rbflex'")
        self.rank(self.pool.scores["rbflex"])

    def ranking(self) -> list[tuple[str, float]]:
        """(pool key, RBFleX score) best first: the whole pool's ranking, for reports."""
        s = self.pool.scores["rbflex"]
        return [(self.pool.spellings[int(i)], float(s[int(i)])) for i in self._order]

    def summary(self) -> dict[str, Any]:
        """γ's and the top of the ranking, for result files."""
        o = self.options
        top = self.ranking()[: min(10, len(self.pool))]
        return {"gammas": o["gammas"], "gamma_k": o["gamma_k"], "gamma_q": o["gamma_q"],
                "top": [{"arch": k, "rbflex": v} for k, v in top]}

    # ------------------------------------------------------------------ experiment hook
    @classmethod
    def prepare_scoring(cls, ctx: ScoringContext, archs: Sequence[Any], options: dict[str, Any],
                        settings: ScoringSettings) -> tuple[ScoringSettings, dict[str, Any]]:
        """Before the pool is scored: the rbflex proxy's γ's (HDA over sampled networks or the pool's own,
        or the given/fixed values); the detected γ's also become the strategy's ``gamma_k``/``gamma_q``."""
        o = {**cls.defaults, **options}
        if o["hda_from"] not in HDA_SOURCES:
            raise StrategyError(f"rbflex hda_from={o['hda_from']!r} is not one of: {', '.join(HDA_SOURCES)}")
        seed = int(ctx.seed if o["hda_seed"] is None else o["hda_seed"])
        settings, hda = resolve_gammas(
            ctx.space, ctx.datamodule, settings, ctx.build_kwargs, gammas=o["gammas"], gamma_k=o["gamma_k"],
            gamma_q=o["gamma_q"], n_gamma=o["n_gamma"], seed=seed, positive_only=bool(o["positive_only"]),
            archs=archs if o["hda_from"] == "pool" else None)
        if hda is None:
            return settings, {}
        return settings, {"gamma_k": hda.gamma_k, "gamma_q": hda.gamma_q}


def resolve_gammas(
    space: Any,
    datamodule: Any,
    settings: ScoringSettings,
    build_kwargs: dict[str, Any],
    gammas: str = "hda",
    gamma_k: float | None = None,
    gamma_q: float | None = None,
    n_gamma: int = 10,
    seed: int = 0,
    positive_only: bool = False,
    archs: Sequence[Any] | None = None,
) -> tuple[ScoringSettings, HDAResult | None]:
    """``settings`` with the rbflex proxy's kernel widths: detected by HDA (``gammas="hda"``: over ``archs``,
    or ``n_gamma`` networks sampled from ``space`` with ``seed``), or the given fixed values, or (``fixed``
    without values) the proxy's registered constants of the official scripts. Also returns the HDA result."""
    if gammas not in GAMMA_MODES:
        raise StrategyError(f"rbflex gammas={gammas!r} is not one of: {', '.join(GAMMA_MODES)}")
    if (gamma_k is None) != (gamma_q is None):
        raise StrategyError(f"give both rbflex gamma_k and gamma_q or neither, got gamma_k={gamma_k!r}, "
                            f"gamma_q={gamma_q!r}")
    if gamma_k is not None:
        if gammas == "hda":
            raise StrategyError(f"rbflex gammas=hda detects the kernel widths itself, but gamma_k={gamma_k!r} and "
                                f"gamma_q={gamma_q!r} were given; use gammas=fixed to give them")
        return settings.with_options("rbflex", gamma_k=float(gamma_k), gamma_q=float(gamma_q)), None
    if gammas == "fixed":
        return settings, None
    hda = hda_for_scoring(space, datamodule, settings, build_kwargs, archs, n_gamma=n_gamma, seed=seed,
                          positive_only=positive_only)
    return settings.with_options("rbflex", gamma_k=hda.gamma_k, gamma_q=hda.gamma_q), hda


def hda_for_scoring(
    space: Any,
    datamodule: Any,
    settings: ScoringSettings,
    build_kwargs: dict[str, Any],
    archs: Sequence[Any] | None = None,
    n_gamma: int = 10,
    seed: int = 0,
    positive_only: bool = False,
) -> HDAResult:
    """HDA on the scoring batch of ``settings`` (its first ``n_images`` images and its ``hooks`` rule: the
    rbflex options).

    ``archs`` None: ``n_gamma`` networks sampled from ``space`` with ``seed``; else those networks.
    """
    rb = settings.proxy("rbflex").options
    n_images = int(rb["n_images"])
    batch = settings.batch(datamodule)
    if not 2 <= n_images <= batch.x.shape[0]:
        raise StrategyError(f"rbflex n_images={n_images} must be in [2, scoring batch size {batch.x.shape[0]}]")
    nets = list(archs) if archs is not None else hda_archs(space, n_gamma, seed)
    return run_hda(space, nets, batch.x[:n_images], datamodule.num_classes, build_kwargs,
                   init_seed=settings.init_seed, positive_only=positive_only, hooks=str(rb["hooks"]))
