"""DARTS cell search space (Liu et al., 2019): a normal and a reduction cell, each with 4 intermediate nodes.

An architecture is a ``DARTSGenotype`` -- DARTS's ``Genotype(normal, normal_concat, reduce, reduce_concat)``
as an immutable value: per cell 8 ``(op, input)`` pairs, two per node 2..5 in node order, where input 0/1 are
the two previous cells and 2.. earlier nodes of the cell, ops from the 7 non-``none`` DARTS primitives, and
the two inputs of a node distinct (every genotype the DARTS parsing rule can produce, and no other). The
concat lists the 4 intermediate nodes 2, 3, 4, 5 in any order. Strings are DARTS's own notation, so any
published genotype can be pasted (``range(2, 6)`` concats accepted; read with ``ast``, never evaluated).

Sampling follows the reference pools of HNAS and RoBoT (``darts_space/search.py``, methods.md §3.5): draw
alpha ~ U[0, 1] per cell and edge, softmax per edge, then DARTS's ``genotype()`` parse (per node the 2
incoming edges with the largest non-``none`` weight, strongest first, ties to the lower input; on each the
first argmax non-``none`` op). The reference draws alpha with 7 columns (``size=[14 * 2, 7]``) but indexes
them with DARTS's 8 PRIMITIVES, so column 0 is ``none`` and ``dil_conv_5x5`` (column 7) is never drawn: the
reference pools hold genotypes of 6 ops only (none of RoBoT's published genotypes uses dil_conv_5x5).
``sampling="reference"`` (default) reproduces that; ``sampling="all_ops"`` draws 8 columns so every op can
occur. Either rule is uniform over its genotypes (the alpha rows and columns are exchangeable); the order
of a node's two pairs is the strength order, i.e. random.

What ``key`` treats as equal (see ``canonical``): the order of a node's two inputs (the sum commutes), the
order of the concat (it only permutes channels, which the next cell's 1x1 convolutions and the classifier
absorb), and relabelings of the intermediate nodes that keep every input earlier than its node (the same
graph, e.g. two nodes that do not read each other swapped). Not merged: genotypes equal only through an
algebraic identity of the ops (e.g. the linearity of avg_pool_3x3 or of skip_connect), as for nb201.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from torch import nn

from hnas.nn.darts_net import DARTSNetwork
from hnas.nn.darts_ops import DARTS_OPS, DARTS_PRIMITIVES
from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

NUM_NODES = 4
NUM_EDGES = sum(range(2, 2 + NUM_NODES))  # 14 candidate edges per cell in the DARTS supernet
CONCAT: tuple[int, ...] = tuple(range(2, 2 + NUM_NODES))
_OP_INDEX = {op: i for i, op in enumerate(DARTS_OPS)}
#: short op names used inside canonical keys
_KEY_NAMES = {
    "max_pool_3x3": "max",
    "avg_pool_3x3": "avg",
    "skip_connect": "skip",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "dil_conv_3x3": "dil3",
    "dil_conv_5x5": "dil5",
}
#: number of alpha columns drawn per edge by each sampling rule (columns index DARTS_PRIMITIVES)
SAMPLING_COLUMNS = {"reference": 7, "all_ops": len(DARTS_PRIMITIVES)}
FORMAT_HINT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...8 (op, input) pairs, two per node 2..5], "
    "normal_concat=[2, 3, 4, 5], reduce=[...8 pairs], reduce_concat=[2, 3, 4, 5]) "
    "(concats may be written range(2, 6))"
)
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

Pair = tuple[str, int]
Cell = tuple[Pair, ...]


class DARTSGenotype(NamedTuple):
    """DARTS's Genotype as a hashable value: 8 ``(op, input)`` pairs and the concat order per cell."""

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]


