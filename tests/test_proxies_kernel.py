"""NTK, ZiCo, SiGeo, RBFleX (+HDA), Zen and linear-region proxies against hand-computed values.

Every expected number is computed here from the closed-form formulas of methods.md on tiny networks with
set weights (explicit tensor arithmetic, no nn modules, no code from hnas.proxies).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hnas.proxies.activations import activation_modules
from hnas.proxies.context import ProxyContext
from hnas.proxies.linear_regions import count_distinct_rows, linear_regions, tenas_crops
from hnas.proxies.ntk import ntk_cond, ntk_matrix, ntk_matrix_hooks, ntk_trace
from hnas.proxies.rbflex import detect_gammas, rbflex
from hnas.proxies.result import ProxyScore
from hnas.proxies.sigeo import sigeo
from hnas.proxies.zen import zen
from hnas.proxies.zico import zico

W1 = [[1.0, -1.0], [0.5, 2.0]]
B1 = [0.0, 0.5]
W2 = [[1.0, 2.0], [-1.0, 0.5]]
B2 = [0.1, -0.2]
T = torch.float64


def mlp(w1=W1, b1=B1, w2=W2, b2=B2) -> nn.Sequential:
    """Linear(2,2) - ReLU - Linear(2,2) with set weights, float64."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1, dtype=T))
        net[0].bias.copy_(torch.tensor(b1, dtype=T))
        net[2].weight.copy_(torch.tensor(w2, dtype=T))
        net[2].bias.copy_(torch.tensor(b2, dtype=T))
    return net


def ctx_for(model, x, y=None, **options) -> ProxyContext:
    return ProxyContext(model=model, inputs=x, labels=y, num_classes=2, options=options, seed=0)


# ---------------------------------------------------------------- NTK


def hand_ntk_rows(xs, ys):
    """Per-sample gradient of f_y(x) for the 2-2-2 MLP: [dW1 (4), db1 (2), dW2 (4), db2 (2)]."""
    rows = []
    for x, y in zip(xs, ys):
        pre = [W1[i][0] * x[0] + W1[i][1] * x[1] + B1[i] for i in range(2)]
        h = [max(p, 0.0) for p in pre]
        delta = [W2[y][i] * (1.0 if pre[i] > 0 else 0.0) for i in range(2)]
        d_w1 = [delta[i] * x[j] for i in range(2) for j in range(2)]
        d_w2 = [h[j] if i == y else 0.0 for i in range(2) for j in range(2)]
        d_b2 = [1.0 if i == y else 0.0 for i in range(2)]
        rows.append(d_w1 + delta + d_w2 + d_b2)
    return rows


def dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def test_ntk_trace_and_cond_match_hand_computation() -> None:
    xs, ys = [[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], [0, 1, 0]
    rows = hand_ntk_rows(xs, ys)
    m_hand = math.sqrt(sum(dot(r, r) for r in rows) / 3)
    ctx = ctx_for(mlp(), torch.tensor(xs, dtype=T), torch.tensor(ys))
    assert ntk_trace(ctx) == pytest.approx(m_hand, rel=1e-12)

    # 2x2 Θ: closed-form eigenvalues (a+d)/2 ± sqrt(((a-d)/2)² + b²)
    r2 = rows[:2]
    a, b, d = dot(r2[0], r2[0]), dot(r2[0], r2[1]), dot(r2[1], r2[1])
    root = math.sqrt(((a - d) / 2) ** 2 + b * b)
    kappa_hand = ((a + d) / 2 + root) / ((a + d) / 2 - root)
    ctx2 = ctx_for(mlp(), torch.tensor(xs[:2], dtype=T), torch.tensor(ys[:2]))
    assert ntk_cond(ctx2) == pytest.approx(kappa_hand, rel=1e-9)
    # the two proxies share one Θ
    assert [k for k in ctx2._memo if k.startswith("ntk.theta")] == ["ntk.theta:hnas:hooks"]


def small_bn_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=2, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).train()


