"""RBFleX's hook rules (issue 14): the official 'ReLU'-in-type-name rule vs activation modules only.

The real-data test reproduces values the official scripts (RBFleX_NAS-Bench-201.py, HDA.py) printed for five
NB201 networks on a fixed CIFAR-10 batch (issue 14 gives the values and the recipe of the batch).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hnas.proxies.context import ProxyContext
from hnas.proxies.rbflex import detect_gammas, feature_modules, rbflex, rbflex_features
from hnas.proxies.registry import get_proxy
from hnas.proxies.runtime import score_network
from hnas.spaces import get_space

T = torch.float64

# ---------------------------------------------------------------- the official scripts' values (issue 14)
# NB201 index -> score with N = 3 images scored one at a time, the fixed γ's, BN train mode, float32
REFERENCE_SCORES = {
    0: -207.1884216889673,
    6111: -202.28988462016147,
    13714: -202.2746775620257,
    9930: -202.20199579605327,
    857: -202.1408486721177,
}
# HDA.py on each network alone, same batch, N = 3 (same order of indices)
REFERENCE_GAMMA_K = [4.5326e-4, 5.4537e-4, 6.5571e-4, 1.2170e-3, 6.5462e-5]
REFERENCE_GAMMA_Q = [0.026802, 0.043271, 0.067926, 0.115783, 0.156475]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def reference_batch(cifar_train: Path) -> torch.Tensor:
    """The issue's batch: first 200 files (by name) of each class (classes sorted), 64 of those 2,000 drawn
    with default_rng(0).choice(2000, 64, replace=False), scaled to [0, 1] and normalised (float32, NCHW)."""
    files = [f for c in sorted(d.name for d in cifar_train.iterdir() if d.is_dir())
             for f in sorted((cifar_train / c).iterdir())[:200]]
    assert len(files) == 2000
    idx = np.random.default_rng(0).choice(2000, 64, replace=False)
    from PIL import Image

    imgs = np.stack([np.asarray(Image.open(files[i]).convert("RGB"), dtype=np.float32) / 255.0 for i in idx])
    imgs = (imgs - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def reference_nets(shared_data: Path) -> tuple[torch.Tensor, list[nn.Module]]:
    x = reference_batch(shared_data / "cifar10" / "train")
    table = pd.read_csv(shared_data / "nb201" / "nb201.csv", index_col="index")
    space = get_space("nb201")
    nets = []
    for i in REFERENCE_SCORES:
        torch.manual_seed(0)
        nets.append(space.build(table.loc[i, "arch"], num_classes=10))
    return x, nets


def test_reference_hooks_reproduce_the_official_scores(reference_nets) -> None:
    x, nets = reference_nets
    ref = get_proxy("rbflex", n_images=3, hooks="reference")  # fixed γ's are the registered defaults
    for net, (index, expected) in zip(nets, REFERENCE_SCORES.items()):
        got = score_network(net, [ref], x, None, 10, seed=0, bn_mode="train", dtype=torch.float32)["rbflex"]
        assert got.value == pytest.approx(expected, rel=1e-5), index
    # the activation-only rule is about 2 % off: the comparison tells the two rules apart
    act = get_proxy("rbflex", n_images=3, hooks="activations")
    other = score_network(nets[0], [act], x, None, 10, seed=0, bn_mode="train", dtype=torch.float32)["rbflex"]
    assert abs(other.value / REFERENCE_SCORES[0] - 1) > 0.01


def test_reference_hooks_column_counts(reference_nets) -> None:
    x, nets = reference_nets
    # issue 14: 638,976 columns for index 0 and 1,499,136 for the others (327,680 / 757,760 activations only)
    for net, expected, act_expected in zip(nets[:2], (638_976, 1_499_136), (327_680, 757_760)):
        xr, _ = rbflex_features(net.train(), x[:1], per_image=True, hooks="reference")
        xa, _ = rbflex_features(net, x[:1], per_image=True, hooks="activations")
        assert (xr.shape[1], xa.shape[1]) == (expected, act_expected)


def test_reference_hooks_reproduce_hda_gammas(reference_nets) -> None:
    x, nets = reference_nets
    for net, gk_ref, gq_ref in zip(nets, REFERENCE_GAMMA_K, REFERENCE_GAMMA_Q):
        gk, gq = detect_gammas([net], x[:3], hooks="reference")
        assert gk == pytest.approx(gk_ref, rel=1e-4)
        assert gq == pytest.approx(gq_ref, rel=1e-4)
    # γ_K of the last network (index 857) is 7.6x larger with activation modules only; γ_Q is the same
    gk_act, gq_act = detect_gammas([nets[-1]], x[:3], hooks="activations")
    assert gk_act / REFERENCE_GAMMA_K[-1] == pytest.approx(7.62, rel=1e-2)
    assert gq_act == pytest.approx(REFERENCE_GAMMA_Q[-1], rel=1e-4)


# ---------------------------------------------------------------- the rules on tiny hand-made networks
class ReLULinear(nn.Sequential):
    """A container whose type name contains 'ReLU' (like NB201's ReLUConvBN): ReLU -> Linear."""

    def __init__(self) -> None:
        super().__init__(nn.ReLU(), nn.Linear(3, 2))


def container_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), ReLULinear(), nn.Tanh(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=T))
        net[0].bias.copy_(torch.tensor([0.1, 0.0, 0.2], dtype=T))
        net[1][1].weight.copy_(torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]], dtype=T))
        net[1][1].bias.copy_(torch.tensor([0.05, -0.1], dtype=T))
        net[3].weight.fill_(1.0)
    return net


