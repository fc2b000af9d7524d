"""DARTS space: published network sizes (methods.md §9), strings, keys, the reference sampling rule,
operators, tiny networks with drop-path and the auxiliary head, and the proxies on a DARTS network."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hnas.nn.darts_net import DARTSCell, DARTSNetwork, count_darts_parameters
from hnas.nn.darts_ops import DARTS_OPS, DARTS_PRIMITIVES, drop_path
from hnas.proxies.runtime import score_network
from hnas.spaces import SearchSpaceError, get_space
from hnas.spaces.darts import DARTSGenotype, DARTSSpace, genotype_from_alpha

# methods.md §9: DARTS_V2 (quark0/darts cnn/genotypes.py) and RoBoT's three genotypes (darts_space/genotypes.py)
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)
ROBOT_C10 = (
    "Genotype(normal=[('dil_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 2), ('max_pool_3x3', 1), "
    "('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_5x5', 3)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('avg_pool_3x3', 2), "
    "('skip_connect', 0), ('max_pool_3x3', 2), ('max_pool_3x3', 0), ('sep_conv_5x5', 4), ('skip_connect', 3)], "
    "reduce_concat=range(2, 6))"
)
ROBOT_C100 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 2), ('max_pool_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('skip_connect', 1), ('sep_conv_3x3', 4)], "
    "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 2), "
    "('avg_pool_3x3', 1), ('max_pool_3x3', 1), ('dil_conv_3x3', 3), ('avg_pool_3x3', 1), ('avg_pool_3x3', 4)], "
    "reduce_concat=range(2, 6))"
)
ROBOT_IMAGENET = (
    "Genotype(normal=[('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_3x3', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_5x5', 3), ('avg_pool_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 0)], "
    "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 0), "
    "('dil_conv_3x3', 2), ('max_pool_3x3', 2), ('skip_connect', 3), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0)], "
    "reduce_concat=range(2, 6))"
)
# genotype -> (CIFAR-10 params, CIFAR-100 params, ImageNet params, ImageNet MACs (M), CIFAR-10 MACs (M))
SIZES = {
    "DARTS_V2": (DARTS_V2, 3_349_342, 3_401_272, 4_718_752, 529.9, 528.4),
    "RoBoT_CIFAR_10": (ROBOT_C10, 3_044_566, 3_096_496, 4_377_184, 495.3, 492.7),
    "RoBoT_CIFAR_100": (ROBOT_C100, 2_929_654, 2_981_584, 4_300_000, 474.1, 458.7),
    "RoBoT_ImageNet": (ROBOT_IMAGENET, 3_354_742, 3_406_672, 4_849_792, 535.3, 526.3),
}
# the C=16, 5-layer search network of the reference scoring: params, MACs (M)
SEARCH_SIZES = {"DARTS_V2": (DARTS_V2, 129_706, 25.40), "RoBoT_CIFAR_10": (ROBOT_C10, 141_370, 27.21)}
PROXIES = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "ntk_trace", "ntk_cond"]


@pytest.fixture(scope="module")
def space() -> DARTSSpace:
    return DARTSSpace()


@pytest.fixture(scope="module")
def sampled(space: DARTSSpace) -> list[DARTSGenotype]:
    return [space.sample(np.random.default_rng([7, i])) for i in range(1000)]


def macs_millions(net: nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-adds as methods.md §9 measured them: FlopCounterMode total / 2, eval mode, batch 1."""
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *shape))
    return counter.get_total_flops() / 2 / 1e6


def swap_inputs(g: DARTSGenotype, field: str, node: int) -> DARTSGenotype:
    cell = list(getattr(g, field))
    cell[2 * node], cell[2 * node + 1] = cell[2 * node + 1], cell[2 * node]
    return g._replace(**{field: tuple(cell)})


