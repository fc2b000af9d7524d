"""Data modules: splits, transforms, scoring batch, download/checksum, official pickle formats, folders."""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hnas.data import (
    DATAMODULES,
    CIFAR10DataModule,
    DataError,
    DownloadError,
    ScoringBatch,
    build_datamodule,
)
from hnas.data import imagefolder as imagefolder_mod
from hnas.data.transforms import BatchTransform, cutout, normalize, random_crop, random_crop_flip, random_hflip


def synthetic(**kw):
    kw.setdefault("num_train", 200)
    kw.setdefault("num_test", 40)
    kw.setdefault("shape", (3, 8, 8))
    kw.setdefault("num_classes", 4)
    return build_datamodule("synthetic", **kw)


# ------------------------------------------------------------------------------------------ registry
def test_build_unknown_name_lists_valid_ones():
    with pytest.raises(DataError) as e:
        build_datamodule("cifar11")
    assert str(e.value) == ("unknown dataset 'cifar11'; valid: cifar10, cifar100, imagefolder, imagenet16, "
                            "npz, synthetic (or a 'package.module:Class' path)")
    assert set(DATAMODULES.names()) == {"cifar10", "cifar100", "imagenet16", "imagefolder", "npz", "synthetic"}
    with pytest.raises(DataError, match=r"dataset 'synthetic' has no option\(s\) \['bogus'\]; valid: "):
        build_datamodule("synthetic", bogus=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"valid_fraction": 1.0}, "valid_fraction must be in [0, 1), got 1.0"),
    ({"train_subset": 1.5}, "train_subset as a fraction must be in (0, 1], got 1.5"),
    ({"train_subset": 0}, "train_subset as a count must be >= 1, got 0"),
    ({"num_workers": -1}, "num_workers must be an int >= 0, got -1"),
    ({"crop_padding": -2}, "crop_padding must be an int >= 0, got -2"),
    ({"cutout": -16}, "cutout must be an int >= 0 (the square's side in pixels; 0 = off), got -16"),
])
def test_bad_options_name_the_value(kwargs, message):
    with pytest.raises(DataError) as e:
        synthetic(**kwargs)
    assert str(e.value) == message


# ------------------------------------------------------------------------------------------- splits
def test_split_is_seeded_disjoint_and_stratified():
    a, b, c = synthetic(split_seed=3), synthetic(split_seed=3), synthetic(split_seed=4)
    for dm in (a, b, c):
        dm.setup()
    ta, va = a.split_indices("train"), a.split_indices("valid")
    assert torch.equal(ta, b.split_indices("train")) and torch.equal(va, b.split_indices("valid"))
    assert not torch.equal(va, c.split_indices("valid"))
    assert len(set(ta.tolist()) & set(va.tolist())) == 0
    assert sorted(ta.tolist() + va.tolist()) == list(range(200))
    y = a.data.train_y
    counts = torch.bincount(y, minlength=4)
    valid_counts = torch.bincount(y[va], minlength=4)
    assert counts.tolist() == [50] * 4 and valid_counts.tolist() == [25] * 4


def test_valid_fraction_zero_validates_on_test():
    dm = synthetic(valid_fraction=0.0, augment=False, batch_size=16)
    dm.setup()
    assert len(dm.split_indices("valid")) == 0 and len(dm.split_indices("train")) == 200
    assert len(dm.val_dataloader().dataset) == 40


def test_train_subset_fraction_and_count():
    dm = synthetic(train_subset=0.25, split_seed=1)
    dm.setup()
    train = set(dm.split_indices("train").tolist())
    assert len(train) == 100 and len(dm.train_dataloader().dataset) == 25
    assert len(synthetic(train_subset=0.125).train_dataloader().dataset) == 13  # 12.5 rounds half up
    assert set(dm.train_dataloader().dataset.indices.tolist()) <= train
    dm2 = synthetic(train_subset=0.25, split_seed=1)
    assert torch.equal(dm2.train_dataloader().dataset.indices, dm.train_dataloader().dataset.indices)
    dm3 = synthetic(train_subset=7)
    assert len(dm3.train_dataloader().dataset) == 7
    with pytest.raises(DataError, match="train_subset=500 asks for 500 images but the train part of synth"):
        synthetic(train_subset=500).setup()


