"""NAS-Bench-201 cell search space: 5 ops on the 6 edges of a 4-node cell, 15,625 architectures.

An architecture is a tuple of 6 op names for the edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2), i.e. in
the order they appear in the string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

Official index order (row i of the NB201 / NATS-Bench topology tables): NAS-Bench-201 generated the cells as a
product over the edges in string order (first edge slowest) with the ops in the order
none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3, then shuffled that list with Python's
``random.seed(88); random.shuffle``. We replay that shuffle with our own Fisher-Yates loop on
``random.Random(88).getrandbits`` (whose Mersenne-Twister stream Python keeps stable), so the order does not
depend on ``random.shuffle``'s implementation. Checked against all 15,625 rows of the official table.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator

import numpy as np
from torch import nn

from hnas.nn.nb201_net import EDGES, NB201Network, nb201_channels
from hnas.nn.ops import OP_NAMES
from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

NB201Arch = tuple[str, str, str, str, str, str]

NUM_EDGES = len(EDGES)
SIZE = len(OP_NAMES) ** NUM_EDGES
FORMAT_HINT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
_OP_INDEX = {op: i for i, op in enumerate(OP_NAMES)}
_SHUFFLE_SEED = 88
#: short names used inside canonical keys
_KEY_NAMES = {"nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "ap"}


@functools.cache
def _official_order() -> tuple[tuple[NB201Arch, ...], dict[NB201Arch, int]]:
    """All cells in official NB201 index order, and the inverse map (built once, ~50 ms)."""
    archs: list[NB201Arch] = list(itertools.product(OP_NAMES, repeat=NUM_EDGES))  # type: ignore[arg-type]
    rnd = random.Random(_SHUFFLE_SEED)
    for i in range(len(archs) - 1, 0, -1):  # Fisher-Yates exactly as CPython's random.shuffle
        n = i + 1
        k = n.bit_length()
        j = rnd.getrandbits(k)
        while j >= n:
            j = rnd.getrandbits(k)
        archs[i], archs[j] = archs[j], archs[i]
    return tuple(archs), {a: i for i, a in enumerate(archs)}


@functools.cache
def canonical_key(arch: NB201Arch) -> str:
    """Isomorphism-aware canonical string of a (validated) cell.

    The cell is reduced to its computation DAG: vertices are the input ``x`` and one *instance* per edge whose
    op has weights or state of its own (conv 1x1 / 3x3, avg-pool) and whose source is not zero. A node's value
    is the multiset of vertices summed into it: ``none`` edges and edges from zero nodes add nothing,
    ``skip_connect`` adds its source's multiset (identity), any other op adds its instance. Instances that
    do not reach the output are dropped. Sums are commutative and associative, so multisets are sorted.

    Sharing matters: ``c3(A) + A`` (the same conv A twice) differs from ``c3(A) + B`` with B a second conv
    on x, although both unfold to the same expression tree. So instances are numbered canonically: sorted by
    their unfolded expression (fewest ops first), ties broken by the lexicographically smallest
    serialisation over all tie orderings (at most a few permutations in a 6-edge cell). Pooling's linearity
    is not used (pool(a+b) and pool(a)+pool(b) get different keys). A cell whose output is identically
    zero gives ``"0"``.
    Example: ``#0=c3(x);#1=c3(#0);out=#0+#1`` (c1/c3 = nor_conv_1x1/3x3, ap = avg_pool_3x3).
    """
    values: list[list[object]] = [["x"]]
    inputs: dict[int, list[object]] = {}
    for target in (1, 2, 3):
        value: list[object] = []
        for e, (dst, src) in enumerate(EDGES):
            if dst != target or arch[e] == "none" or not values[src]:
                continue
            if arch[e] == "skip_connect":
                value.extend(values[src])
            else:
                inputs[e] = values[src]
                value.append(e)
        values.append(value)
    output = values[3]
    if not output:
        return "0"
    live: set[int] = set()
    stack = [v for v in output if v != "x"]
    while stack:
        e = stack.pop()
        if e not in live:
            live.add(e)
            stack.extend(v for v in inputs[e] if v != "x")

    @functools.cache
    def tree(v: object) -> str:
        if v == "x":
            return "x"
        return f"{_KEY_NAMES[arch[v]]}({'+'.join(sorted(tree(u) for u in inputs[v]))})"

    def tree_op(e: int) -> str:
        return _KEY_NAMES[arch[e]]

    groups: dict[str, list[int]] = {}
    for e in sorted(live):
        groups.setdefault(tree(e), []).append(e)
    labels = sorted(groups, key=lambda lab: (lab.count("("), lab))  # inputs before their consumers
    best: str | None = None
    for perm in itertools.product(*(itertools.permutations(groups[lab]) for lab in labels)):
        order = [e for group in perm for e in group]
        ident = {e: f"#{i}" for i, e in enumerate(order)}
        ident["x"] = "x"  # type: ignore[index]
        parts = [f"{ident[e]}={tree_op(e)}({'+'.join(sorted(ident[u] for u in inputs[e]))})" for e in order]
        parts.append("out=" + "+".join(sorted(ident[v] for v in output)))
        text = ";".join(parts)
        if best is None or text < best:
            best = text
    assert best is not None
    return best


def _valid_ops() -> str:
    return ", ".join(OP_NAMES)


class NB201Space(SearchSpace):
    """The NAS-Bench-201 topology space (also NATS-Bench TSS).

    ``build`` kwargs: ``C`` (16), ``N`` (5 cells per stage), ``bn_affine`` (True), ``bn_track_running_stats``
    (True) -- the defaults give the official CIFAR network whose parameter count is the table's params_mb.
    """

    name = "nb201"

    # ---- validation / strings -------------------------------------------------------------------------
    def check(self, arch: Arch) -> NB201Arch:
        """Return ``arch`` as a validated 6-tuple of op names (raises SearchSpaceError otherwise)."""
        if not isinstance(arch, (tuple, list)) or len(arch) != NUM_EDGES:
            raise SearchSpaceError(
                f"nb201 architecture must be a tuple of {NUM_EDGES} op names, got {arch!r}; "
                f"valid ops: {_valid_ops()}"
            )
        for op in arch:
            if op not in _OP_INDEX:
                raise SearchSpaceError(f"unknown nb201 op {op!r} in {arch!r}; valid ops: {_valid_ops()}")
        return tuple(arch)  # type: ignore[return-value]

    def parse(self, text: str) -> NB201Arch:
        if not isinstance(text, str):
            raise SearchSpaceError(f"nb201 architecture string expected, got {text!r}; format {FORMAT_HINT}")
        groups = text.strip().split("+")
        if len(groups) != 3:
            raise SearchSpaceError(
                f"malformed nb201 architecture {text!r}: expected 3 '+'-separated nodes, format {FORMAT_HINT}"
            )
        ops: list[str] = []
        for node, group in enumerate(groups, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise SearchSpaceError(
                    f"malformed nb201 node {group!r} in {text!r}: must be enclosed in '|', "
                    f"format {FORMAT_HINT}"
                )
            tokens = group[1:-1].split("|")
            if len(tokens) != node:
                raise SearchSpaceError(
                    f"malformed nb201 node {group!r} in {text!r}: node {node} needs {node} inputs, "
                    f"format {FORMAT_HINT}"
                )
            for src, token in enumerate(tokens):
                op, sep, idx = token.partition("~")
                if not sep:
                    raise SearchSpaceError(
                        f"malformed nb201 edge {token!r} in {text!r}: expected 'op~{src}', "
                        f"format {FORMAT_HINT}"
                    )
                if op not in _OP_INDEX:
                    raise SearchSpaceError(f"unknown nb201 op {op!r} in {text!r}; valid ops: {_valid_ops()}")
                if idx != str(src):
                    raise SearchSpaceError(
                        f"bad edge source in nb201 token {token!r} of {text!r}: input {src} of node "
                        f"{node} must read '~{src}', format {FORMAT_HINT}"
                    )
                ops.append(op)
        return tuple(ops)  # type: ignore[return-value]

    def format(self, arch: Arch) -> str:
        a = self.check(arch)
        return f"|{a[0]}~0|+|{a[1]}~0|{a[2]}~1|+|{a[3]}~0|{a[4]}~1|{a[5]}~2|"

    # ---- finite-space protocol ------------------------------------------------------------------------
    def size(self) -> int:
        return SIZE

    def enumerate(self) -> Iterator[NB201Arch]:
        return iter(_official_order()[0])

    def index(self, arch: Arch) -> int:
        return _official_order()[1][self.check(arch)]

    def from_index(self, i: int) -> NB201Arch:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < SIZE:
            raise SearchSpaceError(f"nb201 index {i!r} out of range; valid: 0..{SIZE - 1}")
        return _official_order()[0][int(i)]

    # ---- search operators -----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return tuple(OP_NAMES[int(k)] for k in rng.integers(len(OP_NAMES), size=NUM_EDGES))  # type: ignore

    def mutate(self, arch: Arch, rng: np.random.Generator) -> NB201Arch:
        a = list(self.check(arch))
        edge = int(rng.integers(NUM_EDGES))
        others = [op for op in OP_NAMES if op != a[edge]]
        a[edge] = others[int(rng.integers(len(others)))]
        return tuple(a)  # type: ignore[return-value]

    def neighbours(self, arch: Arch) -> list[NB201Arch]:
        a = self.check(arch)
        return [a[:e] + (op,) + a[e + 1 :] for e in range(NUM_EDGES) for op in OP_NAMES if op != a[e]]

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot per edge, edges in string order, ops in OP_NAMES order (30 floats)."""
        a = self.check(arch)
        out = np.zeros((NUM_EDGES, len(OP_NAMES)), dtype=np.float64)
        out[np.arange(NUM_EDGES), [_OP_INDEX[op] for op in a]] = 1.0
        return out.reshape(-1)

    def key(self, arch: Arch) -> str:
        """Canonical form of the cell's computation graph (see ``canonical_key``)."""
        return canonical_key(self.check(arch))

    # ---- network --------------------------------------------------------------------------------------
    def build(
        self,
        arch: Arch,
        num_classes: int = 10,
        C: int = 16,
        N: int = 5,
        bn_affine: bool = True,
        bn_track_running_stats: bool = True,
        **kwargs,
    ) -> nn.Module:
        """The NAS-Bench-201 network for ``arch`` (official: C=16, N=5); ``arch`` may be a string or index."""
        if kwargs:
            raise SearchSpaceError(
                f"unknown nb201 build options {sorted(kwargs)}; "
                "valid: C, N, bn_affine, bn_track_running_stats"
            )
        if C < 1 or N < 1:
            raise SearchSpaceError(f"nb201 build needs C >= 1 and N >= 1, got C={C}, N={N}")
        ops = self.check(self.coerce(arch))
        return NB201Network(
            ops,
            nb201_channels(C, N),
            num_classes=num_classes,
            bn_affine=bn_affine,
            bn_track_running_stats=bn_track_running_stats,
        )