# ------------------------------------------------------------------------------------- sizes (methods.md §9)
@pytest.mark.parametrize("name", list(SIZES))
def test_final_networks_have_the_reference_sizes(space: DARTSSpace, name: str) -> None:
    text, p10, p100, p_in, macs_in, macs10 = SIZES[name]
    g = space.parse(text)
    c10 = space.build(g, 10, network="cifar", C=36, layers=20, auxiliary=True)
    assert count_darts_parameters(c10) == p10
    aux = sum(p.numel() for n, p in c10.named_parameters() if n.startswith("auxiliary_head."))
    assert aux > 0 and sum(p.numel() for p in c10.parameters()) == p10 + aux  # built, not counted
    assert count_darts_parameters(space.build(g, 100, C=36, layers=20, auxiliary=True)) == p100
    inet = space.build(g, 1000, network="imagenet", C=48, layers=14, auxiliary=True)
    assert count_darts_parameters(inet) == p_in
    assert macs_millions(c10, (3, 32, 32)) == pytest.approx(macs10, rel=0.01)
    assert macs_millions(inet, (3, 224, 224)) == pytest.approx(macs_in, rel=0.01)


@pytest.mark.parametrize("name", list(SEARCH_SIZES))
def test_search_network_defaults_have_the_reference_sizes(space: DARTSSpace, name: str) -> None:
    text, params, macs = SEARCH_SIZES[name]
    net = space.build(text)  # defaults: the C=16, 5-layer search network, no auxiliary head
    assert net.auxiliary_head is None
    assert sum(p.numel() for p in net.parameters()) == params
    assert macs_millions(net, space.input_shape()) == pytest.approx(macs, rel=0.01)


def test_space_config_builds_the_search_network() -> None:
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "space" / "darts.yaml")
    space = get_space(cfg.name)
    net = space.build(DARTS_V2, num_classes=10, **OmegaConf.to_container(cfg.build))
    assert sum(p.numel() for p in net.parameters()) == SEARCH_SIZES["DARTS_V2"][1]


def test_reduction_cells_at_one_and_two_thirds(space: DARTSSpace) -> None:
    net = space.build(DARTS_V2, C=36, layers=20)
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [6, 13]
    assert net.aux_index == 13


# ------------------------------------------------------------------------------------- strings
def test_parse_accepts_published_spellings(space: DARTSSpace) -> None:
    g = space.parse(DARTS_V2)
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert g.reduce[-1] == ("max_pool_3x3", 1) and g.normal_concat == (2, 3, 4, 5)
    assert space.parse(DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)")) == g
    assert space.parse("DARTS_V2 = " + DARTS_V2.replace("(", "(\n", 1)) == g  # a genotypes.py line
    assert space.parse(DARTS_V2.replace("Genotype(", "genotypes.Genotype(")) == g
    for text in (ROBOT_C10, ROBOT_C100, ROBOT_IMAGENET):
        r = space.parse(text)
        assert r.normal_concat == r.reduce_concat == (2, 3, 4, 5)
        assert space.parse(space.format(r)) == r
    assert space.parse(ROBOT_C10).normal[0] == ("dil_conv_3x3", 1)
    assert space.format(g) == DARTS_V2


def test_parse_format_round_trip_1000_sampled(space: DARTSSpace, sampled: list[DARTSGenotype]) -> None:
    for g in sampled:
        assert space.parse(space.format(g)) == g
    g = space.sample(np.random.default_rng(3))
    assert space.coerce(space.format(g)) == g


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed darts genotype"),
        ("[('sep_conv_3x3', 0)]", "expected one Genotype(...) call"),
        (DARTS_V2.replace("'dil_conv_3x3'", "'conv_7x1_1x7'"), "unknown darts op 'conv_7x1_1x7'"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "bad input 5 in normal entry 7"),
        (DARTS_V2.replace("('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 0), ('sep_conv_3x3', 0)"),
         "reads input 0 twice"),
        (DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3, 4]"), "reduce_concat must list"),
        (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "lacks reduce_concat"),
        (DARTS_V2.replace("normal_concat=", "normal_cat="), "unknown field 'normal_cat'"),
        (DARTS_V2.replace("[2, 3, 4, 5]", "list(range(2, 6))", 1), "must be a literal list"),
        (DARTS_V2.replace("[2, 3, 4, 5]", "__import__('os').getcwd()", 1), "must be a literal list"),
        (DARTS_V2.replace("('skip_connect', 0), ", "", 1), "list of 8 (op, input) pairs"),
    ],
)
def test_malformed_strings_name_the_value_and_the_format(space: DARTSSpace, text: str, fragment: str) -> None:
    with pytest.raises(SearchSpaceError) as err:
        space.parse(text)
    assert fragment in str(err.value)
    if fragment.startswith("unknown darts op"):
        assert "valid ops: max_pool_3x3, avg_pool_3x3, skip_connect" in str(err.value)


