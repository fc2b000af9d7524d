"""Every gradient/Jacobian/baseline proxy against a value computed by hand on a tiny network.

The network is Linear(3,2) - ReLU - Linear(2,2) with set weights and a two-sample batch; expected values are
written from the formulas of methods.md §2 with explicit tensor arithmetic (hand-derived gradients, a finite
difference for GraSP's Hessian-vector product), never through the proxies' code path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hnas.proxies import registry
from hnas.proxies.runtime import score_network

D = torch.float64
W1 = torch.tensor([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]], dtype=D)
B1 = torch.tensor([0.1, -0.2], dtype=D)
W2 = torch.tensor([[1.0, 2.0], [-0.5, 0.5]], dtype=D)
B2 = torch.tensor([0.0, 0.1], dtype=D)
X = torch.tensor([[1.0, 2.0, 3.0], [2.0, 1.0, 0.5]], dtype=D)  # ReLU patterns (1,0) and (1,1)
Y = torch.tensor([0, 1])
K = 1e-5




def mlp() -> nn.Module:
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(W1.float())
        net[0].bias.copy_(B1.float())
        net[2].weight.copy_(W2.float())
        net[2].bias.copy_(B2.float())
    return net


def hand_grads(w1: torch.Tensor, w2: torch.Tensor, x: torch.Tensor = X, y: torch.Tensor = Y):
    """(dL/dW1, dL/dW2, pre-activation h, hidden r, dL/dh, dL/dlogits) of the mean cross-entropy, by hand."""
    h = x @ w1.T + B1
    mask = (h > 0).to(D)
    r = h * mask
    z = r @ w2.T + B2
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    dz = (p - torch.eye(2, dtype=D)[y]) / x.shape[0]
    dw2 = dz.T @ r
    dh = (dz @ w2) * mask
    dw1 = dh.T @ x
    return dw1, dw2, h, r, dh, dz


def score(name: str, **kw) -> float:
    s = score_network(mlp(), [name], X.float(), Y, num_classes=2, **kw)[name]
    assert s.status == "ok", s
    return s.value


def test_grad_norm_snip_plain_against_hand_gradients() -> None:
    dw1, dw2, *_ = hand_grads(W1, W2)
    assert score("grad_norm") == pytest.approx(float(dw1.norm() + dw2.norm()), rel=1e-5)
    assert score("snip") == pytest.approx(float((W1 * dw1).abs().sum() + (W2 * dw2).abs().sum()), rel=1e-5)
    assert score("plain") == pytest.approx(float((W1 * dw1).sum() + (W2 * dw2).sum()), rel=1e-5)


def test_grasp_against_finite_difference_hessian_vector_product() -> None:
    dw1, dw2, *_ = hand_grads(W1, W2)
    eps = 1e-5
    p1, p2, *_ = hand_grads(W1 + eps * dw1, W2 + eps * dw2)
    m1, m2, *_ = hand_grads(W1 - eps * dw1, W2 - eps * dw2)
    hg1, hg2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)
    expected = float(-(W1 * hg1).sum() - (W2 * hg2).sum())
    assert expected != 0.0
    assert score("grasp") == pytest.approx(expected, rel=1e-4)


def test_fisher_with_reference_numel_weighting() -> None:
    _, _, h, _, dh, dz = hand_grads(W1, W2)
    z = torch.relu(h) @ W2.T + B2
    delta1 = 0.5 * (h * dh).pow(2).mean(0)  # layer-1 output a = h, ∂L/∂h (ReLU mask included)
    delta2 = 0.5 * (z * dz).pow(2).mean(0)
    expected = float(delta1.sum() * 3 + delta2.sum() * 2)  # numel(W[k]) = in_features
    assert score("fisher") == pytest.approx(expected, rel=1e-5)
    assert score("fisher", options={"fisher": {"weighting": "channel"}}) == pytest.approx(
        float(delta1.sum() + delta2.sum()), rel=1e-5
    )


def test_fisher_sums_over_spatial_positions_of_a_conv() -> None:
    conv = nn.Conv1d(1, 1, kernel_size=2, bias=False)
    lin = nn.Linear(3, 2)
    net = nn.Sequential(conv, nn.Flatten(), lin)
    w = torch.tensor([0.5, -1.0], dtype=D)
    wl = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]], dtype=D)
    with torch.no_grad():
        conv.weight.copy_(w.view(1, 1, 2).float())
        lin.weight.copy_(wl.float())
        lin.bias.zero_()
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.0, 1.0, 3.0, -2.0]], dtype=D)
    y = torch.tensor([1, 0])
    a = torch.stack([w[0] * x[:, t] + w[1] * x[:, t + 1] for t in range(3)], dim=1)  # conv output (N, 3)
    z = a @ wl.T
    p = torch.softmax(z, 1)
    dz = (p - torch.eye(2, dtype=D)[y]) / 2
    da = dz @ wl
    conv_delta = 0.5 * (a * da).sum(1).pow(2).mean()  # one channel: spatial sum, square, mean over samples
    lin_delta = 0.5 * (z * dz).pow(2).mean(0)
    expected = float(conv_delta * 2 + lin_delta.sum() * 3)
    got = score_network(net, ["fisher"], x.float().unsqueeze(1), y, num_classes=2)["fisher"]
    assert got.value == pytest.approx(expected, rel=1e-5)


def test_jacob_cov_closed_form_for_two_samples() -> None:
    _, _, h, *_ = hand_grads(W1, W2)
    mask = (h > 0).to(D)
    jac = (W2.sum(0) * mask) @ W1  # row n: Σ_c ∂f_c/∂x_n
    a, b = jac[0] - jac[0].mean(), jac[1] - jac[1].mean()
    r = float((a * b).sum() / (a.norm() * b.norm()))
    v = np.array([1 + r, 1 - r]) + K  # eigenvalues of [[1, r], [r, 1]]
    expected = float(-np.sum(np.log(v) + 1 / v))
    assert score("jacob_cov") == pytest.approx(expected, rel=1e-5)
    assert score("jacob_cov", options={"jacob_cov": {"eig": "eigvalsh"}}) == pytest.approx(expected, rel=1e-5)


def test_epe_nas_one_class_of_two_samples() -> None:
    _, _, h, *_ = hand_grads(W1, W2)
    jac = (W2.sum(0) * (h > 0).to(D)) @ W1
    a, b = jac[0] - jac[0].mean(), jac[1] - jac[1].mean()
    r = float((a * b).sum() / (a.norm() * b.norm()))
    s = 2 * math.log(1 + K) + 2 * math.log(abs(r) + K)  # Σ log(|corr| + k) over the 2x2 matrix
    got = score_network(mlp(), ["epe_nas"], X.float(), torch.tensor([1, 1]), num_classes=2)["epe_nas"]
    assert got.value == pytest.approx(abs(s), rel=1e-5)
    # two classes of one sample each: each 1x1 correlation is [1]
    assert score("epe_nas") == pytest.approx(2 * math.log(1 + K), rel=1e-5)


def test_naswot_counts_agreeing_relu_units() -> None:
    # codes at the ReLU input: sample 0 -> (1, 0), sample 1 -> (1, 1): K = [[2, 1], [1, 2]], det 3
    assert score("naswot") == pytest.approx(math.log(3.0), rel=1e-9)


def test_synflow_closed_form_and_log_variant() -> None:
    f32 = lambda t: t.float().double()  # noqa: E731 - the network holds float32 weights, run in float64
    a1, a2 = f32(W1).abs(), f32(W2).abs()
    hidden = a1.sum(1) + f32(B1).abs()  # |W1| 1 + |b1|, all positive so the ReLU is the identity
    expected = float((a2 * hidden).sum() + (a1 * a2.sum(0)[:, None]).sum())  # ∂R/∂W2 = h, ∂R/∂W1 = colsum|W2|
    assert score("synflow") == pytest.approx(expected, rel=1e-12)
    assert score("synflow_bn") == pytest.approx(expected, rel=1e-12)  # no BN in this net
    assert score("synflow_log") == pytest.approx(math.log(expected), rel=1e-12)


def test_baselines() -> None:
    assert score("params") == pytest.approx((3 * 2 + 2 + 2 * 2 + 2) / 1e6)
    assert score("flops") == pytest.approx((2 * 3 * 2 + 2 * 2 * 2) / 1e6)  # 2 FLOPs per multiply-add
    assert score("l2_norm") == pytest.approx(float(W1.norm() + W2.norm()), rel=1e-6)


def test_registry_metadata_and_unknown_name() -> None:
    p = registry.get_proxy("synflow")
    assert (p.bn_mode, p.dtype, p.needs_data, p.higher_is_better) == ("off", torch.float64, False, True)
    assert registry.get_proxy("synflow_bn").bn_mode == "train"
    assert registry.get_proxy("grasp", temperature=200.0).key_name == "grasp[temperature=200.0]"
    assert registry.get_proxy("grasp").key_name == "grasp"
    with pytest.raises(registry.ProxyError, match=r"unknown proxy 'snipp'; valid: .*snip"):
        registry.get_proxy("snipp")


def test_load_all_names_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PROXY_MODULES", [*registry.PROXY_MODULES, "hnas.proxies.does_not_exist"])
    monkeypatch.setattr(registry, "_LOADED", False)
    with pytest.raises(
        registry.ProxyError, match="'hnas.proxies.does_not_exist' is listed .* does not exist"
    ):
        registry.load_all()