@pytest.mark.parametrize("kind", ["hnas", "tenas"])
def test_ntk_equals_naive_per_sample_backward_loop_with_train_bn(kind: str) -> None:
    net = small_bn_net()
    x, y = torch.randn(6, 3, 6, 6), torch.randint(0, 5, (6,))
    if kind == "hnas":  # conv/linear weights and biases, BN affine excluded
        chosen = [p for n, p in net.named_parameters() if not n.startswith(("1.", "4."))]
    else:  # every parameter named *weight*, BN weights included
        chosen = [p for n, p in net.named_parameters() if "weight" in n]
    rows = []
    for i in range(6):  # one batched forward per row; sample i's output differentiated through batch BN
        out = net(x)
        target = out[i, y[i]] if kind == "hnas" else out[i].sum()
        grads = torch.autograd.grad(target, chosen)
        rows.append(torch.cat([g.flatten() for g in grads]).double())
    j = torch.stack(rows)
    theta = ntk_matrix(net, x, y, kind=kind, chunk_size=4)
    torch.testing.assert_close(theta, j @ j.T, rtol=1e-5, atol=1e-6)
    ctx = ctx_for(net, x, y, kind=kind, chunk_size=4, nan_to=1e5, per_sample="exact")
    assert ntk_trace(ctx) == pytest.approx(math.sqrt(float(torch.trace(j @ j.T)) / 6), rel=1e-5)


def test_ntk_cond_nan_maps_to_option() -> None:
    net = mlp()
    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=T), torch.tensor([0, 1])
    assert ntk_cond(ctx_for(net, x, y, nan_to=1e5)) == 1e5
    assert math.isnan(ntk_cond(ctx_for(mlp(w1=[[math.nan] * 2] * 2), x, y, nan_to=None)))
    with pytest.raises(ValueError, match="kind='bogus' is not one of"):
        ntk_trace(ctx_for(mlp(), x, y, kind="bogus"))


# ---------------------------------------------------------------- ZiCo / SiGeo


def hand_mlp_grads(w1, b1, w2, b2, xs, ys):
    """Mean-CE gradients of the 2-2-2 MLP over a chunk, and the chunk loss: (gW1, gb1, gW2, gb2, loss)."""
    gw1 = [[0.0, 0.0], [0.0, 0.0]]
    gb1 = [0.0, 0.0]
    gw2 = [[0.0, 0.0], [0.0, 0.0]]
    gb2 = [0.0, 0.0]
    loss = 0.0
    n = len(xs)
    for x, y in zip(xs, ys):
        pre = [w1[i][0] * x[0] + w1[i][1] * x[1] + b1[i] for i in range(2)]
        h = [max(p, 0.0) for p in pre]
        f = [w2[i][0] * h[0] + w2[i][1] * h[1] + b2[i] for i in range(2)]
        z = math.exp(f[0]) + math.exp(f[1])
        p = [math.exp(f[0]) / z, math.exp(f[1]) / z]
        loss += -math.log(p[y]) / n
        e = [(p[i] - (1.0 if i == y else 0.0)) / n for i in range(2)]
        for i in range(2):
            gb2[i] += e[i]
            for j in range(2):
                gw2[i][j] += e[i] * h[j]
        delta = [(w2[0][j] * e[0] + w2[1][j] * e[1]) * (1.0 if pre[j] > 0 else 0.0) for j in range(2)]
        for i in range(2):
            gb1[i] += delta[i]
            for j in range(2):
                gw1[i][j] += delta[i] * x[j]
    return gw1, gb1, gw2, gb2, loss


def flat(m):
    return [v for row in m for v in row]


def hand_s(chunk_grads):
    """ZiCo's S for one layer from per-chunk flat gradient lists (std ddof 0, drop zero std)."""
    s = 0.0
    for k in range(len(chunk_grads[0])):
        g = [c[k] for c in chunk_grads]
        mu = sum(abs(v) for v in g) / len(g)
        mean = sum(g) / len(g)
        sd = math.sqrt(sum((v - mean) ** 2 for v in g) / len(g))
        if sd != 0:
            s += mu / sd
    return s


XS4 = [[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, 0.5]]
YS4 = [0, 1, 0, 1]


def test_zico_matches_hand_computation() -> None:
    c1 = hand_mlp_grads(W1, B1, W2, B2, XS4[:2], YS4[:2])
    c2 = hand_mlp_grads(W1, B1, W2, B2, XS4[2:], YS4[2:])
    expected = math.log(hand_s([flat(c1[0]), flat(c2[0])])) + math.log(hand_s([flat(c1[2]), flat(c2[2])]))
    ctx = ctx_for(mlp(), torch.tensor(XS4, dtype=T), torch.tensor(YS4), n_batches=2)
    assert zico(ctx) == pytest.approx(expected, rel=1e-12)


def test_zico_rejects_single_batch() -> None:
    ctx = ctx_for(mlp(), torch.tensor(XS4, dtype=T), torch.tensor(YS4), n_batches=1)
    with pytest.raises(ValueError, match=r"n_batches=1 must be an integer in \[2, batch size 4\]"):
        zico(ctx)


