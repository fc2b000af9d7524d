"""DARTS cells and the CIFAR / ImageNet networks built from a genotype (DARTS's ``cnn/model.py`` layout).

Layout (as the reference, so parameter counts and multiply-adds match methods.md §9): each cell reads the
outputs of the two previous cells, preprocesses them to C channels (ReLUConvBN 1x1, or FactorizedReduce for
the previous-previous input when the previous cell reduced), computes 4 nodes as the sum of two ops on
earlier states, and concatenates the ``concat`` nodes. Cells at ``layers // 3`` and ``2 * layers // 3`` are
reduction cells (channels doubled, stride 2 on the ops reading the cell inputs). The auxiliary head reads
the output of cell ``2 * layers // 3``; it is a module named ``auxiliary_head`` so DARTS's counting rule
(parameters whose name contains "auxiliary" are not counted) applies unchanged.

Design of the auxiliary output: ``forward(x)`` always returns the logits tensor (what proxies and
evaluation expect); training code that wants the auxiliary loss calls ``forward_with_aux(x)``, which returns
``(logits, aux_logits)`` with ``aux_logits`` None unless the network has a head and is in training mode.
No logits are stored on the module, so nothing stale survives a call.

Drop-path: ``set_drop_path(p)`` sets the probability that later training forwards use (the training recipe
ramps it per epoch); it applies, in training mode only, to the output of every op except the identity
``skip_connect``, as in DARTS. Two deliberate differences from the reference that change no number:
ReLUs are never in-place, and the ImageNet network pools with ``AdaptiveAvgPool2d(1)`` (the reference's
``AvgPool2d(7)`` is the same at 224x224 and fails at other sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hnas.nn.darts_ops import darts_op, drop_path
from hnas.nn.ops import FactorizedReduce, ReLUConvBN

#: one cell of a genotype: 8 (op, input) pairs (two per node, nodes 2..5) and the concatenated nodes
CellSpec = tuple[Sequence[tuple[str, int]], Sequence[int]]


class DARTSCell(nn.Module):
    """One normal or reduction cell of a DARTS genotype."""

    def __init__(
        self,
        cell: CellSpec,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        pairs, concat = cell
        if len(pairs) % 2 or not pairs:
            raise ValueError(f"a DARTS cell needs an even, positive number of (op, input) pairs, got {len(pairs)}")
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_prev_prev, c, 2) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.indices = tuple(int(j) for _, j in pairs)
        self.concat = tuple(int(j) for j in concat)
        n_states = 2 + len(pairs) // 2
        for k, j in enumerate(self.indices):
            if not 0 <= j < 2 + k // 2:
                raise ValueError(f"input {j} of pair {k} must be an earlier state (0..{1 + k // 2})")
        if not self.concat or any(not 0 <= j < n_states for j in self.concat):
            raise ValueError(f"concat {self.concat} must name states 0..{n_states - 1}")
        self.ops = nn.ModuleList(
            darts_op(name, c, 2 if reduction and j < 2 else 1) for name, j in pairs
        )
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        use_drop = self.training and drop_prob > 0.0
        for i in range(len(self.ops) // 2):
            total = None
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if use_drop and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[j] for j in self.concat], dim=1)


class AuxiliaryHead(nn.Sequential):
    """DARTS's auxiliary classifier: ReLU, 5x5 average pool (stride 3 on CIFAR's 8x8 map, 2 on ImageNet's
    14x14), 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, [BN: CIFAR only, as the reference], ReLU, linear."""

    def __init__(self, c: int, num_classes: int, imagenet: bool) -> None:
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if not imagenet:  # the reference ImageNet head has no BN here (a typo kept for its published results)
            layers.append(nn.BatchNorm2d(768))
        layers += [nn.ReLU(inplace=False), nn.Flatten(1), nn.Linear(768, num_classes)]
        super().__init__(*layers)


class DARTSNetwork(nn.Module):
    """A DARTS network: stem, ``layers`` cells, global pooling, linear ``classifier`` (+ auxiliary head).

    ``network="cifar"``: 3x3 conv stem to 3*C channels (DARTS's ``NetworkCIFAR``); ``"imagenet"``: two
    stride-2 conv stems to C channels and a third stride-2 stem, so the first cell already sees a reduced
    input (``NetworkImageNet``). ``normal`` / ``reduce`` are ``(pairs, concat)`` cell specs.
    """

    def __init__(
        self,
        normal: CellSpec,
        reduce: CellSpec,
        C: int,
        num_classes: int,
        layers: int,
        auxiliary: bool = False,
        network: str = "cifar",
        drop_path_prob: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if network not in ("cifar", "imagenet"):
            raise ValueError(f"DARTS network must be 'cifar' or 'imagenet', got {network!r}")
        if C < 2 or C % 2 or layers < 1 or num_classes < 1:
            raise ValueError(
                f"DARTS network needs an even C >= 2, layers >= 1, num_classes >= 1; "
                f"got C={C}, layers={layers}, num_classes={num_classes}"
            )
        self.network = network
        self.layers = layers
        self.aux_index = 2 * layers // 3
        self.drop_path_prob = 0.0
        self.set_drop_path(drop_path_prob)
        if network == "cifar":
            c_stem = 3 * C
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )
            c_prev_prev = c_prev = c_stem
            reduction_prev = False
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
            )
            c_prev_prev = c_prev = C
            reduction_prev = True
        self.cells = nn.ModuleList()
        c_curr = C
        c_aux = c_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = DARTSCell(reduce if reduction else normal, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_prev
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, network == "imagenet") if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def set_drop_path(self, prob: float) -> None:
        """Drop-path probability of later training forwards (0 disables; the recipes ramp it per epoch)."""
        prob = float(prob)
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {prob}")
        self.drop_path_prob = prob

    def _features(self, x: torch.Tensor, want_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.network == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if want_aux and i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return s1, aux

    def forward_pre_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last cell, before global average pooling (Zen-score uses it)."""
        return self._features(x, want_aux=False)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)``; ``aux_logits`` is None unless built with the head and training."""
        feats, aux = self._features(x, want_aux=True)
        return self.classifier(torch.flatten(self.global_pooling(feats), 1)), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(self.forward_pre_gap(x)), 1))


def count_darts_parameters(net: nn.Module) -> int:
    """Parameters counted DARTS's way (``count_parameters_in_MB``): those whose name lacks "auxiliary"."""
    return sum(p.numel() for name, p in net.named_parameters() if "auxiliary" not in name)