# --------------------------------------------------------------------------------------- transforms
def test_random_crop_keeps_shape_and_cuts_windows_of_padded_image():
    x = torch.arange(5 * 6 * 6 * 2, dtype=torch.int64).remainder(251).add(1).to(torch.uint8).view(5, 6, 6, 2)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, padding=2, generator=g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (0, 0, 2, 2, 2, 2))
    for i in range(5):
        windows = [(oy, ox) for oy in range(5) for ox in range(5)
                   if torch.equal(out[i], padded[i, oy:oy + 6, ox:ox + 6])]
        assert len(windows) == 1
    assert torch.equal(random_crop(x, padding=0), x)


def test_random_crop_offsets_cover_range():
    x = torch.full((400, 4, 4, 1), 7, dtype=torch.uint8)
    out = random_crop(x, padding=1, generator=torch.Generator().manual_seed(1))
    zeros_rows = (out[:, :, :, 0] == 0).all(dim=2)  # a fully padded row: offset 0 (top) or 2 (bottom)
    assert zeros_rows[:, 0].any() and zeros_rows[:, 3].any() and not zeros_rows[:, 1:3].any()
    assert (~zeros_rows).all(dim=1).any()  # offset 1: no padded row


def test_fused_crop_flip_matches_crop_then_flip():
    x = torch.randint(0, 256, (64, 8, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(4)
    out = random_crop_flip(x, padding=3, flip_p=0.5, generator=g)
    g = torch.Generator().manual_seed(4)
    oy, ox = torch.randint(0, 7, (64,), generator=g), torch.randint(0, 7, (64,), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (0, 0, 3, 3, 3, 3))
    for i in range(64):
        window = padded[i, oy[i]:oy[i] + 8, ox[i]:ox[i] + 7]
        assert torch.equal(out[i], window.flip(1) if flip[i] else window)
    assert 10 < int(flip.sum()) < 54 and len(set(oy.tolist())) == 7
    assert torch.equal(random_crop_flip(x, padding=0, flip_p=0.0), x)


def test_hflip_flips_exactly():
    x = torch.arange(2 * 3 * 4 * 1, dtype=torch.uint8).view(2, 3, 4, 1)
    assert torch.equal(random_hflip(x, p=1.0), x[:, :, [3, 2, 1, 0]])
    assert torch.equal(random_hflip(x, p=0.0), x)
    y = torch.randint(0, 255, (300, 2, 5, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = random_hflip(y, p=0.5, generator=torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, t.flip(1)) for o, t in zip(out, y)])
    unchanged = torch.tensor([torch.equal(o, t) for o, t in zip(out, y)])
    assert torch.all(flipped ^ unchanged) and 100 < int(flipped.sum()) < 200


def test_normalize_values_and_layout():
    x = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)
    x[0, 0, 1] = torch.tensor([255, 51, 0], dtype=torch.uint8)
    out = normalize(x, mean=(0.5, 0.2, 0.0), std=(0.25, 0.5, 1.0))
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    assert out[0, :, 0, 1].tolist() == pytest.approx([2.0, 0.0, 0.0])
    assert out[0, :, 1, 1].tolist() == pytest.approx([-2.0, -0.4, 0.0])
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(x, mean=(0.5,), std=(0.2,))


def test_batch_transform_accepts_item_lists():
    t = BatchTransform((0.0,), (1.0,), augment=False)
    items = [(torch.full((2, 2, 1), 255, dtype=torch.uint8), 3), (torch.zeros(2, 2, 1, dtype=torch.uint8), 1)]
    x, y = t(items)
    assert x[:, 0, 0, 0].tolist() == [1.0, 0.0] and y.tolist() == [3, 1]


# ------------------------------------------------------------------------------------------ loaders
def test_val_loader_is_unaugmented_and_in_order():
    dm = synthetic(batch_size=32)
    dm.setup()
    idx = dm.split_indices("valid")
    xs, ys = zip(*list(dm.val_dataloader()))
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(y, dm.data.train_y[idx])
    assert torch.allclose(x, normalize(dm.data.train_x[idx], dm.mean, dm.std))


def test_train_loader_augments_and_covers_train_part():
    dm = synthetic(batch_size=32, crop_padding=2)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert all(b[0].shape[1:] == (3, 8, 8) and b[0].dtype == torch.float32 for b in batches)
    y = torch.cat([b[1] for b in batches])
    assert sorted(y.tolist()) == sorted(dm.data.train_y[dm.split_indices("train")].tolist())
    plain = synthetic(batch_size=32, augment=False)
    plain.setup()
    xp = torch.cat([b[0] for b in plain.train_dataloader()])
    xa = torch.cat([b[0] for b in batches])
    assert xp.shape == xa.shape
    # augmentation zero-pads: the value of a black pixel appears only in the augmented batches
    black = normalize(torch.zeros(1, 1, 1, 3, dtype=torch.uint8), dm.mean, dm.std)[0, :, 0, 0]
    has_black = (xa == black.view(1, 3, 1, 1)).all(dim=1).any()
    assert has_black and not (xp == black.view(1, 3, 1, 1)).all(dim=1).any()


def test_cutout_zeroes_one_clipped_square_per_image():
    """DARTS's rule: centre (cy, cx) uniform over the pixels, rows clip(cy - L/2, 0, H)..clip(cy + L/2, 0, H)."""
    n, h, w, length = 300, 10, 12, 4
    x = torch.arange(1, n * 2 * h * w + 1, dtype=torch.float32).view(n, 2, h, w)  # no zero anywhere
    out = cutout(x.clone(), length, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws: centres first all rows, then all columns
    cy, cx = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
    areas = set()
    for i in range(n):
        r0, r1 = max(int(cy[i]) - 2, 0), min(int(cy[i]) + 2, h)
        c0, c1 = max(int(cx[i]) - 2, 0), min(int(cx[i]) + 2, w)
        hole = torch.zeros(h, w, dtype=torch.bool)
        hole[r0:r1, c0:c1] = True
        assert torch.equal(out[i] == 0, hole.expand(2, h, w)) and torch.equal(out[i][:, ~hole], x[i][:, ~hole])
        areas.add((r1 - r0) * (c1 - c0))
    assert areas == {4, 6, 8, 9, 12, 16}  # clipped at corners (2x2) and edges, full 4x4 inside
    assert torch.equal(cutout(x.clone(), 0), x)
    with pytest.raises(ValueError, match="cutout expects a float batch"):
        cutout(torch.zeros(2, 4, 4, 3, dtype=torch.uint8), 2)


def test_cutout_is_a_training_data_option():
    dm = synthetic(batch_size=64, cutout=4, crop_padding=0, flip_p=0.0, valid_fraction=0.5)
    dm.setup()
    x, _ = next(iter(dm.train_dataloader()))
    assert dm.train_dataloader().collate_fn.cutout == 4 and dm.val_dataloader().collate_fn.augment is False
    holes = (x == 0).all(dim=1).flatten(1).sum(1)  # zeroed pixels per image (all channels)
    assert holes.min() >= 4 and holes.max() == 16  # a 2x2 corner at least, a full 4x4 square inside
    xv, _ = next(iter(dm.val_dataloader()))
    assert not (xv == 0).all(dim=1).any()  # held-out data is never cut


def test_loader_with_worker_processes():
    dm = synthetic(batch_size=50, num_workers=2, augment=False)
    y = torch.cat([b[1] for b in dm.val_dataloader()])
    assert torch.equal(y, dm.data.train_y[dm.split_indices("valid")])


def test_attributes_of_fixed_and_computed_datasets():
    dm = synthetic()
    assert (dm.num_classes, dm.input_shape, dm.name) == (4, (3, 8, 8), "synthetic")
    x = dm.data.train_x.to(torch.float64) / 255
    assert dm.mean == pytest.approx(x.mean(dim=(0, 1, 2)).tolist())
    assert dm.std == pytest.approx(x.std(dim=(0, 1, 2), unbiased=False).tolist())
    c10 = CIFAR10DataModule(root="/nonexistent")  # constants need no files
    assert (c10.num_classes, c10.input_shape) == (10, (3, 32, 32))
    assert c10.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert build_datamodule("imagenet16", root="/x").crop_padding == 2


def test_lightning_trainer_consumes_the_datamodule():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
            self.seen = 0

        def training_step(self, batch, _):
            x, y = batch
            self.seen += len(y)
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Tiny()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=synthetic(batch_size=25))
    assert model.seen == 100  # the train half of 200 images
    assert "val_loss" in trainer.callback_metrics


# ------------------------------------------------------------------------------------ scoring batch
def test_scoring_batch_is_deterministic_and_fingerprinted():
    a = synthetic().scoring_batch(16, seed=5)
    b = synthetic().scoring_batch(16, seed=5)
    assert isinstance(a, ScoringBatch)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.fingerprint == b.fingerprint
    assert a.x.shape == (16, 3, 8, 8) and a.y.dtype == torch.long and len(a.fingerprint) == 16
    dm = synthetic()
    others = {dm.scoring_batch(16, seed=6).fingerprint, dm.scoring_batch(17, seed=5).fingerprint,
              dm.scoring_batch(16, seed=5, mode="per_class").fingerprint,
              dm.scoring_batch(16, seed=5, split="valid").fingerprint,
              synthetic(seed=1).scoring_batch(16, seed=5).fingerprint}
    assert a.fingerprint not in others and len(others) == 5


def test_scoring_batch_images_come_from_the_split_unaugmented():
    dm = synthetic()
    b = dm.scoring_batch(30, seed=0, split="valid")
    valid = dm.data.train_x[dm.split_indices("valid")]
    xs = normalize(valid, dm.mean, dm.std)
    for img in b.x:
        assert any(torch.equal(img, v) for v in xs)
    assert len({tuple(v.flatten().tolist()) for v in b.x}) == 30  # distinct images


def test_scoring_batch_per_class_counts():
    dm = synthetic()
    b = dm.scoring_batch(10, seed=0, mode="per_class")
    assert torch.bincount(b.y, minlength=4).tolist() == [2, 2, 2, 2]
    b = dm.scoring_batch(9, seed=1, mode="per_class", split="test")  # 9 // 4 = 2 per class
    assert torch.bincount(b.y, minlength=4).tolist() == [2, 2, 2, 2]
    assert not torch.equal(b.y, torch.sort(b.y).values)  # classes interleaved, not sorted


def test_scoring_batch_errors():
    dm = synthetic()
    with pytest.raises(DataError, match=r"scoring batch n=101 is larger than the train split of synthetic "
                                        r"\(100 images\)"):
        dm.scoring_batch(101, seed=0)
    with pytest.raises(DataError, match=r"per_class scoring batch needs n >= num_classes \(4\), got n=3"):
        dm.scoring_batch(3, seed=0, mode="per_class")
    with pytest.raises(DataError, match="per_class scoring batch n=400 needs 100 images per class, but"):
        dm.scoring_batch(400, seed=0, mode="per_class")
    with pytest.raises(DataError, match="unknown scoring batch mode 'balanced'; valid: random, per_class"):
        dm.scoring_batch(8, seed=0, mode="balanced")
    with pytest.raises(DataError, match="unknown split 'val'; valid: train, valid, test"):
        dm.scoring_batch(8, seed=0, split="val")
    with pytest.raises(DataError, match="synthetic has no test set"):
        synthetic(num_test=0).scoring_batch(8, seed=0, split="test")


# ---------------------------------------------------------------------------- CIFAR + download path
def _pickle_batch(path: Path, data: np.ndarray, labels: list[int], label_key: str) -> None:
    with path.open("wb") as f:  # bytes keys, as the official Python-2 pickles have
        pickle.dump({b"batch_label": b"fake", b"data": data, label_key.encode(): labels}, f, protocol=2)


def make_fake_cifar(tmp: Path, kind: str = "cifar10", n: int = 6) -> tuple[Path, str, dict]:
    """A tiny archive in the official layout; returns (tar.gz path, md5, {file: (data, labels)})."""
    if kind == "cifar10":
        folder, key, classes = "cifar-10-batches-py", "labels", 10
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    else:
        folder, files, key, classes = "cifar-100-python", ["train", "test"], "fine_labels", 100
    src = tmp / "src" / folder
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    content = {}
    for f in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, n)]
        _pickle_batch(src / f, data, labels, key)
        content[f] = (data, labels)
    archive = tmp / f"{kind}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=folder)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), content


