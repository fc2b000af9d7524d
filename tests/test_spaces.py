"""Search spaces: strings, indices, operators, encodings, canonical keys and tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hnas.nn.nb201_net import NB201Cell
from hnas.nn.ops import FactorizedReduce, Pooling, ReLUConvBN, Zero
from hnas.spaces import SearchSpaceError, get_space
from hnas.spaces.nafbee import ACTIVATIONS, NAFBeeSpace
from hnas.spaces.nats_sss import NATSSizeSpace
from hnas.spaces.nb201 import NB201Space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
VALID_OPS = "valid ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"
# Official NAS-Bench-201 facts: index 0 (asserted by NB201's own generation script), CIFAR-10 best (6111).
NB201_INDEX0 = (
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
)
NB201_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def nb201() -> NB201Space:
    return NB201Space()


# ---------------------------------------------------------------------------------------------- registry
def test_registry_builds_each_space() -> None:
    assert isinstance(get_space("nb201"), NB201Space)
    assert isinstance(get_space("nats_sss"), NATSSizeSpace)
    assert isinstance(get_space("nafbee"), NAFBeeSpace)


# ---------------------------------------------------------------------------------------------- nb201
def test_nb201_parse_format_round_trip(nb201: NB201Space) -> None:
    arch = nb201.parse(NB201_6111)
    assert arch == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "nor_conv_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "nor_conv_1x1",
    )
    assert nb201.format(arch) == NB201_6111
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = nb201.sample(rng)
        assert nb201.parse(nb201.format(a)) == a


FORMAT = "format |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown nb201 op 'conv' in ", VALID_OPS),
        (
            "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
            "bad edge source in nb201 token 'none~1'",
            FORMAT,
        ),
        (
            "|none~0|+|none~0|none~2|+|none~0|none~1|none~2|",
            "bad edge source in nb201 token 'none~2'",
            FORMAT,
        ),
        ("|none~0|+|none~0|none~1|", "expected 3 '+'-separated nodes", FORMAT),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs", FORMAT),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed nb201 node 'none~0|'", FORMAT),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed nb201 edge 'none'", FORMAT),
    ],
)
def test_nb201_parse_rejects_bad_strings(nb201: NB201Space, text: str, message: str, hint: str) -> None:
    with pytest.raises(SearchSpaceError) as err:
        nb201.parse(text)
    assert message in str(err.value) and hint in str(err.value)


def test_nb201_unknown_op_lists_valid_ops(nb201: NB201Space) -> None:
    with pytest.raises(SearchSpaceError, match="unknown nb201 op 'conv'") as err:
        nb201.parse("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert VALID_OPS in str(err.value)
    with pytest.raises(SearchSpaceError, match="unknown nb201 op 'conv'"):
        nb201.format(("conv",) + ("none",) * 5)


@pytest.mark.parametrize("bad", [15625, -1, 10**6])
def test_nb201_index_out_of_range(nb201: NB201Space, bad: int) -> None:
    with pytest.raises(SearchSpaceError, match=rf"nb201 index {bad} out of range; valid: 0\.\.15624"):
        nb201.from_index(bad)


def test_nb201_enumerate_index_and_known_rows(nb201: NB201Space) -> None:
    archs = list(nb201.enumerate())
    assert nb201.size() == len(archs) == len(set(archs)) == 15625
    assert nb201.format(archs[0]) == NB201_INDEX0
    assert nb201.format(nb201.from_index(6111)) == NB201_6111
    assert nb201.index(nb201.parse(NB201_6111)) == 6111
    assert all(nb201.index(a) == i for i, a in enumerate(archs))
    assert nb201.coerce(6111) == nb201.coerce(NB201_6111)


def _edge_diff(a: tuple, b: tuple) -> int:
    return sum(x != y for x, y in zip(a, b))


def test_nb201_mutate_and_neighbours(nb201: NB201Space) -> None:
    rng = np.random.default_rng(1)
    arch = nb201.parse(NB201_6111)
    for _ in range(100):
        assert _edge_diff(arch, nb201.mutate(arch, rng)) == 1
    nbrs = nb201.neighbours(arch)
    assert len(nbrs) == len(set(nbrs)) == 24
    assert all(_edge_diff(arch, n) == 1 for n in nbrs)


def test_nb201_encode_is_one_hot_per_edge(nb201: NB201Space) -> None:
    arch = nb201.parse(NB201_INDEX0)
    enc = nb201.encode(arch)
    assert enc.shape == (30,) and enc.dtype == np.float64
    rows = enc.reshape(6, 5)
    assert (rows.sum(axis=1) == 1).all()
    assert [OPS[int(k)] for k in rows.argmax(axis=1)] == list(arch)


def test_nb201_sample_is_seeded(nb201: NB201Space) -> None:
    a = [nb201.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    many = nb201.sample_many(20, np.random.default_rng(3))
    assert many == nb201.sample_many(20, np.random.default_rng(3))
    assert len(set(many)) == 20
    assert many != nb201.sample_many(20, np.random.default_rng(4))


def test_nb201_tiny_forward_shapes(nb201: NB201Space) -> None:
    torch.manual_seed(0)
    net = nb201.build(NB201_6111, num_classes=7, C=4, N=1)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 7)
    assert net.forward_pre_gap(x).shape == (2, 16, 8, 8)
    assert isinstance(net.classifier, nn.Linear) and net.classifier.out_features == 7
    # every activation is an nn.ReLU module: 1 per conv op, 2 per reduction block, 1 in lastact
    relus = sum(isinstance(m, nn.ReLU) for m in net.modules())
    assert relus == 3 * 5 + 2 * 2 + 1


def test_nb201_tiny_param_counts_by_hand(nb201: NB201Space) -> None:
    C, N = 4, 1
    # all-none cells: stem conv 3*4*9 + BN 2*4;
    # reduction 4->8: conv_a 4*8*9+2*8, conv_b 8*8*9+2*8, shortcut 4*8;
    # reduction 8->16: 8*16*9+2*16, 16*16*9+2*16, 8*16; lastact BN 2*16; classifier 16*10+10.
    skeleton = (108 + 8) + (288 + 16 + 576 + 16 + 32) + (1152 + 32 + 2304 + 32 + 128) + 32 + 170
    assert skeleton == 4894
    assert n_params(nb201.build(("none",) * 6, C=C, N=N)) == skeleton
    # one nor_conv_3x3 edge adds 9*c*c + 2*c per cell at c = 4, 8, 16; nor_conv_1x1 adds c*c + 2*c
    conv3 = sum(9 * c * c + 2 * c for c in (4, 8, 16))
    conv1 = sum(c * c + 2 * c for c in (4, 8, 16))
    arch = ("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none", "nor_conv_3x3")
    assert n_params(nb201.build(arch, C=C, N=N)) == skeleton + 2 * conv3 + conv1
    # N=2 doubles the cell parameters
    assert n_params(nb201.build(arch, C=C, N=2)) == skeleton + 2 * (2 * conv3 + conv1)
    # without BN affine, every BatchNorm loses its 2*c weights: 2*(4+8+8+16+16+16) skeleton + cells' BNs
    no_affine = nb201.build(arch, C=C, N=N, bn_affine=False)
    bn_affine_params = 2 * (4 + 8 + 8 + 16 + 16 + 16) + 3 * 2 * (4 + 8 + 16)
    assert n_params(no_affine) == skeleton + 2 * conv3 + conv1 - bn_affine_params
    assert all(m.weight is None for m in no_affine.modules() if isinstance(m, nn.BatchNorm2d))


def test_nb201_build_options_and_errors(nb201: NB201Space) -> None:
    net = nb201.build(NB201_6111, C=4, N=1, bn_track_running_stats=False)
    assert all(m.running_mean is None for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    default = nb201.build(NB201_6111, C=4, N=1)
    bns = [m for m in default.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.affine and m.track_running_stats for m in bns)
    with pytest.raises(SearchSpaceError, match="unknown nb201 build options \\['width'\\]"):
        nb201.build(NB201_6111, width=3)


def test_nb201_cell_edge_modules() -> None:
    cell = NB201Cell(("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"), 4, 4)
    kinds = [type(m) for m in cell.edges]
    assert kinds == [Zero, nn.Identity, ReLUConvBN, ReLUConvBN, Pooling, Zero]
    assert cell.edges[2][1].kernel_size == (1, 1) and cell.edges[3][1].kernel_size == (3, 3)
    assert cell.edges[4].pool.count_include_pad is False


def test_all_none_cell_ignores_input(nb201: NB201Space) -> None:
    cell = NB201Cell(("none",) * 6, 4, 4)
    x1, x2 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8) * 5 + 1
    assert torch.equal(cell(x1), torch.zeros(2, 4, 8, 8)) and torch.equal(cell(x2), cell(x1))
    net = nb201.build(("none",) * 6, C=4, N=1).eval()
    with torch.no_grad():
        assert torch.equal(net(torch.randn(2, 3, 32, 32)), net(torch.randn(2, 3, 32, 32) * 3))
    live = nb201.build(NB201_6111, C=4, N=1).eval()
    with torch.no_grad():
        assert not torch.allclose(live(torch.randn(2, 3, 32, 32)), live(torch.randn(2, 3, 32, 32)))


# ---------------------------------------------------------------------------------------------- nb201 key
SWAP_A = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
SWAP_B = "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"


def test_key_groups_isomorphic_spellings(nb201: NB201Space) -> None:
    key = nb201.key
    # nodes 1 and 2 both read only node 0 and feed node 3; swapping their ops is the same cell
    assert key(nb201.parse(SWAP_A)) == key(nb201.parse(SWAP_B)) == "#0=c1(x);#1=c3(x);out=#0+#1"
    # node 2 unused (its edge to node 3 is none): whatever it computes does not matter
    dead1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
    dead2 = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
    assert key(nb201.parse(dead1)) == key(nb201.parse(dead2))
    # a conv reading a zero node adds nothing; skip from x and skip via node 1 are the same sum
    z1 = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|"
    z2 = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    assert key(nb201.parse(z1)) == key(nb201.parse(z2)) == "out=x"
    assert key(("none",) * 6) == key(("avg_pool_3x3",) * 3 + ("none",) * 3) == "0"


def test_key_separates_non_isomorphic_cells(nb201: NB201Space) -> None:
    key = nb201.key
    # same expression tree c3(c3(x)) + c3(x), but the second term is the SAME conv (shared) vs another conv
    shared = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
    separate = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
    assert key(nb201.parse(shared)) != key(nb201.parse(separate))
    assert key(nb201.parse(SWAP_A)) != key(nb201.parse(SWAP_A.replace("nor_conv_1x1", "avg_pool_3x3")))
    # x + x differs from x
    assert (
        key(nb201.parse("|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|")) != "out=x"
    )


def test_key_invariant_under_node_swap(nb201: NB201Space) -> None:
    """Whenever node 2 does not read node 1, relabelling nodes 1 <-> 2 gives the same cell."""
    n = 0
    for a in nb201.enumerate():
        if a[2] != "none":
            continue
        swapped = (a[1], a[0], "none", a[3], a[5], a[4])
        assert nb201.key(a) == nb201.key(swapped), (a, swapped)
        n += 1
    assert n == 5**5


def test_isomorphic_cells_compute_the_same_function() -> None:
    """SWAP_A with its two convs copied onto the swapped edges of SWAP_B gives the same output."""
    nb = NB201Space()
    torch.manual_seed(0)
    a, b = NB201Cell(nb.parse(SWAP_A), 4, 4).eval(), NB201Cell(nb.parse(SWAP_B), 4, 4).eval()
    b.edges[1].load_state_dict(a.edges[0].state_dict())  # the 3x3 conv: edge 1<-0 in A, edge 2<-0 in B
    b.edges[0].load_state_dict(a.edges[1].state_dict())  # the 1x1 conv
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


# ---------------------------------------------------------------------------------------------- nats_sss
def test_nats_strings_and_errors() -> None:
    s = NATSSizeSpace()
    assert s.parse("8:16:32:64:64") == (8, 16, 32, 64, 64)
    assert s.format((8, 16, 32, 64, 64)) == "8:16:32:64:64"
    with pytest.raises(SearchSpaceError, match="expected 5 ':'-separated widths"):
        s.parse("8:16:32:64")
    with pytest.raises(
        SearchSpaceError, match="invalid nats_sss width '65' in '8:16:32:64:65'; valid: 8, 16, 24"
    ):
        s.parse("8:16:32:64:65")
    with pytest.raises(SearchSpaceError, match="invalid nats_sss width '08'"):
        s.parse("08:16:32:64:64")
    with pytest.raises(SearchSpaceError, match=r"nats_sss index 32768 out of range; valid: 0\.\.32767"):
        s.from_index(32768)


def test_nats_index_order_and_operators() -> None:
    s = NATSSizeSpace()
    assert s.size() == 32768
    archs = list(s.enumerate())
    assert len(archs) == len(set(archs)) == 32768
    assert archs[0] == (8,) * 5 and archs[-1] == (64,) * 5
    assert archs[1] == (8, 8, 8, 8, 16) and archs[8**4] == (16, 8, 8, 8, 8)
    for i in (0, 1, 4096, 12345, 32767):
        assert s.index(s.from_index(i)) == i and s.from_index(i) == archs[i]
    arch = (8, 16, 32, 64, 64)
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert _edge_diff(arch, s.mutate(arch, rng)) == 1
    nbrs = s.neighbours(arch)
    assert len(nbrs) == len(set(nbrs)) == 35 and all(_edge_diff(arch, n) == 1 for n in nbrs)
    np.testing.assert_allclose(s.encode(arch), [0.0, 8 / 56, 24 / 56, 1.0, 1.0])
    assert s.sample(np.random.default_rng(5)) == s.sample(np.random.default_rng(5))
    assert s.key(arch) == "8:16:32:64:64"


def test_nats_param_counts_by_hand() -> None:
    s = NATSSizeSpace()
    # 8:8:8:8:8 -- stem 3*8*9 + 16; each cell: 4 conv3x3 8->8 (576 + 16 each), none, identity skip;
    # each reduction 8->8: 2 * (576 + 16) + shortcut conv 64; lastact BN 16; classifier 8*10 + 10.
    cell = 4 * (576 + 16)
    red = 2 * (576 + 16) + 64
    assert n_params(s.build("8:8:8:8:8")) == 232 + 3 * cell + 2 * red + 16 + 90 == 9938
    # 8:16:8:16:8 -- stage-2/3 cells read 16 channels and write 8: node-0 edges are built 16->8
    red_8_16 = (8 * 16 * 9 + 32) + (16 * 16 * 9 + 32) + 8 * 16
    cell_16_8 = (
        (16 * 8 * 9 + 16) + (16 * 8 + 16) + 3 * (576 + 16)
    )  # conv3x3 1<-0, skip 3<-0 (conv1x1+BN), 3 convs
    net = s.build("8:16:8:16:8")
    assert n_params(net) == 232 + cell + red_8_16 + cell_16_8 + red_8_16 + cell_16_8 + 16 + 90 == 16178
    assert isinstance(net.cells[2].edges[3], FactorizedReduce)
    assert len(net.cells) == 5  # N = 1 cell per stage
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.forward_pre_gap(torch.randn(2, 3, 32, 32)).shape == (2, 8, 8, 8)


# ---------------------------------------------------------------------------------------------- nafbee
def test_nafbee_space_basics() -> None:
    s = NAFBeeSpace()
    assert [a[0] for a in s.enumerate()] == [
        "ReLU", "ELU", "Hardtanh", "Hardswish", "LeakyReLU", "ReLU6", "SELU", "CELU", "GELU", "SiLU", "Mish",
    ]  # fmt: skip
    assert s.size() == 11 and s.parse("GELU") == ("GELU",) and s.format(("GELU",)) == "GELU"
    assert s.index(("GELU",)) == 8 and s.from_index(10) == ("Mish",)
    with pytest.raises(
        SearchSpaceError, match="unknown nafbee activation 'relu' \\(case-sensitive\\); valid: ReLU, ELU"
    ):
        s.parse("relu")
    with pytest.raises(SearchSpaceError, match=r"nafbee index 11 out of range; valid: 0\.\.10"):
        s.from_index(11)
    nbrs = s.neighbours(("ReLU",))
    assert len(nbrs) == 10 and ("ReLU",) not in nbrs
    rng = np.random.default_rng(0)
    assert all(s.mutate(("SiLU",), rng) != ("SiLU",) for _ in range(30))
    enc = s.encode(("SELU",))
    assert enc.shape == (11,) and enc[6] == 1.0 and enc.sum() == 1.0
    assert s.key(("Mish",)) == "Mish"


def test_nafbee_vgg19_structure_and_params() -> None:
    s = NAFBeeSpace()
    net = s.build("GELU")
    widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    # each conv 3x3 with bias (9*cin*cout + cout) + BN (2*cout); classifier 512*10 + 10
    expected = sum(9 * ci * co + co + 2 * co for ci, co in zip([3] + widths[:-1], widths)) + 5130
    assert n_params(net) == expected == 20_040_522  # the usual CIFAR VGG-19-BN size
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == widths
    assert sum(isinstance(m, nn.GELU) for m in net.modules()) == 16
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5
    assert isinstance(net.classifier, nn.Linear) and net.classifier.in_features == 512


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_nafbee_tiny_forward(name: str) -> None:
    net = NAFBeeSpace().build(name, num_classes=3, width_mult=1 / 16)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 3)
    assert net.forward_pre_gap(x).shape == (2, 32, 1, 1)
    assert sum(type(m).__name__ == name for m in net.modules()) == 16