def test_sigeo_with_scoring_steps_matches_hand_computation() -> None:
    lr = 0.5
    w1, b1, w2, b2 = [r[:] for r in W1], B1[:], [r[:] for r in W2], B2[:]
    grads, loss_last = [], None
    for xs, ys in ((XS4[:2], YS4[:2]), (XS4[2:], YS4[2:])):
        gw1, gb1, gw2, gb2, loss_last = hand_mlp_grads(w1, b1, w2, b2, xs, ys)
        grads.append((flat(gw1), flat(gw2)))
        w1 = [[w1[i][j] - lr * gw1[i][j] for j in range(2)] for i in range(2)]  # SGD on every parameter
        b1 = [b1[i] - lr * gb1[i] for i in range(2)]
        w2 = [[w2[i][j] - lr * gw2[i][j] for j in range(2)] for i in range(2)]
        b2 = [b2[i] - lr * gb2[i] for i in range(2)]
    z, fr = 0.0, 0.0
    for layer, theta in ((0, flat(w1)), (1, flat(w2))):
        g = [c[layer] for c in grads]
        z += math.log(hand_s(g))
        fr += abs(sum((g[0][k] + g[1][k]) * theta[k] for k in range(4)))
    expected = z + 3.0 * 2 * math.log(fr + 1e-5) - 0.7 * loss_last
    ctx = ctx_for(
        mlp(),
        torch.tensor(XS4, dtype=T),
        torch.tensor(YS4),
        n_batches=2,
        lr=lr,
        lambda2=3.0,
        lambda3=0.7,
        step_during_scoring=True,
    )
    assert sigeo(ctx) == pytest.approx(expected, rel=1e-10)


def test_sigeo_reduces_to_zico_exactly() -> None:
    net = small_bn_net()
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    z = zico(ctx_for(net, x, y, n_batches=4))
    s = sigeo(ctx_for(net, x, y, n_batches=4, lambda2=0, lambda3=0, step_during_scoring=False))
    assert s == z
    # the reference default (steps with lr 1, FR term with λ2 = 1) is a different number
    assert sigeo(ctx_for(small_bn_net(), x, y, n_batches=4)) != z


def test_sigeo_warmup_switches_to_reference_lambdas_and_moves_weights() -> None:
    x, y = torch.tensor(XS4, dtype=T), torch.tensor(YS4)
    net = mlp()
    auto = sigeo(ctx_for(net, x, y, n_batches=2, warmup_steps=2, warmup_batch_size=2, lr=0.1))
    assert not torch.equal(net[0].weight, mlp()[0].weight)
    explicit = sigeo(
        ctx_for(
            mlp(), x, y, n_batches=2, warmup_steps=2, warmup_batch_size=2, lr=0.1, lambda2=50.0, lambda3=1.0
        )
    )
    assert auto == explicit


# ---------------------------------------------------------------- RBFleX / HDA


def rbf_net() -> nn.Sequential:
    """Linear(2,3) - ReLU - Linear(3,2) - Tanh - Linear(2,2), float64, set weights."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=T))
        net[0].bias.copy_(torch.tensor([0.1, 0.0, 0.2], dtype=T))
        net[2].weight.copy_(torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]], dtype=T))
        net[2].bias.zero_()
        net[4].weight.fill_(1.0)
    return net


RBF_X = [[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]]


def hand_rbf_features(hooks: str = "activations"):
    """Rows of X and Y (Tanh outs) of rbf_net, by hand. X: ReLU outs ++ Tanh outs (``activations``), ReLU outs
    only (``reference``: 'ReLU' is not in Tanh's type name)."""
    w1 = [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]
    b1 = [0.1, 0.0, 0.2]
    w2 = [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]]
    xs, ys = [], []
    for x in RBF_X:
        h = [max(w1[i][0] * x[0] + w1[i][1] * x[1] + b1[i], 0.0) for i in range(3)]
        t = [math.tanh(sum(w2[i][j] * h[j] for j in range(3))) for i in range(2)]
        xs.append(h + t if hooks == "activations" else h)
        ys.append(t)
    return xs, ys