def _valid_ops() -> str:
    return ", ".join(DARTS_OPS)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_cell(pairs: object, field: str) -> Cell:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) != 2 * NUM_NODES:
        raise SearchSpaceError(
            f"darts {field} must be a list of {2 * NUM_NODES} (op, input) pairs (two per node), got {pairs!r}; "
            f"format {FORMAT_HINT}"
        )
    out: list[Pair] = []
    for k, pair in enumerate(pairs):
        node = 2 + k // 2
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise SearchSpaceError(f"darts {field} entry {k} must be an (op, input) pair, got {pair!r}")
        op, src = pair
        if op not in _OP_INDEX:
            raise SearchSpaceError(f"unknown darts op {op!r} in {field} entry {k}; valid ops: {_valid_ops()}")
        if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= int(src) < node:
            raise SearchSpaceError(
                f"bad input {src!r} in {field} entry {k} ({op!r}): node {node} reads from 0..{node - 1} "
                "(0, 1 = the previous cells, 2.. = earlier nodes)"
            )
        out.append((str(op), int(src)))
    for k in range(0, len(out), 2):
        if out[k][1] == out[k + 1][1]:
            raise SearchSpaceError(
                f"node {2 + k // 2} of darts {field} reads input {out[k][1]} twice ({out[k]!r}, {out[k + 1]!r}); "
                "its two inputs must differ (as DARTS parsing keeps two distinct edges)"
            )
    return tuple(out)


def _check_concat(concat: object, field: str) -> tuple[int, ...]:
    ok = (
        not isinstance(concat, (str, bytes))
        and isinstance(concat, (Sequence, range))
        and all(isinstance(j, (int, np.integer)) and not isinstance(j, bool) for j in concat)
        and sorted(int(j) for j in concat) == list(CONCAT)
    )
    if not ok:
        raise SearchSpaceError(
            f"darts {field} must list the intermediate nodes 2, 3, 4, 5 (any order; e.g. [2, 3, 4, 5] or "
            f"range(2, 6)), got {concat!r}"
        )
    return tuple(int(j) for j in concat)