def test_bad_values_and_options_are_reported(space: DARTSSpace) -> None:
    with pytest.raises(SearchSpaceError, match="format Genotype"):
        space.parse(123)  # type: ignore[arg-type]
    with pytest.raises(SearchSpaceError, match="must be a genotype, format Genotype"):
        space.check(("sep_conv_3x3", 0))
    with pytest.raises(SearchSpaceError, match="unknown darts build options \\['N'\\]"):
        space.build(DARTS_V2, N=5)
    with pytest.raises(SearchSpaceError, match="'cifar' or 'imagenet', got 'mnist'"):
        space.build(DARTS_V2, network="mnist")
    with pytest.raises(SearchSpaceError, match="even int C >= 2, got C=15"):
        space.build(DARTS_V2, C=15)
    with pytest.raises(SearchSpaceError, match="unknown darts sampling 'uniform'; valid: reference, all_ops"):
        DARTSSpace(sampling="uniform")
    with pytest.raises(SearchSpaceError, match="not enumerable"):
        space.enumerate()


# ------------------------------------------------------------------------------------- keys and encoding
def test_keys_merge_spellings_of_one_genotype(space: DARTSSpace, sampled: list[DARTSGenotype]) -> None:
    for g in sampled[:200]:
        k = space.key(g)
        for field, node in itertools.product(("normal", "reduce"), range(4)):
            assert space.key(swap_inputs(g, field, node)) == k
        assert space.key(g._replace(normal_concat=(5, 3, 2, 4))) == k
    keys = {space.key(g) for g in sampled}
    assert len(keys) == len(sampled)  # 1,000 draws from ~1e17 genotypes: a repeat would be a key collision


def test_key_merges_node_relabelings_only_when_the_graph_is_the_same(space: DARTSSpace) -> None:
    g = space.parse(DARTS_V2)
    # DARTS_V2 normal: nodes 2 and 4 read only the cell inputs, so they can swap labels (node 5 then reads 4)
    swapped = g._replace(normal=g.normal[4:6] + g.normal[2:4] + g.normal[0:2] + (("skip_connect", 0),
                                                                                ("dil_conv_3x3", 4)))
    assert swapped != g and space.key(swapped) == space.key(g)
    assert np.array_equal(space.encode(swapped), space.encode(g))
    # node 5 reading node 4 (sep3~1 + skip~0) instead of node 2 (sep3~0 + sep3~1) is another graph
    other = g._replace(normal=g.normal[:7] + (("dil_conv_3x3", 4),))
    assert space.key(other) != space.key(g)
    # by hand: the least relabeling puts node 4 (skip sorts before sep3) first, then node 2, then node 5 that
    # reads it (now 3), then node 3; in reduce node 2 must stay first (all read it), node 4 < nodes 3 = 5
    assert space.key(DARTS_V2) == (
        "normal=skip~0+sep3~1,sep3~0+sep3~1,skip~0+dil3~3,sep3~0+sep3~1;"
        "reduce=max~0+max~1,max~0+skip~2,max~1+skip~2,max~1+skip~2"
    )


def test_encode_is_one_hot_per_used_edge(space: DARTSSpace) -> None:
    v = space.encode(DARTS_V2)
    assert v.shape == (2 * 14 * 7,) and v.sum() == 16 and set(np.unique(v)) == {0.0, 1.0}
    rows = v.reshape(2, 14, 7)
    skip, sep3, dil3 = (DARTS_OPS.index(op) for op in ("skip_connect", "sep_conv_3x3", "dil_conv_3x3"))
    # canonical normal (see the key test): node 2 = skip~0 + sep3~1 on edges 0, 1; node 4 (edges 5..8 read
    # inputs 0..3) = skip~0 + dil3~3; node 5 (edges 9..13) = sep3~0 + sep3~1
    assert rows[0, 0, skip] == rows[0, 1, sep3] == rows[0, 5, skip] == rows[0, 8, dil3] == 1
    assert rows[0, 9, sep3] == rows[0, 10, sep3] == 1