XS = [[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]]


def hand_rows(hooks: str) -> tuple[list[list[float]], list[list[float]]]:
    """X and Y rows by hand. reference: ReLU outs ++ ReLULinear outs (the ReLU's hook fires first: call
    order); activations: ReLU outs ++ Tanh outs. Y: Tanh outs (the final Linear's input)."""
    xs, ys = [], []
    for a, b in XS:
        h = [max(v, 0.0) for v in (a + 0.1, b, a - b + 0.2)]
        z = [0.5 * h[0] - 0.3 * h[1] + 0.2 * h[2] + 0.05, 0.1 * h[0] + 0.4 * h[1] - 0.6 * h[2] - 0.1]
        t = [float(np.tanh(v)) for v in z]
        xs.append(h + z if hooks == "reference" else h + t)
        ys.append(t)
    return xs, ys


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("hooks", ["reference", "activations"])
def test_hooked_features_match_hand_rows(hooks: str, per_image: bool) -> None:
    net = container_net()
    names = [n for n, _ in feature_modules(net, hooks)]
    assert names == (["1", "1.0"] if hooks == "reference" else ["1.0", "2"])
    x_feat, y_feat = rbflex_features(net, torch.tensor(XS, dtype=T), per_image=per_image, hooks=hooks)
    xs, ys = hand_rows(hooks)
    assert torch.allclose(x_feat, torch.tensor(xs, dtype=T), rtol=1e-12, atol=1e-12)
    assert torch.allclose(y_feat, torch.tensor(ys, dtype=T), rtol=1e-12, atol=1e-12)


def test_hda_uses_the_rule_of_its_hooks_argument() -> None:
    xs, _ = hand_rows("reference")
    means = [sum(r) / len(r) for r in xs]
    var = [sum((v - m) ** 2 for v in r) / len(r) for r, m in zip(xs, means)]
    expected = min((means[i] - means[j]) ** 2 / (2 * (var[i] + var[j])) for i in range(3) for j in range(i + 1, 3))
    gk_ref, _ = detect_gammas([container_net()], torch.tensor(XS, dtype=T), hooks="reference")
    gk_act, _ = detect_gammas([container_net()], torch.tensor(XS, dtype=T), hooks="activations")
    assert gk_ref == pytest.approx(expected, rel=1e-12)
    assert gk_act != pytest.approx(expected, rel=1e-3)


def gelu_vgg_like() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2)).double()


def test_reference_rule_without_relu_modules_hooks_the_activations(caplog) -> None:
    torch.manual_seed(0)
    net = gelu_vgg_like()
    with caplog.at_level(logging.INFO, logger="hnas.proxies.rbflex"):
        mods = feature_modules(net, "reference")
    assert [n for n, _ in mods] == ["1", "3"] == [n for n, _ in feature_modules(net, "activations")]
    assert "no module type contains 'ReLU'" in caplog.text and "GELU, SiLU" in caplog.text
    x = torch.randn(4, 2, dtype=T)
    ctx = {h: ProxyContext(model=net, inputs=x, labels=None, num_classes=2, options={"n_images": 4, "hooks": h},
                           seed=0) for h in ("reference", "activations")}
    assert rbflex(ctx["reference"]) == rbflex(ctx["activations"])


def test_network_without_any_activation_is_an_error() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2)).double()
    for hooks in ("reference", "activations"):
        with pytest.raises(ValueError, match="RBFleX needs activation modules; the network has none"):
            feature_modules(net, hooks)


def test_bad_hooks_value_is_named() -> None:
    ctx = ProxyContext(model=container_net(), inputs=torch.tensor(XS, dtype=T), labels=None, num_classes=2,
                       options={"n_images": 3, "hooks": "relu"}, seed=0)
    with pytest.raises(ValueError, match=r"rbflex hooks='relu' is not one of: reference, activations"):
        rbflex(ctx)
    with pytest.raises(ValueError, match=r"rbflex hooks='all' is not one of: reference, activations"):
        detect_gammas([container_net()], torch.tensor(XS, dtype=T), hooks="all")


def test_rules_are_cached_apart_from_each_other_and_from_version_2() -> None:
    default, act = get_proxy("rbflex"), get_proxy("rbflex", hooks="activations")
    assert default.options["hooks"] == "reference" and default.key_name == "rbflex"
    assert act.key_name == "rbflex[hooks=activations]"
    assert default.version == act.version == 3  # v2 scores (activation modules, key "rbflex") are not read
