"""The GPU path, checked on the CPU: every tensor that proxies and transforms create follows its input's device,
scoring seeds only the generators it uses, GPU scores never pass for CPU scores, the scored network is not
copied needlessly, and the on-device batch transform trains exactly like the loader's.

How "follows its input's device" is checked without a GPU: the default device is set to ``meta`` while the
network and the batch stay on the CPU. A tensor made without ``device=`` then lands on ``meta`` and the next
operation mixing it with CPU tensors fails, or its value cannot be read; a proxy that makes every tensor on its
input's device gives the same status and value as in a normal run. This is the check a CUDA batch would make,
with ``meta`` standing for "the default device is not the input's".
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from hnas.data import build_datamodule
from hnas.data.transforms import BatchTransform, cutout, normalize, random_crop_flip
from hnas.evaluators.training import weights_digest
from hnas.proxies import proxy_names
from hnas.proxies.cache import score_key
from hnas.proxies.registry import get_proxy
from hnas.proxies.reproducible import seeded
from hnas.proxies.runtime import score_network
from hnas.proxies.settings import ScoringSettings
from hnas.spaces import get_space
from hnas.training.candidate import CandidateModule

NB201 = get_space("nb201")
#: a cell where some convolutions reach the output and one does not (synflow's "no gradient" layer)
CELLS = ["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
         "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|"]


def batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("cell", CELLS)
def test_every_proxy_makes_its_tensors_on_the_inputs_device(cell):
    x, y = batch()
    torch.manual_seed(0)
    net = NB201.build(NB201.parse(cell), C=4, N=1)
    names = proxy_names()
    opts = {"rbflex": {"n_images": 8}}
    ref = score_network(net, names, x, y, 10, options=opts)
    with torch.device("meta"):
        got = score_network(net, names, x, y, 10, options=opts)
    assert all(s.status in ("ok", "inf") for s in ref.values()), {k: s for k, s in ref.items() if not s.ok}
    for n in names:
        assert (got[n].status, got[n].value) == (ref[n].status, ref[n].value), (n, got[n].message)


def test_transforms_make_their_tensors_on_the_batchs_device():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (6, 8, 8, 3), generator=g, dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    def run() -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(2)
        crop = random_crop_flip(x, 2, 0.5, generator=gen)
        norm = normalize(crop, mean, std)
        cut = cutout(norm.clone(), 4, generator=gen)
        torch.manual_seed(3)
        tx, _ = BatchTransform(mean, std, augment=True, padding=2, cutout=4)((x, torch.arange(6)))
        return [crop, norm, cut, tx]

    ref = run()
    with torch.device("meta"):
        got = run()
    for a, b in zip(ref, got):
        assert b.device.type == "cpu" and torch.equal(a, b)


def test_scoring_seeds_the_cpu_generator_only_and_restores_it():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded(7):
        first = torch.rand(3)
    with seeded(7):
        again = torch.rand(3)
    assert torch.equal(first, again) and torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), first)


def test_a_gpu_score_has_its_own_cache_key_unless_declared_equivalent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    p = get_proxy("synflow")
    assert ScoringSettings().device_tag is None and ScoringSettings(device="cpu").device_tag is None
    assert ScoringSettings(device="cuda").device_tag == "cuda" and ScoringSettings(device="auto").device_tag == "cuda"
    assert ScoringSettings(device="cuda", device_equivalent=True).device_tag is None
    cpu = score_key("nb201", "k", p, 0, "fp", None, None)
    gpu = score_key("nb201", "k", p, 0, "fp", None, None, "cuda")
    assert cpu.dtype == "float64" and gpu.dtype == "float64@cuda" and cpu.as_tuple()[:-1] == gpu.as_tuple()[:-1]


def test_a_network_given_away_is_scored_without_a_copy_and_to_the_same_values():
    x, y = batch()
    names = ["grad_norm", "snip", "synflow", "naswot", "jacob_cov"]
    torch.manual_seed(0)
    net = NB201.build(NB201.parse(CELLS[0]), C=4, N=1)
    copied = score_network(net, names, x, y, 10)
    before = weights_digest(net)
    assert weights_digest(net) == before  # the caller's network is untouched by a copying call
    given = score_network(net, names, x, y, 10, copy=False)
    assert {n: given[n].value for n in names} == {n: copied[n].value for n in names}


def test_the_on_device_batch_transform_trains_like_the_loaders():
    """transform_on=device (uint8 batches, augmentation after the transfer) and =resident (the uint8 split kept on
    the device, the loader yielding indices only) give the same weights after a few augmented steps and the same
    validation and test metrics as the loader's collate, on the CPU."""
    digests, metrics = [], []
    for where in ("loader", "device", "resident"):
        dm = build_datamodule("synthetic", num_train=64, num_test=16, batch_size=8, augment=True, transform_on=where)
        L.seed_everything(0, verbose=False)
        module = CandidateModule("nb201", CELLS[0], num_classes=dm.num_classes, seed=0, build_kwargs={"C": 4, "N": 1})
        trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(module, datamodule=dm)
        digests.append(weights_digest(module))
        evaluator = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        metrics.append((evaluator.validate(module, datamodule=dm, verbose=False),
                        evaluator.test(module, datamodule=dm, verbose=False)))
        assert dm.transforms_on_device() == (where != "loader")
        batch = next(iter(dm.train_dataloader()))
        if where == "resident":  # a batch is the split's name and 8 indices; the images stay where they are
            assert set(batch) == {"resident_split", "index"} and batch["index"].shape == (8,)
            assert batch["resident_split"] == "train"
        else:
            assert batch[0].dtype == (torch.float32 if where == "loader" else torch.uint8)
    assert digests[0] == digests[1] == digests[2]
    assert metrics[0] == metrics[1] == metrics[2]
    assert metrics[0][0][0] and metrics[0][1][0]  # both loops ran and reported something