def test_size_is_darts_count_of_genotypes(space: DARTSSpace) -> None:
    per_cell = (1 * 3 * 6 * 10) * 7**8  # pairs of distinct inputs per node x 7 ops per input (DARTS: ~1e9)
    assert space.size() == per_cell**2 == 1_076_746_950_455_072_400


# ------------------------------------------------------------------------------------- sampling rule
def test_sample_keeps_the_two_strongest_inputs_with_the_argmax_op(space: DARTSSpace) -> None:
    for seed in range(200):
        g = space.sample(np.random.default_rng(seed))
        alpha = np.random.default_rng(seed).random((2, 14, 7))  # the one draw sample() makes
        w = np.exp(alpha) / np.exp(alpha).sum(axis=-1, keepdims=True)
        for cell, rows in zip((g.normal, g.reduce), w):
            start = 0
            for i in range(4):
                edges = rows[start : start + i + 2, 1:]  # column 0 is 'none'
                strength = edges.max(axis=1)
                order = np.argsort(-strength, kind="stable")
                pairs = cell[2 * i : 2 * i + 2]
                assert [src for _, src in pairs] == list(order[:2])  # the two strongest, strongest first
                for op, src in pairs:
                    assert op == DARTS_PRIMITIVES[1 + int(np.argmax(edges[src]))]
                start += i + 2


def test_reference_sampling_never_draws_dil_conv_5x5(space: DARTSSpace, sampled: list[DARTSGenotype]) -> None:
    # the reference alpha has 7 columns for DARTS's 8 PRIMITIVES: column 7 (dil_conv_5x5) does not exist
    ops = {op for g in sampled for op, _ in g.normal + g.reduce}
    assert ops == set(DARTS_OPS) - {"dil_conv_5x5"}
    full = DARTSSpace(sampling="all_ops")
    ops = {op for i in range(300) for op, _ in full.sample(np.random.default_rng(i)).normal}
    assert ops == set(DARTS_OPS)