@pytest.fixture
def http_server(monkeypatch):
    """A local HTTP server: ``files[path] = bytes``; ``/partial`` sends a truncated body."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/partial":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"x" * 1000)
                return
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_download_verify_extract_and_load(tmp_path, http_server, kind):
    base, files = http_server
    archive, md5, content = make_fake_cifar(tmp_path, kind)
    files["/c.tar.gz"] = archive.read_bytes()
    root = tmp_path / "root"
    dm = build_datamodule(kind, root=root, download=True, url=f"{base}/c.tar.gz", md5=md5)
    dm.prepare_data()
    name = "cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz"
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    assert _leftovers(root) == [folder, name]
    train_files = [f for f in content if f not in ("test_batch", "test")]
    data = np.concatenate([content[f][0] for f in train_files])
    labels = sum((content[f][1] for f in train_files), [])
    x = dm.data.train_x
    assert x.shape == (len(labels), 32, 32, 3)
    # channel-major rows: 1024 red, 1024 green, 1024 blue, each row-major 32x32
    assert int(x[0, 0, 1, 0]) == int(data[0, 1]) and int(x[0, 0, 1, 2]) == int(data[0, 2048 + 1])
    assert int(x[1, 2, 0, 1]) == int(data[1, 1024 + 64])
    assert dm.data.train_y.tolist() == labels
    test_file = "test_batch" if kind == "cifar10" else "test"
    assert dm.data.test_y.tolist() == content[test_file][1]
    # a second module uses the extracted folder, without network
    again = build_datamodule(kind, root=root, download=True, url=f"{base}/missing", md5=md5)
    assert torch.equal(again.data.train_x, x)


def test_cifar_bad_checksum_leaves_nothing(tmp_path, http_server):
    base, files = http_server
    archive, md5, _ = make_fake_cifar(tmp_path)
    files["/c.tar.gz"] = archive.read_bytes()
    root = tmp_path / "root"
    dm = CIFAR10DataModule(root=root, download=True, url=f"{base}/c.tar.gz", md5="0" * 32)
    with pytest.raises(DownloadError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert f"checksum mismatch for {base}/c.tar.gz: md5 {md5}, expected {'0' * 32}" in msg
    assert f"put cifar-10-python.tar.gz (md5 {'0' * 32}, from {base}/c.tar.gz) into {root}" in msg
    assert _leftovers(root) == []


def test_truncated_download_leaves_no_partial_file(tmp_path, http_server):
    base, _ = http_server
    root = tmp_path / "root"
    dm = CIFAR10DataModule(root=root, download=True, url=f"{base}/partial", md5="0" * 32)
    with pytest.raises(DownloadError, match=f"could not download {base}/partial: connection closed after "
                                            "1000 of 100000 bytes"):
        dm.prepare_data()
    assert _leftovers(root) == []


def test_offline_and_missing_files_say_where_to_put_them(tmp_path, http_server):
    base, _ = http_server
    root = tmp_path / "root"
    with pytest.raises(DownloadError) as e:
        CIFAR10DataModule(root=root, download=True, url=f"{base}/nothing.tar.gz").prepare_data()
    assert "HTTP Error 404" in str(e.value) or "Not Found" in str(e.value)
    assert (f"into {root}, or extract it there so that {root}/cifar-10-batches-py/ holds data_batch_1"
            in str(e.value))
    assert _leftovers(root) == []
    with pytest.raises(DownloadError, match=r"could not download http://127.0.0.1:1/c.tar.gz: .*refused.*\. "
                                            r"To install CIFAR-10 by hand, put cifar-10-python.tar.gz"):
        CIFAR10DataModule(root=root, download=True, url="http://127.0.0.1:1/c.tar.gz").prepare_data()
    assert _leftovers(root) == []
    with pytest.raises(DataError) as e:
        CIFAR10DataModule(root=root).setup()
    assert str(e.value).startswith(f"CIFAR-10 not found: put cifar-10-python.tar.gz (md5 "
                                   f"c58f30108f718f92721af3b95e74349a, from "
                                   f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into {root}")
    assert str(e.value).endswith("or pass download=True to fetch it")


def test_local_archive_is_checked_and_extracted_without_download(tmp_path):
    archive, md5, content = make_fake_cifar(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes())
    dm = CIFAR10DataModule(root=root, md5=md5)
    assert dm.data.test_y.tolist() == content["test_batch"][1]
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    (root / "cifar-10-python.tar.gz").write_bytes(b"corrupt")
    with pytest.raises(DownloadError, match=r"cifar-10-python.tar.gz has md5 \w+, expected \w+ \(corrupt"):
        CIFAR10DataModule(root=root, md5=md5).setup()


def test_pickles_that_run_code_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    archive, md5, _ = make_fake_cifar(tmp_path / "a")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(DataError, match=r"test_batch is not a valid pickled data batch: global .*system is "
                                        r"not allowed"):
        CIFAR10DataModule(root=tmp_path).setup()


# ------------------------------------------------------------------------------------- ImageNet16
def test_imagenet16_pickles_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    content = {}
    for f in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        data = rng.integers(0, 256, (5, 768), dtype=np.uint8)
        labels = [1, 120, 121, 1000, 7]  # 1-indexed; only 1..120 belong to ImageNet16-120
        with (tmp_path / f).open("wb") as fh:
            pickle.dump({"data": data, "labels": labels, "mean": np.zeros(768)}, fh)
        content[f] = data
    dm = build_datamodule("imagenet16", root=tmp_path, valid_fraction=0.0)
    d = dm.data
    assert d.train_x.shape == (30, 16, 16, 3) and d.test_x.shape == (3, 16, 16, 3)
    assert d.train_y.tolist() == [0, 119, 6] * 10 and d.test_y.tolist() == [0, 119, 6]
    src = content["train_data_batch_1"]
    assert int(d.train_x[1, 3, 5, 2]) == int(src[1, 512 + 3 * 16 + 5])  # kept row 1 = original row 1
    assert int(d.train_x[2, 0, 0, 1]) == int(src[4, 256])  # kept row 2 = original row 4
    assert (dm.num_classes, dm.input_shape) == (120, (3, 16, 16))


def test_imagenet16_missing_files_named(tmp_path):
    (tmp_path / "train_data_batch_1").write_bytes(b"")
    with pytest.raises(DataError) as e:
        build_datamodule("imagenet16", root=tmp_path).setup()
    msg = str(e.value)
    assert msg.startswith(f"ImageNet16-120 files not found in {tmp_path}: missing train_data_batch_2, ")
    assert "val_data" in msg and "cannot be downloaded automatically" in msg


# --------------------------------------------------------------------------------------------- npz
def test_npz_round_trip_and_stats(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    y = np.arange(20) % 3
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:6], y=y[:6])
    dm = build_datamodule("npz", root=tmp_path, train_file="train.npz", test_file="test.npz")
    assert np.array_equal(dm.data.train_x.numpy(), x) and dm.data.train_y.tolist() == y.tolist()
    assert np.array_equal(dm.data.test_x.numpy(), x[:6])
    assert (dm.num_classes, dm.input_shape) == (3, (3, 4, 4))
    assert dm.mean == pytest.approx((x / 255.0).mean(axis=(0, 1, 2)).tolist())
    b = dm.scoring_batch(6, seed=0, mode="per_class")
    assert torch.bincount(b.y).tolist() == [2, 2, 2]


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match="npz file not found: .*nope.npz"):
        _ = build_datamodule("npz", train_file=tmp_path / "nope.npz").data
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"a.npz lacks array\(s\) \['x', 'y'\]; it has \['images'\]"):
        _ = build_datamodule("npz", train_file=tmp_path / "a.npz").data
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 3, 8, 8), np.uint8), y=np.zeros(2, int))
    with pytest.raises(DataError, match=r"images look channel-first \(2, 3, 8, 8\); expected \(N, H, W, C\)"):
        _ = build_datamodule("npz", train_file=tmp_path / "b.npz").data
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 8, 8, 3), np.float32), y=np.zeros(2, int))
    with pytest.raises(DataError, match="'x' must be uint8"):
        _ = build_datamodule("npz", train_file=tmp_path / "c.npz").data
    with pytest.raises(DataError, match="npz data needs train_file="):
        build_datamodule("npz")


# ------------------------------------------------------------------------------------- ImageFolder
def make_folder(root: Path, sizes=None) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    rng = np.random.default_rng(3)
    made: dict[str, list[np.ndarray]] = {}
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("dog", "cat"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                h, w = (sizes or {}).get((split, cls, i), (6, 5))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
                made.setdefault(f"{split}/{cls}", []).append(arr)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return made


def test_imagefolder_decodes_then_reads_cache(tmp_path, monkeypatch, caplog):
    made = make_folder(tmp_path / "data")
    kw = {"root": tmp_path / "data", "cache_dir": tmp_path / "cache", "decode_workers": 1}
    dm = build_datamodule("imagefolder", **kw)
    d = dm.data
    assert dm.classes == ("cat", "dog")
    assert d.train_y.tolist() == [0, 0, 0, 1, 1, 1] and d.test_y.tolist() == [0, 1]
    assert np.array_equal(d.train_x[3].numpy(), made["train/dog"][0])
    assert np.array_equal(d.test_x[0].numpy(), made["test/cat"][0])
    assert (dm.num_classes, dm.input_shape) == (2, (3, 6, 5))
    cache = dm.cache_path()
    assert cache.parent == tmp_path / "cache" / "imagefolder"
    assert sorted(p.name for p in cache.iterdir()) == ["meta.json", "test_x.npy", "test_y.npy", "train_x.npy",
                                                        "train_y.npy"]
    mean = dm.mean

    def no_decode(*a, **k):
        raise AssertionError("decoded again although the cache exists")

    monkeypatch.setattr(imagefolder_mod, "decode_images", no_decode)

    def no_scan(*a, **k):
        raise AssertionError("listed the folder again in the same process")

    with monkeypatch.context() as m:  # the same process: neither the folder nor the cache is read again
        m.setattr(imagefolder_mod, "scan_split", no_scan)
        same = build_datamodule("imagefolder", **kw)
        same.prepare_data()
        assert same.data.train_x is d.train_x
    imagefolder_mod.forget_read_folders()  # as a new process: the cache, not the images
    with caplog.at_level(logging.INFO, logger="hnas.data.imagefolder"):
        again = build_datamodule("imagefolder", **kw)
        assert torch.equal(again.data.train_x, d.train_x) and again.mean == pytest.approx(mean)
    assert "from cache" in caplog.text
    # a changed folder gets a new cache key
    from PIL import Image
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "data" / "train" / "dog" / "9.png")
    assert build_datamodule("imagefolder", **kw).cache_path() != cache


def test_imagefolder_bad_layouts(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        build_datamodule("imagefolder", root=tmp_path / "flat")
    assert str(e.value) == (f"{tmp_path / 'flat'} is not an image folder dataset: expected "
                            "root/train/<class>/*.jpg|jpeg|png (and optionally root/test/<class>/...)")
    (tmp_path / "empty" / "train" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder\(s\) \['cls'\] under .* hold no"):
        _ = build_datamodule("imagefolder", root=tmp_path / "empty", cache_dir=tmp_path / "c").data
    make_folder(tmp_path / "mixed", sizes={("train", "dog", 1): (7, 5)})
    with pytest.raises(DataError, match=r"differ in size .*pass image_size=\(H, W\) to resize"):
        _ = build_datamodule("imagefolder", root=tmp_path / "mixed", cache_dir=tmp_path / "c",
                             decode_workers=1).data
    resized = build_datamodule("imagefolder", root=tmp_path / "mixed", cache_dir=tmp_path / "c",
                               decode_workers=1, image_size=(4, 4))
    assert resized.input_shape == (3, 4, 4)
    assert not list((tmp_path / "c" / "imagefolder").glob(".*"))  # no temporary cache folder left behind


def test_shared_cifar10_folder_layout(shared_data):
    """Fast: scans the 60,000 files (no decoding)."""
    dm = build_datamodule("imagefolder", root=shared_data / "cifar10")
    classes, train, test = dm._scan()
    assert classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                       "truck"]
    assert len(train) == 50_000 and len(test) == 10_000
    assert np.bincount([lab for _, lab, _ in train]).tolist() == [5000] * 10


@pytest.mark.slow
def test_shared_cifar10_decode_and_stats(shared_data):
    """Decodes (or reads the cache of) the shared CIFAR-10 JPEGs: a few minutes the first time."""
    dm = build_datamodule("imagefolder", root=shared_data / "cifar10")
    dm.setup()
    assert dm.data.train_x.shape == (50_000, 32, 32, 3) and dm.data.test_x.shape == (10_000, 32, 32, 3)
    assert torch.bincount(dm.data.test_y).tolist() == [1000] * 10
    # JPEG re-encoding: close to the official CIFAR-10 statistics (std about 1 % lower)
    assert dm.mean == pytest.approx(CIFAR10DataModule.MEAN, abs=0.01)
    assert dm.std == pytest.approx(CIFAR10DataModule.STD, rel=0.03)
    b = dm.scoring_batch(100, seed=0, mode="per_class")
    assert torch.bincount(b.y).tolist() == [10] * 10


def test_fingerprint_is_a_content_hash():
    """Not Python's per-process hash(): recompute it from the chosen images and the draw."""
    dm = synthetic()
    b = dm.scoring_batch(8, seed=0)
    train = dm.split_indices("train")
    idx = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:8]]
    x, y = dm.data.train_x[idx], dm.data.train_y[idx]
    h = hashlib.sha256(f"synthetic|n=8|seed=0|mode=random|split=train|mean={tuple(dm.mean)}|"
                       f"std={tuple(dm.std)}".encode())
    for part in (str(tuple(x.shape)).encode(), x.numpy().tobytes(), y.numpy().tobytes()):
        h.update(part)
    assert b.fingerprint == h.hexdigest()[:16]
    assert torch.equal(b.x, normalize(x, dm.mean, dm.std)) and torch.equal(b.y, y)


def test_evaluation_loaders_prefix_is_class_mixed():
    """A limited validation (limit_val_batches) must see every class, even when files are class-sorted."""
    import numpy as np

    from hnas.data import build_datamodule

    def make(tmp):
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(10), 40)  # class-sorted, like an image folder read class by class
        x = rng.integers(0, 256, (400, 8, 8, 3), dtype=np.uint8)
        np.savez(tmp / "tr.npz", x=x, y=y)
        np.savez(tmp / "te.npz", x=x[:200], y=np.repeat(np.arange(10), 20))
        dm = build_datamodule("npz", train_file=str(tmp / "tr.npz"), test_file=str(tmp / "te.npz"),
                              batch_size=20, augment=False)
        dm.setup()
        return dm

    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    dm = make(tmp)
    first_val = next(iter(dm.val_dataloader()))[1]
    first_test = next(iter(dm.test_dataloader()))[1]
    assert len(set(first_val.tolist())) >= 5 and len(set(first_test.tolist())) >= 5
    # deterministic: the same split and order on a second build
    again = make(tmp)
    assert torch.equal(dm.split_indices("valid"), again.split_indices("valid"))