def genotype_from_alpha(alpha: np.ndarray) -> DARTSGenotype:
    """DARTS's ``genotype()`` parse of architecture weights ``alpha`` of shape (2, 14, K), K <= 8.

    Column k of an edge is DARTS_PRIMITIVES[k] (column 0 = ``none``). Softmax per edge; for node i the
    2 edges with the largest non-``none`` weight, strongest first (ties: lower input first, Python's stable
    sort), each with its first argmax non-``none`` op. Concat = nodes 2..5.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.ndim != 3 or alpha.shape[:2] != (2, NUM_EDGES) or not 2 <= alpha.shape[2] <= len(DARTS_PRIMITIVES):
        raise SearchSpaceError(
            f"alpha must have shape (2, {NUM_EDGES}, K) with 2 <= K <= {len(DARTS_PRIMITIVES)}, got {alpha.shape}"
        )
    e = np.exp(alpha - alpha.max(axis=-1, keepdims=True))
    weights = e / e.sum(axis=-1, keepdims=True)
    cells: list[Cell] = []
    for w in weights:
        gene: list[Pair] = []
        start = 0
        for i in range(NUM_NODES):
            rows = w[start : start + i + 2, 1:]
            strength = rows.max(axis=1)
            edges = sorted(range(i + 2), key=lambda j: -strength[j])[:2]
            gene.extend((DARTS_PRIMITIVES[1 + int(np.argmax(rows[j]))], j) for j in edges)
            start += i + 2
        cells.append(tuple(gene))
    return DARTSGenotype(cells[0], CONCAT, cells[1], CONCAT)


_ORDERS = tuple(itertools.permutations(range(NUM_NODES)))


@functools.lru_cache(maxsize=65536)
def _canonical_cell(cell: Cell) -> Cell:
    """The least relabeling of the cell's nodes (inputs before their node), each node's pairs sorted.

    An ordering lists the original nodes by their new label; it is valid when every node comes after the
    nodes it reads. Representation: per new node the sorted (input, op index) pairs; the least one wins.
    """
    pairs = [[(src, _OP_INDEX[op]) for op, src in cell[2 * n : 2 * n + 2]] for n in range(NUM_NODES)]
    reads = [{src - 2 for src, _ in node if src >= 2} for node in pairs]
    best: tuple | None = None
    for order in _ORDERS:
        label = {0: 0, 1: 1}
        valid = True
        for t, n in enumerate(order):
            if any(m + 2 not in label for m in reads[n]):
                valid = False
                break
            label[n + 2] = t + 2
        if not valid:
            continue
        rep = []
        for n in order:
            (s0, o0), (s1, o1) = pairs[n]
            a, b = (label[s0], o0), (label[s1], o1)
            rep.append((a, b) if a <= b else (b, a))
        rep_t = tuple(rep)
        if best is None or rep_t < best:
            best = rep_t
    assert best is not None  # the identity order is always valid
    return tuple((DARTS_OPS[op], src) for node in best for src, op in node)


class DARTSSpace(SearchSpace):
    """The DARTS CNN cell space.

    ``build`` kwargs: ``network`` ("cifar" | "imagenet"), ``C`` (16), ``layers`` (5), ``auxiliary`` (False),
    ``drop_path`` (0.0); the defaults give the search network of the HNAS / RoBoT scoring. The final networks
    are C=36, 20 layers (CIFAR) and C=48, 14 layers (ImageNet), with ``auxiliary=True`` for training.
    """

    name = "darts"

    def __init__(self, sampling: str = "reference") -> None:
        if sampling not in SAMPLING_COLUMNS:
            raise SearchSpaceError(f"unknown darts sampling {sampling!r}; valid: {', '.join(SAMPLING_COLUMNS)}")
        self.sampling = sampling

    # ---- validation / strings -------------------------------------------------------------------------
    def check(self, arch: Arch) -> DARTSGenotype:
        """Return ``arch`` as a validated DARTSGenotype; accepts its string or any 4-field Genotype-like value
        (e.g. DARTS's own namedtuple with lists and ``range`` concats)."""
        if isinstance(arch, str):
            return self.parse(arch)
        if not isinstance(arch, (tuple, list)) or len(arch) != 4:
            raise SearchSpaceError(f"darts architecture must be a genotype, format {FORMAT_HINT}; got {arch!r}")
        return DARTSGenotype(
            _check_cell(arch[0], "normal"),
            _check_concat(arch[1], "normal_concat"),
            _check_cell(arch[2], "reduce"),
            _check_concat(arch[3], "reduce_concat"),
        )

    def parse(self, text: str) -> DARTSGenotype:
        """A genotype from DARTS's string (optionally ``NAME = Genotype(...)`` as in genotypes.py files)."""
        if not isinstance(text, str):
            raise SearchSpaceError(f"darts architecture string expected, got {text!r}; format {FORMAT_HINT}")
        try:
            tree = ast.parse(text.strip(), mode="exec")
        except SyntaxError as err:
            raise SearchSpaceError(
                f"malformed darts genotype {_short(text)!r} ({err.msg}); format {FORMAT_HINT}"
            ) from None
        body = tree.body
        call = body[0].value if len(body) == 1 and isinstance(body[0], (ast.Expr, ast.Assign)) else None
        func = getattr(call, "func", None)
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if not isinstance(call, ast.Call) or name != "Genotype":
            raise SearchSpaceError(
                f"malformed darts genotype {_short(text)!r}: expected one Genotype(...) call, format {FORMAT_HINT}"
            )
        if len(call.args) > 4 or any(isinstance(a, ast.Starred) for a in call.args):
            raise SearchSpaceError(f"malformed darts genotype {_short(text)!r}: at most 4 plain positional fields")
        fields: dict[str, ast.expr] = dict(zip(_FIELDS, call.args))
        for kw in call.keywords:
            if kw.arg not in _FIELDS or kw.arg in fields:
                what = "repeated" if kw.arg in fields else "unknown"
                raise SearchSpaceError(
                    f"{what} field {kw.arg!r} in darts genotype {_short(text)!r}; fields: {', '.join(_FIELDS)}"
                )
            fields[kw.arg] = kw.value
        missing = [f for f in _FIELDS if f not in fields]
        if missing:
            raise SearchSpaceError(
                f"darts genotype {_short(text)!r} lacks {', '.join(missing)}; format {FORMAT_HINT}"
            )
        return self.check(tuple(self._literal(fields[f], f) for f in _FIELDS))

    @staticmethod
    def _literal(node: ast.expr, field: str) -> object:
        """A literal value, or ``range(a[, b])`` with int literals for the concats."""
        if (
            field.endswith("concat")
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and not node.keywords
            and 1 <= len(node.args) <= 2
        ):
            try:
                bounds = [ast.literal_eval(a) for a in node.args]
            except ValueError:
                bounds = []
            if bounds and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
                return list(range(*bounds))
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise SearchSpaceError(
                f"darts {field} must be a literal list (concats also range(2, 6)), got {ast.unparse(node)!r}; "
                f"format {FORMAT_HINT}"
            ) from None

    def format(self, arch: Arch) -> str:
        g = self.check(arch)

        def pairs(cell: Cell) -> str:
            return "[" + ", ".join(f"({op!r}, {src})" for op, src in cell) + "]"

        return (
            f"Genotype(normal={pairs(g.normal)}, normal_concat={list(g.normal_concat)}, "
            f"reduce={pairs(g.reduce)}, reduce_concat={list(g.reduce_concat)})"
        )

    # ---- size / sampling ------------------------------------------------------------------------------
    def size(self) -> int:
        """Genotypes up to the order of each node's two inputs: per cell prod_i C(i+2, 2) * 7^2 over the
        4 nodes (= 180 * 7^8, DARTS's "~10^9"), squared for the two cells (~1.08e18). Node relabelings that
        ``key`` also merges are counted separately, so there are somewhat fewer distinct keys."""
        per_cell = 1
        for i in range(NUM_NODES):
            per_cell *= (i + 2) * (i + 1) // 2 * len(DARTS_OPS) ** 2
        return per_cell**2

    def sample(self, rng: np.random.Generator) -> DARTSGenotype:
        """One genotype by the reference rule: ``alpha = rng.random((2, 14, K))`` (K = 7 for
        ``sampling="reference"``, 8 for ``"all_ops"``) parsed by ``genotype_from_alpha``."""
        return genotype_from_alpha(rng.random((2, NUM_EDGES, SAMPLING_COLUMNS[self.sampling])))

    def sample_many(self, n: int, rng: np.random.Generator, unique: bool = True) -> list[Arch]:
        """``n`` genotypes drawn with ``sample`` (never by index: the space is not enumerable); with
        ``unique`` repeats of a canonical key are redrawn (the reference pool collapses them instead)."""
        out: list[Arch] = []
        seen: set[str] = set()
        while len(out) < n:
            g = self.sample(rng)
            if unique:
                k = self.key(g)
                if k in seen:
                    continue
                seen.add(k)
            out.append(g)
        return out

    # ---- canonical form, encoding ---------------------------------------------------------------------
    def canonical(self, arch: Arch) -> DARTSGenotype:
        """The representative of ``arch``'s class (see the module docstring): nodes relabeled to the least
        spelling, pairs sorted by (input, op), concat 2..5."""
        g = self.check(arch)
        return DARTSGenotype(_canonical_cell(g.normal), CONCAT, _canonical_cell(g.reduce), CONCAT)

    def key(self, arch: Arch) -> str:
        """Canonical string, e.g. ``normal=sep3~0+sep3~1,...;reduce=max~0+max~1,...`` (one item per node)."""
        c = self.canonical(arch)

        def cell(pairs: Cell) -> str:
            return ",".join(
                "+".join(f"{_KEY_NAMES[op]}~{src}" for op, src in pairs[k : k + 2]) for k in range(0, len(pairs), 2)
            )

        return f"normal={cell(c.normal)};reduce={cell(c.reduce)}"

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot op per candidate edge of the canonical form: cells (normal, reduce) x 14 edges (node 2's
        inputs 0-1, node 3's 0-2, ...) x 7 ops in DARTS_OPS order; 0 where the edge is unused (196 floats)."""
        c = self.canonical(arch)
        out = np.zeros((2, NUM_EDGES, len(DARTS_OPS)), dtype=np.float64)
        for ci, pairs in enumerate((c.normal, c.reduce)):
            for k, (op, src) in enumerate(pairs):
                i = k // 2
                out[ci, i * (i + 3) // 2 + src, _OP_INDEX[op]] = 1.0
        return out.reshape(-1)

    # ---- search operators -----------------------------------------------------------------------------
    def neighbours(self, arch: Arch) -> list[DARTSGenotype]:
        """Every genotype one edit away: another op on one pair, or another input for one pair (distinct
        from the node's other input); deduplicated by key, ``arch``'s own class left out."""
        g = self.check(arch)
        cells = {"normal": g.normal, "reduce": g.reduce}
        seen = {self.key(g)}
        out: list[DARTSGenotype] = []
        for field, cell in cells.items():
            for k, (op, src) in enumerate(cell):
                node = 2 + k // 2
                other = cell[k ^ 1][1]
                edits = [(o, src) for o in DARTS_OPS if o != op]
                edits += [(op, s) for s in range(node) if s not in (src, other)]
                for pair in edits:
                    new_cell = cell[:k] + (pair,) + cell[k + 1 :]
                    cand = g._replace(**{field: new_cell})
                    key = self.key(cand)
                    if key not in seen:
                        seen.add(key)
                        out.append(cand)
        return out

    def mutate(self, arch: Arch, rng: np.random.Generator) -> DARTSGenotype:
        """One of ``neighbours(arch)``, uniformly."""
        nbrs = self.neighbours(arch)
        return nbrs[int(rng.integers(len(nbrs)))]

    # ---- network --------------------------------------------------------------------------------------
    def build(
        self,
        arch: Arch,
        num_classes: int = 10,
        network: str = "cifar",
        C: int = 16,
        layers: int = 5,
        auxiliary: bool = False,
        drop_path: float = 0.0,
        **kwargs,
    ) -> nn.Module:
        """The DARTS network for ``arch`` (a genotype or its string); defaults: the C=16, 5-layer search net."""
        if kwargs:
            raise SearchSpaceError(
                f"unknown darts build options {sorted(kwargs)}; valid: network, C, layers, auxiliary, drop_path"
            )
        if network not in ("cifar", "imagenet"):
            raise SearchSpaceError(f"darts build network must be 'cifar' or 'imagenet', got {network!r}")
        if isinstance(C, bool) or not isinstance(C, int) or C < 2 or C % 2:
            raise SearchSpaceError(f"darts build needs an even int C >= 2, got C={C!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise SearchSpaceError(f"darts build needs an int layers >= 1, got layers={layers!r}")
        if not 0.0 <= float(drop_path) < 1.0:
            raise SearchSpaceError(f"darts build drop_path must be in [0, 1), got {drop_path!r}")
        g = self.check(self.coerce(arch))
        return DARTSNetwork(
            (g.normal, g.normal_concat),
            (g.reduce, g.reduce_concat),
            C=C,
            num_classes=num_classes,
            layers=layers,
            auxiliary=bool(auxiliary),
            network=network,
            drop_path_prob=float(drop_path),
        )

    def input_shape(self) -> tuple[int, int, int]:
        """CIFAR input (the search network's); ImageNet networks take (3, 224, 224)."""
        return (3, 32, 32)