def test_parse_rule_on_hand_made_alpha() -> None:
    alpha = np.zeros((2, 14, 8))
    # normal node 2 (edges 0, 1): 'none' is the largest weight on edge 0 but is ignored; edge 1 is stronger
    alpha[0, 0, 0], alpha[0, 0, 4] = 9.0, 1.0
    alpha[0, 1, 7] = 2.0
    # node 3 (edges 2..4): edges 3 and 4 are equal -> lower input (1) first; ops 5 and 6 tie -> op 5
    alpha[0, 3, 5] = alpha[0, 3, 6] = alpha[0, 4, 5] = alpha[0, 4, 6] = 3.0
    # reduce: all zero -> every edge ties, every op ties: inputs 0, 1 and the first op, max_pool_3x3
    g = genotype_from_alpha(alpha)
    assert g.normal[:4] == (("dil_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2))
    assert g.reduce == tuple(p for _ in range(4) for p in (("max_pool_3x3", 0), ("max_pool_3x3", 1)))
    with pytest.raises(SearchSpaceError, match="alpha must have shape"):
        genotype_from_alpha(np.zeros((14, 7)))


def test_sample_many_is_reproducible_and_distinct(space: DARTSSpace) -> None:
    a = space.sample_many(50, np.random.default_rng(1))
    assert a == space.sample_many(50, np.random.default_rng(1))
    assert len({space.key(g) for g in a}) == 50
    assert a[0] == space.sample(np.random.default_rng(1))  # the pool starts with the plain draws


# ------------------------------------------------------------------------------------- operators
def test_neighbours_are_the_single_edits(space: DARTSSpace) -> None:
    # DARTS_V2 has symmetric nodes, so some edits coincide up to relabeling (counted by hand): normal node 5
    # reading node 3 instead of its twin node 2 is the genotype itself (-1); reduce nodes 3 and 5 are twins
    # nobody reads, so node 3's 2 x (6 + 1) edits repeat node 5's (-14): 120 - 15
    assert len(space.neighbours(DARTS_V2)) == 105
    g = space.parse(ROBOT_C10)  # no symmetric nodes
    nbrs = space.neighbours(g)
    # per cell and node i (i+2 inputs): 2 pairs x (6 other ops + i other free inputs) -> 60 per cell
    assert len(nbrs) == 120
    keys = {space.key(n) for n in nbrs}
    assert len(keys) == 120 and space.key(g) not in keys
    for n in nbrs:
        space.check(n)
        diffs = [(a, b) for a, b in zip(g.normal + g.reduce, n.normal + n.reduce) if a != b]
        assert len(diffs) == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = space.mutate(g, rng)
        assert space.key(m) in keys


# ------------------------------------------------------------------------------------- networks
def test_tiny_network_trains_with_drop_path_and_auxiliary_head(space: DARTSSpace) -> None:
    torch.manual_seed(0)
    net = space.build(DARTS_V2, 10, C=8, layers=3, auxiliary=True, drop_path=0.2)
    assert isinstance(net, DARTSNetwork)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (4, 10) and aux is not None and aux.shape == (4, 10)
    loss = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["auxiliary_head.2.weight"].abs().sum() > 0
    assert isinstance(net(x), torch.Tensor)  # proxies' call: a plain logits tensor, also in training
    net.eval()
    out, aux = net.forward_with_aux(x)
    assert aux is None and torch.equal(out, net(x))  # no drop-path and no randomness in eval mode


def test_drop_path_drops_whole_samples_of_non_identity_ops(space: DARTSSpace) -> None:
    x = torch.ones(1000, 2, 3, 3)
    torch.manual_seed(0)
    out = drop_path(x, 0.25)
    per_sample = out.flatten(1)
    kept = (per_sample == 1 / 0.75).all(dim=1)
    assert bool(((per_sample == 0).all(dim=1) | kept).all())
    assert 0.70 < kept.float().mean() < 0.80
    assert drop_path(x, 0.0) is x
    net = space.build(DARTS_V2, C=8, layers=3)
    net.set_drop_path(0.5)
    assert net.drop_path_prob == 0.5
    with pytest.raises(ValueError, match="in \\[0, 1\\), got 1.0"):
        net.set_drop_path(1.0)
    net.train()  # train-mode BN is deterministic, so only drop-path makes two forwards differ
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, net(x))
    net.set_drop_path(0.0)
    torch.manual_seed(1)
    c = net(x)
    torch.manual_seed(2)
    assert torch.equal(c, net(x))
    # an identity skip_connect is never dropped; a stride-2 skip (FactorizedReduce) is
    skips = tuple(p for _ in range(4) for p in (("skip_connect", 0), ("skip_connect", 1)))
    for reduction, dropped in ((False, False), (True, True)):
        cell = DARTSCell((skips, (2, 3, 4, 5)), 8, 8, 8, reduction=reduction, reduction_prev=False).train()
        s0, s1 = torch.randn(4, 8, 8, 8), torch.randn(4, 8, 8, 8)
        torch.manual_seed(0)
        assert torch.allclose(cell(s0, s1, 0.9), cell(s0, s1, 0.0)) != dropped


def test_imagenet_network_tiny_forward(space: DARTSSpace) -> None:
    torch.manual_seed(0)
    net = space.build(ROBOT_IMAGENET, 7, network="imagenet", C=8, layers=3, auxiliary=True)
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 7) and aux is not None and aux.shape == (2, 7)
    assert net.forward_pre_gap(torch.randn(2, 3, 224, 224)).shape == (2, 4 * 32, 7, 7)


def test_registry_and_proxies_score_a_tiny_darts_network() -> None:
    space = get_space("darts")
    assert isinstance(space, DARTSSpace) and space.sampling == "reference"
    torch.manual_seed(0)
    net = space.build(space.sample(np.random.default_rng(0)), 10, C=8, layers=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    out = score_network(net, PROXIES, x, y, 10)
    assert list(out) == PROXIES
    assert {n: s.status for n, s in out.items()} == dict.fromkeys(PROXIES, "ok")