def hand_logdet_rbf(rows, gamma):
    cols = list(zip(*rows))
    norm = []
    for r in rows:
        out = []
        for k, v in enumerate(r):
            lo, hi = min(cols[k]), max(cols[k])
            out.append((v - lo) / (hi - lo) if hi > lo else 0.0)
        norm.append(out)
    k = [[math.exp(-gamma * sum((a - b) ** 2 for a, b in zip(p, q))) for q in norm] for p in norm]
    det = (
        k[0][0] * (k[1][1] * k[2][2] - k[1][2] * k[2][1])
        - k[0][1] * (k[1][0] * k[2][2] - k[1][2] * k[2][0])
        + k[0][2] * (k[1][0] * k[2][1] - k[1][1] * k[2][0])
    )
    return math.log(abs(det))


@pytest.mark.parametrize("hooks", ["activations", "reference"])
@pytest.mark.parametrize("per_image", [True, False])
def test_rbflex_matches_hand_computation(per_image: bool, hooks: str) -> None:
    xs, ys = hand_rbf_features(hooks)
    expected = 3 * (hand_logdet_rbf(xs, 0.5) + hand_logdet_rbf(ys, 0.8))
    ctx = ctx_for(
        rbf_net(),
        torch.tensor(RBF_X + [[9.0, 9.0]], dtype=T),
        gamma_k=0.5,
        gamma_q=0.8,
        n_images=3,
        per_image_forward=per_image,
        hooks=hooks,
    )
    assert rbflex(ctx) == pytest.approx(expected, rel=1e-10)


def test_rbflex_input_independent_network_gives_inf_status() -> None:
    net = rbf_net()
    with torch.no_grad():
        net[0].weight.zero_()  # every image gives the same features: K = Q = all ones
    value = rbflex(ctx_for(net, torch.tensor(RBF_X, dtype=T), n_images=3))
    assert value == float("-inf")
    assert ProxyScore.from_value(value).status == "inf"


def test_rbflex_all_none_nb201_cell_is_inf_not_a_number() -> None:
    from hnas.nn.nb201_net import NB201Network, nb201_channels

    torch.manual_seed(0)
    net = NB201Network(["none"] * 6, nb201_channels(4, 1), 10).double().train()
    value = rbflex(ctx_for(net, torch.randn(3, 3, 8, 8, dtype=T), n_images=3))
    assert ProxyScore.from_value(value).status == "inf"


@pytest.mark.parametrize("hooks", ["activations", "reference"])
def test_hda_matches_hand_computation(hooks: str) -> None:
    xs, ys = hand_rbf_features(hooks)

    def candidates(rows):
        means = [sum(r) / len(r) for r in rows]
        var = [sum((v - m) ** 2 for v in r) / len(r) for r, m in zip(rows, means)]
        return [
            (means[i] - means[j]) ** 2 / (2 * (var[i] + var[j]))
            for i in range(3)
            for j in range(i + 1, 3)
            if var[i] + var[j] != 0
        ]

    gk, gq = detect_gammas([rbf_net()], torch.tensor(RBF_X, dtype=T), hooks=hooks)
    assert gk == pytest.approx(min(candidates(xs)), rel=1e-12)
    assert gq == pytest.approx(min(candidates(ys)), rel=1e-12)
    # a second network joins the min: its own candidates (computed here from its layers) are smaller, so HDA
    # over both networks gives exactly the second network's minimum (an HDA that read only the first one fails)
    other = rbf_net()
    with torch.no_grad():
        other[0].weight.copy_(torch.tensor([[1.0, 0.2], [0.3, 1.0], [0.2, -0.1]], dtype=T))
        other[0].bias.copy_(torch.tensor([2.0, 1.5, 0.4], dtype=T))
        h = torch.relu(other[0](torch.tensor(RBF_X, dtype=T)))
        t = torch.tanh(other[2](h))
    xs2 = (torch.cat([h, t], dim=1) if hooks == "activations" else h).tolist()  # reference: Tanh is not hooked
    gk2, gq2 = detect_gammas([rbf_net(), other], torch.tensor(RBF_X, dtype=T), hooks=hooks)
    assert min(candidates(xs2)) < gk
    assert gk2 == pytest.approx(min(candidates(xs2)), rel=1e-12)  # the second network's, not the first's
    assert gq2 == pytest.approx(min(gq, *candidates(t.tolist())), rel=1e-12)
    dup = torch.tensor([RBF_X[0], RBF_X[0], RBF_X[1]], dtype=T)
    assert detect_gammas([rbf_net()], dup, hooks=hooks)[0] == 0.0
    assert detect_gammas([rbf_net()], dup, positive_only=True, hooks=hooks)[0] > 0.0


# ---------------------------------------------------------------- Zen


class ZenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


