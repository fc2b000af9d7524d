"""The proxy runtime: pass sharing, statuses, BN modes, determinism, OOM back-off, and the score cache."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from hnas.proxies import registry
from hnas.proxies.registry import Proxy
from hnas.proxies.result import ProxyScore
from hnas.proxies.runtime import score_network, zero_cost

MINE = [
    "grad_norm",
    "snip",
    "grasp",
    "fisher",
    "plain",
    "synflow",
    "synflow_bn",
    "synflow_log",
    "jacob_cov",
    "epe_nas",
    "naswot",
    "params",
    "flops",
    "l2_norm",
]
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"




@pytest.fixture(scope="module")
def nb201():
    from hnas.spaces import get_space

    return get_space("nb201")


def batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def tiny(nb201, arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nb201.build(nb201.parse(arch), C=4, N=1)


class PassCounter:
    """Counts forwards of the whole network and backward passes through its output.

    The hooks are closures (deepcopy keeps functions as they are, but would copy a bound method's object),
    so they count on the runtime's copies of the network too.
    """

    def __init__(self, model: nn.Module) -> None:
        counts = self.counts = {"forwards": 0, "backwards": 0}

        def bwd(grad: torch.Tensor) -> None:
            counts["backwards"] += 1

        def fwd(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            counts["forwards"] += 1
            if out.requires_grad:
                out.register_hook(bwd)

        model.register_forward_hook(fwd)

    @property
    def forwards(self) -> int:
        return self.counts["forwards"]

    @property
    def backwards(self) -> int:
        return self.counts["backwards"]


def test_all_none_cell_gives_true_statuses_never_a_crash(nb201) -> None:
    x, y = batch()
    s = score_network(tiny(nb201, ALL_NONE), MINE, x, y, num_classes=10)
    assert set(s) == set(MINE)
    assert all(v.status in ("ok", "nan", "inf") for v in s.values()), s
    # output independent of the input: J = 0, correlations 0/0
    assert s["jacob_cov"].status == "nan" and s["epe_nas"].status == "nan"
    # every ReLU input is 0 -> all codes equal -> K singular -> log|det| = -inf
    assert s["naswot"].status == "inf"
    # no path from input to output carries a weight: zero gradients, zero synflow, log 0 = -inf
    for name in ("grad_norm", "snip", "plain", "grasp", "synflow"):
        assert s[name].status == "ok" and s[name].value == 0.0, (name, s[name])
    assert s["synflow_log"].status == "inf" and s["synflow_log"].value is None
    assert s["params"].value == pytest.approx(
        sum(p.numel() for p in tiny(nb201, ALL_NONE).parameters()) / 1e6
    )


def test_mixed_cell_scores_all_ok(nb201) -> None:
    x, y = batch()
    s = score_network(tiny(nb201, MIXED), MINE, x, y, num_classes=10)
    assert all(v.ok for v in s.values()), s
    assert s["synflow_log"].value == pytest.approx(math.log(s["synflow"].value))


def test_a_raising_proxy_is_an_error_and_the_others_still_score(nb201, caplog) -> None:
    def boom(ctx) -> float:
        raise RuntimeError("kaput")

    x, y = batch()
    s = score_network(tiny(nb201, MIXED), ["grad_norm", Proxy("boom", boom), "jacob_cov"], x, y, 10)
    assert s["boom"] == ProxyScore(None, "error", s["boom"].seconds, "RuntimeError: kaput")
    assert s["grad_norm"].ok and s["jacob_cov"].ok
    assert "proxy boom failed" in caplog.text


def test_missing_labels_is_an_error_for_label_proxies_only(nb201) -> None:
    x, _ = batch()
    s = score_network(tiny(nb201, MIXED), ["snip", "jacob_cov", "synflow"], x, None, 10)
    assert s["snip"].status == "error" and "needs labels" in s["snip"].message
    assert s["jacob_cov"].ok and s["synflow"].ok


def test_gradient_proxies_share_one_forward_and_one_backward(nb201) -> None:
    x, y = batch()
    model = tiny(nb201, MIXED)
    c = PassCounter(model)
    s = score_network(model, ["grad_norm", "snip", "fisher", "plain"], x, y, 10)
    assert all(v.ok for v in s.values())
    assert (c.forwards, c.backwards) == (1, 1)

    c2 = PassCounter(model2 := tiny(nb201, MIXED))
    score_network(model2, ["grad_norm", "snip", "fisher", "plain", "jacob_cov", "naswot", "grasp"], x, y, 10)
    assert c2.forwards == 1  # jacobian, codes and H g ride on the same forward
    # the shared pass is charged to the first proxy: a forward made 0.5 s slow lands in grad_norm's seconds only
    slow = tiny(nb201, MIXED)
    slow.register_forward_hook(lambda *_: time.sleep(0.5))
    s = score_network(slow, ["grad_norm", "snip"], x, y, 10)
    assert s["grad_norm"].seconds >= 0.5 > s["snip"].seconds


def test_shared_values_equal_separate_runs(nb201) -> None:
    x, y = batch()
    together = score_network(
        tiny(nb201, MIXED), ["grad_norm", "grasp", "fisher", "jacob_cov", "naswot"], x, y, 10
    )
    for name, v in together.items():
        alone = score_network(tiny(nb201, MIXED), [name], x, y, 10)[name]
        assert alone.value == pytest.approx(v.value, rel=1e-5), name


def test_same_seed_same_scores_and_model_untouched(nb201) -> None:
    x, y = batch()
    model = tiny(nb201, MIXED)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = score_network(model, MINE, x, y, 10, seed=3)
    b = score_network(model, MINE, x, y, 10, seed=3)
    assert {k: v.value for k, v in a.items()} == {k: v.value for k, v in b.items()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # the caller's mode is left alone


def test_bn_modes(nb201) -> None:
    x, y = batch()
    model = tiny(nb201, MIXED)
    train = score_network(model, ["grad_norm", "synflow"], x, y, 10, bn_mode="train")
    evl = score_network(model, ["grad_norm"], x, y, 10, bn_mode="eval")
    off = score_network(model, ["grad_norm", "synflow_bn"], x, y, 10, bn_mode="off")
    assert train["grad_norm"].value != pytest.approx(evl["grad_norm"].value)
    # synflow's default mode is "off": the override to "train" changes it, synflow_bn forced "off" equals it
    default = score_network(model, ["synflow", "synflow_bn"], x, y, 10)
    assert off["synflow_bn"].value == pytest.approx(default["synflow"].value, rel=1e-12)
    assert train["synflow"].value == pytest.approx(default["synflow_bn"].value, rel=1e-12)
    # "off" is the network with BatchNorm removed by hand
    bare = tiny(nb201, MIXED)
    for parent in list(bare.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    assert score_network(bare, ["grad_norm"], x, y, 10)["grad_norm"].value == pytest.approx(
        off["grad_norm"].value, rel=1e-6
    )
    with pytest.raises(registry.ProxyError, match="bn_mode 'batch' is not one of"):
        score_network(model, ["grad_norm"], x, y, 10, bn_mode="batch")


def test_oom_backoff_splits_the_batch(caplog) -> None:
    def fake_oom(module: nn.Module, args: tuple) -> None:
        if args[0].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    def mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))

    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    proxies = ["grad_norm", "fisher", "grasp", "jacob_cov", "naswot"]
    full = score_network(mlp(), proxies, x, y, 3)
    limited = mlp()
    limited.register_forward_pre_hook(fake_oom)
    split = score_network(limited, proxies, x, y, 3)
    for name in ("grad_norm", "fisher", "grasp", "jacob_cov"):
        assert split[name].ok and split[name].value == pytest.approx(full[name].value, rel=1e-5), name
    assert split["naswot"].status == "oom" and "fake" in split["naswot"].message
    assert "retrying on the batch in 4 chunks" in caplog.text


def test_zero_cost_helper_infers_num_classes(nb201) -> None:
    """epe_nas depends on the class count (its > 100 classes branch, ImageNet16-120): the inferred count (the
    classifier's 120 outputs) gives the explicit num_classes=120 value, not the num_classes=10 one."""
    from hnas.proxies.runtime import infer_num_classes

    torch.manual_seed(0)
    net = nb201.build(nb201.parse(MIXED), num_classes=120, C=4, N=1)
    assert infer_num_classes(net) == 120
    assert infer_num_classes(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3))) == 3
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, 8, 8, generator=g), torch.arange(12) % 3
    s = zero_cost(net, (x, y, "fp"), ["epe_nas", "params"])
    many = score_network(net, ["epe_nas"], x, y, num_classes=120)["epe_nas"].value
    ten = score_network(net, ["epe_nas"], x, y, num_classes=10)["epe_nas"].value
    assert s["epe_nas"].ok and s["params"].ok and s["epe_nas"].value == pytest.approx(many, rel=1e-9)
    assert ten != pytest.approx(many, rel=1e-6)


