"""SiGeo's batching modes (issue 14): ``split`` (hnas: n_batches chunks of the whole batch) and ``reference``
(NASLib-SiGeo: automatic warm-up on batches of more than 256 samples, fixed 64-sample chunks of the last 256)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hnas.proxies.context import ProxyContext
from hnas.proxies.sigeo import reference_batches, sigeo


class Recorder(nn.Module):
    """Linear(2, 3) on columns 1: of the input; column 0 carries the sample's index, recorded per forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(2, 3)
        self.seen: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, 0].long().tolist())
        return self.fc(x[:, 1:])


def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], torch.randn(n, 2, generator=g)], dim=1)
    return x, torch.arange(n) % 3


def run(n: int, **options) -> tuple[float, list[list[int]]]:
    net = Recorder()
    x, y = batch(n)
    ctx = ProxyContext(model=net, inputs=x, labels=y, num_classes=3, options={"lr": 0.01, **options}, seed=0)
    return sigeo(ctx), net.seen


def ids(a: int, b: int) -> list[int]:
    return list(range(a, b))


def test_reference_ranges_of_a_300_sample_batch() -> None:
    warm, chunks = reference_batches(300)
    # more than 256 samples: 10 epochs over ALL 300 in 128-chunks (the last one 44), then the last 256 in 64s
    assert warm == [slice(0, 128), slice(128, 256), slice(256, 300)] * 10
    assert chunks == [slice(44, 108), slice(108, 172), slice(172, 236), slice(236, 300)]


@pytest.mark.parametrize(
    ("n", "chunks"),
    [
        (256, [slice(0, 64), slice(64, 128), slice(128, 192), slice(192, 256)]),
        (200, [slice(0, 64), slice(64, 128), slice(128, 192), slice(192, 200)]),
        (65, [slice(0, 64), slice(64, 65)]),
    ],
)
def test_reference_ranges_without_warm_up(n: int, chunks: list[slice]) -> None:
    assert reference_batches(n) == ([], chunks)


def test_reference_mode_forwards_warm_up_then_the_last_256_in_64s() -> None:
    _, seen = run(300, batching="reference")
    epoch = [ids(0, 128), ids(128, 256), ids(256, 300)]
    assert seen == epoch * 10 + [ids(44, 108), ids(108, 172), ids(172, 236), ids(236, 300)]
    # split mode on the same batch: no warm-up, the whole batch in n_batches = 4 chunks of 75
    _, seen_split = run(300, batching="split")
    assert seen_split == [ids(0, 75), ids(75, 150), ids(150, 225), ids(225, 300)]


def test_reference_warm_up_switches_to_the_warm_lambdas() -> None:
    auto, _ = run(300, batching="reference")
    assert auto == run(300, batching="reference", lambda2=50.0, lambda3=1.0)[0]
    assert auto != run(300, batching="reference", lambda2=1.0, lambda3=0.0)[0]
    # at 256 samples there is no warm-up: the cold λ's (1, 0)
    cold, seen = run(256, batching="reference")
    assert len(seen) == 4 and cold == run(256, batching="reference", lambda2=1.0, lambda3=0.0)[0]


def test_modes_agree_on_256_samples_in_4_chunks() -> None:
    ref, seen_ref = run(256, batching="reference")
    split, seen_split = run(256, batching="split", n_batches=4)
    assert seen_ref == seen_split and ref == split


def test_explicit_warm_up_runs_before_the_automatic_one() -> None:
    x, y = batch(20)
    _, seen = run(300, batching="reference", warmup_steps=2, warmup_batch_size=8,
                  warmup_data=(x + torch.tensor([1000.0, 0.0, 0.0]), y))
    assert seen[:2] == [ids(1000, 1008), ids(1008, 1016)]
    assert seen[2:5] == [ids(0, 128), ids(128, 256), ids(256, 300)] and len(seen) == 2 + 30 + 4


def test_reference_mode_needs_two_chunks_and_a_known_mode() -> None:
    with pytest.raises(ValueError, match=r"batching=reference needs more than 64 samples .* got 64"):
        run(64, batching="reference")
    with pytest.raises(ValueError, match=r"sigeo batching='naslib' is not one of: split, reference"):
        run(128, batching="naslib")


def test_reference_batching_is_cached_under_its_own_key() -> None:
    from hnas.proxies.registry import get_proxy

    assert get_proxy("sigeo").options["batching"] == "split" and get_proxy("sigeo").key_name == "sigeo"
    assert get_proxy("sigeo", batching="reference").key_name == "sigeo[batching=reference]"