@pytest.mark.parametrize("bn_var", ["running", "batch"])
def test_zen_matches_hand_computation(bn_var: str) -> None:
    net = ZenNet().double().train()
    shape = (5, 2)
    value = zen(ctx_for(net, torch.zeros(shape, dtype=T), bn_var=bn_var))
    # replay the seeded draws: fc1 weight, fc2 weight (N(0,1)), then x and ε
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(3, 2, generator=gen, dtype=T)
    w2 = torch.randn(2, 3, generator=gen, dtype=T)
    x = torch.randn(shape, generator=gen, dtype=T)
    eps = torch.randn(shape, generator=gen, dtype=T)
    assert torch.equal(net.fc1.weight, w1) and torch.equal(net.fc2.weight, w2)

    def feat(inp):  # pre-GAP feature = input of the final Linear: relu(BN_train(W1 x)), bias 0, affine 1/0
        z = inp @ w1.T
        mean = z.mean(0)
        var_b = ((z - mean) ** 2).mean(0)
        return torch.clamp((z - mean) / torch.sqrt(var_b + 1e-5), min=0), z

    f1, z1 = feat(x)
    f2, z2 = feat(x + 0.01 * eps)
    delta = float((f1 - f2).abs().sum(1).mean())
    if bn_var == "running":  # momentum 0.1 from 1, unbiased batch variance, after both forwards
        v1, v2 = z1.var(0, unbiased=True), z2.var(0, unbiased=True)
        var = 0.9 * (0.9 * 1.0 + 0.1 * v1) + 0.1 * v2
    else:
        var = ((z1 - z1.mean(0)) ** 2).mean(0)
    expected = math.log(delta) + math.log(math.sqrt(float(var.mean())))
    assert value == pytest.approx(expected, rel=1e-10)


def test_zen_uses_forward_pre_gap_when_present() -> None:
    from hnas.nn.nb201_net import NB201Network, nb201_channels

    torch.manual_seed(0)
    net = NB201Network(["nor_conv_1x1"] * 6, nb201_channels(2, 1), 10).train()
    calls = []
    net.forward_pre_gap_orig = net.forward_pre_gap
    net.forward_pre_gap = lambda x: calls.append(1) or net.forward_pre_gap_orig(x)
    value = zen(ctx_for(net, torch.zeros(2, 3, 8, 8), repeat=2))
    assert len(calls) == 4 and math.isfinite(value)


# ---------------------------------------------------------------- linear regions


def test_linear_regions_counts_hand_regions() -> None:
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]], dtype=T))
        net[0].bias.copy_(torch.tensor([0.0, 1.0], dtype=T))
    # unit 1 on iff x > 0, unit 2 on iff x < 1: regions (-inf,0], (0,1), [1,inf) -> 3 occupied
    x = torch.tensor([[-2.0], [-1.0], [0.5], [0.7], [2.0], [3.0]], dtype=T)
    assert linear_regions(ctx_for(net, x)) == 3.0
    assert linear_regions(ctx_for(net, x[:2])) == 1.0


def test_count_distinct_rows_matches_python_set() -> None:
    gen = torch.Generator().manual_seed(1)
    bits = torch.randint(0, 2, (40, 13), generator=gen).bool()
    bits[5] = bits[7]
    bits[9] = bits[7]
    assert count_distinct_rows(bits) == len({tuple(r.tolist()) for r in bits})