def test_score_cached_second_call_computes_nothing(nb201, tmp_path) -> None:
    from hnas.proxies.cache import score_cached
    from hnas.store import Store

    builds: list[str] = []

    def factory(arch):
        builds.append(nb201.format(arch))
        return nb201.build(arch, C=4, N=1)

    x, y = batch()
    store = Store(tmp_path / "s.sqlite")
    kw = dict(seed=1, num_classes=10)
    b = (x, y, "batchfp")
    first = score_cached(store, nb201, ALL_NONE, factory, ["grad_norm", "jacob_cov", "synflow"], b, **kw)
    assert len(builds) == 1 and first["jacob_cov"].status == "nan"
    again = score_cached(store, nb201, ALL_NONE, factory, ["grad_norm", "jacob_cov", "synflow"], b, **kw)
    assert len(builds) == 1
    assert {k: (v.status, v.value) for k, v in again.items()} == {
        k: (v.status, v.value) for k, v in first.items()
    }
    # effective BN mode / dtype are part of the key
    assert (
        store.get_score(
            "nb201", nb201.key(nb201.parse(ALL_NONE)), "synflow", 1, 1, "batchfp", "off", torch.float64
        )
        is not None
    )
    # a new proxy, another seed, another batch, or a non-default option each miss
    score_cached(store, nb201, ALL_NONE, factory, ["grad_norm", "snip"], b, **kw)
    assert len(builds) == 2
    score_cached(store, nb201, ALL_NONE, factory, ["grad_norm"], b, seed=2, num_classes=10)
    score_cached(store, nb201, ALL_NONE, factory, ["grad_norm"], (x, y, "other"), **kw)
    score_cached(store, nb201, ALL_NONE, factory, ["grasp"], b, options={"grasp": {"temperature": 2.0}}, **kw)
    assert len(builds) == 5
    score_cached(store, nb201, ALL_NONE, factory, ["grasp"], b, options={"grasp": {"temperature": 2.0}}, **kw)
    assert len(builds) == 5


def test_score_cached_keeps_errors_out_of_the_store(nb201, tmp_path) -> None:
    from hnas.proxies.cache import score_cached
    from hnas.store import Store

    calls = []

    def flaky(ctx) -> float:
        calls.append(1)
        raise ValueError("transient")

    x, y = batch()
    store = Store(tmp_path / "s.sqlite")
    for _ in range(2):
        s = score_cached(
            store,
            nb201,
            MIXED,
            lambda a: nb201.build(a, C=4, N=1),
            [Proxy("flaky", flaky)],
            (x, y, "fp"),
            num_classes=10,
        )
        assert s["flaky"].status == "error"
    assert len(calls) == 2