def test_tenas_crops_are_single_channel_3x3_patches() -> None:
    imgs = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    crops = tenas_crops(imgs, 50, torch.Generator().manual_seed(0))
    assert crops.shape == (50, 3, 3, 3)
    for c in crops:
        assert torch.equal(c[0], c[1]) and torch.equal(c[0], c[2])
        # a 3x3 patch of one channel of one image: consecutive columns differ by 1, rows by 5
        assert torch.all(c[0][:, 1:] - c[0][:, :-1] == 1) and torch.all(c[0][1:] - c[0][:-1] == 5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    n = linear_regions(ctx_for(net, imgs, tenas_crops=True, n_crops=50))
    assert 1 <= n <= 50


# ---------------------------------------------------------------- activation discovery


class Swishy(nn.Module):
    """A user-defined activation the type list does not know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class MyActivation(Swishy):
    pass


def test_activation_modules_finds_every_type() -> None:
    net = nn.Sequential(
        nn.Linear(2, 2),
        nn.GELU(),
        nn.Linear(2, 2),
        nn.SiLU(),
        nn.Mish(),
        nn.Hardswish(),
        nn.ELU(),
        nn.LeakyReLU(),
        nn.Sequential(nn.ReLU6(), nn.SELU(), nn.CELU(), nn.Hardtanh(), nn.PReLU()),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Softplus(),
        MyActivation(),
        Swishy(),
        nn.BatchNorm1d(2),
        nn.Softmax(-1),
    )
    found = [type(m).__name__ for _, m in activation_modules(net)]
    assert found == [
        "GELU",
        "SiLU",
        "Mish",
        "Hardswish",
        "ELU",
        "LeakyReLU",
        "ReLU6",
        "SELU",
        "CELU",
        "Hardtanh",
        "PReLU",
        "Tanh",
        "Sigmoid",
        "Softplus",
        "MyActivation",
    ]
    assert [n for n, _ in activation_modules(net)][:2] == ["1", "3"]


def test_ntk_hooks_mode_is_autograd_hacks_decomposition() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().train()
    x, y = torch.randn(5, 3, dtype=T), torch.tensor([0, 1, 1, 0, 1])
    # autograd_hacks by hand: one backward of Σ f_{y_n}; per-sample grads = outer(b_n, a_n), bias b_n
    z1 = x @ net[0].weight.T + net[0].bias
    a2 = net[2](net[1](z1))
    z2 = a2 @ net[3].weight.T + net[3].bias
    b1, b2 = torch.autograd.grad(z2[torch.arange(5), y].sum(), [z1, z2])
    rows = torch.cat(
        [torch.einsum("ni,nj->nij", b1, x).flatten(1), b1, torch.einsum("ni,nj->nij", b2, a2).flatten(1), b2],
        dim=1,
    ).detach()
    ctx = ctx_for(net, x, y, per_sample="hooks")
    assert ntk_trace(ctx) == pytest.approx(math.sqrt(float((rows * rows).sum()) / 5), rel=1e-10)
    torch.testing.assert_close(ctx._memo["ntk.theta:hnas:hooks"], rows @ rows.T)
    # with BN coupling the decomposition is not the exact Jacobian; without it, it is
    assert not torch.allclose(ntk_matrix(net, x, y), rows @ rows.T)
    plain = mlp()
    xs, ys = torch.tensor(XS4, dtype=T), torch.tensor(YS4)
    torch.testing.assert_close(ntk_matrix_hooks(plain, xs, ys), ntk_matrix(plain, xs, ys))


def test_registration_metadata() -> None:
    from hnas.proxies.registry import _REGISTRY

    meta = {
        n: _REGISTRY[n] for n in ("ntk_trace", "ntk_cond", "zico", "sigeo", "rbflex", "zen", "linear_regions")
    }
    assert [n for n, p in meta.items() if not p.higher_is_better] == ["ntk_cond"]
    assert [n for n, p in meta.items() if p.mutates] == ["sigeo", "zen"]
    assert [n for n, p in meta.items() if p.dtype == torch.float64] == ["rbflex"]
    assert {n for n, p in meta.items() if not p.needs_labels} == {"rbflex", "zen", "linear_regions"}
    assert meta["ntk_cond"].options["nan_to"] == 1e5 and meta["zico"].options["n_batches"] == 2
    assert meta["rbflex"].options["gamma_k"] == 2.68690173088039e-12


def test_all_none_nb201_cell_gives_statuses_not_fake_numbers() -> None:
    """Output independent of the input: κ singular, ZiCo/SiGeo/RBFleX/Zen have no signal -> 'inf'."""
    import copy

    from hnas.nn.nb201_net import NB201Network, nb201_channels
    from hnas.proxies.registry import _REGISTRY

    torch.manual_seed(0)
    net = NB201Network(["none"] * 6, nb201_channels(4, 1), 10).train()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    status = {}
    for name in ("ntk_trace", "ntk_cond", "zico", "sigeo", "rbflex", "zen", "linear_regions"):
        p = _REGISTRY[name]
        opts = dict(p.options, **({"n_images": 8} if name == "rbflex" else {}))  # the batch has 8 images
        ctx = ProxyContext(copy.deepcopy(net).to(p.dtype), x.to(p.dtype), y, 10, opts)
        status[name] = ProxyScore.from_value(p.fn(ctx))
    # true values: only the classifier bias moves the logit (M = 1); every input has one pattern
    assert status["ntk_trace"].value == pytest.approx(1.0) and status["linear_regions"].value == 1.0
    assert {n for n, s in status.items() if s.status == "inf"} == {
        "ntk_cond",
        "zico",
        "sigeo",
        "rbflex",
        "zen",
    }
