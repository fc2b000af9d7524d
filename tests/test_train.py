"""``hnas train``: the recipes' values and network sizes, a tiny fit's checkpoint/result.json/W&B artifact, an
exact resume after SIGKILL mid-epoch, two DDP ranks writing one result, the architecture sources and the
``train_best`` hook of a search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import wandb_log_bytes
from hydra import compose, initialize_config_module
from test_run import write_fake_nb201

from hnas.cli import exits_on_user_error
from hnas.experiment.arch_source import ArchSourceError, arch_of_result, arch_source
from hnas.experiment.final import DEFAULT_RECIPES, inference_parameters, train_dir_name, train_final
from hnas.experiment.runner import run_experiment
from hnas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
#: a tiny NB201 cell (C=4, N=1) on 8x8 synthetic images at batch 16


def tiny(num_train: int = 64, epochs: int = 2, *extra: str) -> list[str]:
    return ["data=synthetic", f"+data.num_train={num_train}", "+data.num_test=32", "+data.shape=[3,8,8]",
            "data.batch_size=16", "space.build.C=4", "space.build.N=1", f"recipe.epochs={epochs}", "trainer=cpu",
            "logger=none", *extra]


TINY = tiny()


def cfg(overrides: list[str], name: str = "train"):
    with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
        return compose(name, overrides=overrides)


# --- recipes ---------------------------------------------------------------------------------------------
def test_every_recipe_holds_the_published_values():
    nb = cfg([])
    assert nb.recipe.name == "nb201" and nb.space.name == "nb201" and dict(nb.space.build) == {"C": 16, "N": 5}
    r, d = nb.recipe, nb.data
    assert (r.epochs, r.lr, r.lr_min, r.momentum, r.nesterov, r.weight_decay, r.schedule) == (
        200, 0.1, 0.0, 0.9, True, 5e-4, "cosine")
    assert (d.batch_size, d.crop_padding, d.flip_p, d.augment, d.cutout, d.valid_fraction) == (
        256, 4, 0.5, True, 0, 0.0)

    c10 = cfg(["recipe=darts_cifar10"])
    r, d, b = c10.recipe, c10.data, c10.space.build
    assert c10.space.name == "darts" and (b.network, b.C, b.layers, b.auxiliary) == ("cifar", 36, 20, True)
    assert (r.epochs, r.lr, r.lr_min, r.momentum, r.nesterov, r.weight_decay, r.schedule, r.lr_interval) == (
        600, 0.025, 0.0, 0.9, False, 3e-4, "cosine", "epoch")
    assert (r.auxiliary_weight, r.drop_path, r.gradient_clip_val) == (0.4, 0.2, 5.0)
    assert (d.name, d.batch_size, d.cutout, d.crop_padding, d.flip_p) == ("cifar10", 96, 16, 4, 0.5)

    c100 = cfg(["recipe=darts_cifar100"])
    r = c100.recipe
    assert c100.data.name == "cifar100" and c100.space.build.C == 36 and c100.data.cutout == 16
    assert (r.lr, r.lr_min, r.auxiliary_weight, r.drop_path, r.epochs, r.gradient_clip_val, r.weight_decay) == (
        0.035, 1e-4, 0.6, 0.3, 600, 5.0, 3e-4)

    inet = cfg(["recipe=darts_imagenet", "data.root=/imagenet"])
    r, b = inet.recipe, inet.space.build
    assert inet.data.name == "imagefolder" and inet.data.batch_size == 1024
    assert (b.network, b.C, b.layers, b.auxiliary) == ("imagenet", 48, 14, True)
    assert (r.epochs, r.lr, r.schedule, r.weight_decay, r.label_smoothing, r.auxiliary_weight) == (
        250, 0.5, "linear", 3e-5, 0.1, 0.4)
    # a command-line data group still wins over a recipe's
    assert cfg(["recipe=darts_cifar100", "data=synthetic"]).data.name == "synthetic"
    assert set(DEFAULT_RECIPES.values()) <= {p.stem for p in (ROOT / "hnas/conf/recipe").glob("*.yaml")}


@pytest.mark.parametrize("recipe,classes,params", [
    ("darts_cifar10", 10, 3_349_342), ("darts_cifar100", 100, 3_401_272), ("darts_imagenet", 1000, 4_718_752)])
def test_darts_recipes_build_the_reference_network_sizes(recipe, classes, params):
    """methods.md §9: DARTS_V2 in the recipe's network (auxiliary head built, not counted)."""
    c = cfg([f"recipe={recipe}", "data.root=x"])
    space = get_space("darts", sampling=c.space.sampling)
    net = space.build(DARTS_V2, num_classes=classes, **c.space.build)
    assert net.auxiliary_head is not None and inference_parameters(net) == params


def test_precision_auto_is_bf16_where_the_gpu_has_it_and_an_explicit_value_wins(monkeypatch):
    from hnas.training.precision import resolve_precision, resolve_trainer_precision

    assert resolve_precision("auto", "cpu") == "32-true" and resolve_precision(None, "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed" and resolve_precision(None, "auto") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"  # a CPU trainer on a GPU machine stays float32
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"  # explicit wins
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100
    assert resolve_trainer_precision({"accelerator": "gpu", "precision": "auto"})["precision"] == "16-mixed"
    assert cfg(["trainer=gpu"]).trainer.precision == "auto" and cfg(["trainer=ddp_train"]).trainer.strategy == "ddp"


# --- one tiny fit ----------------------------------------------------------------------------------------
def test_tiny_fit_writes_checkpoints_result_and_a_wandb_artifact(tmp_path):
    out = tmp_path / "run"
    c = cfg([f"arch='{CELL}'", *tiny(64, 2, "logger=wandb")])
    r = train_final(c, out)
    assert r["arch"] == CELL and r["epochs"] == 2 and r["steps"] == 2 * 4 and r["world_size"] == 1
    assert r["precision"] == "32-true" and 0.0 <= r["test"]["top1"] <= 100.0 and r["test"]["top5"] >= r["test"]["top1"]
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["test"] == r["test"] and on_disk["weights_digest"] == r["weights_digest"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)  # RNG states load as plain data
    assert ckpt["epoch"] == 1 and len(ckpt["hnas_rng_states"]) == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch0001.ckpt", "last.ckpt"]
    weights = torch.load(out / "model.pt", weights_only=True)
    assert weights["arch"] == CELL and weights["build_kwargs"] == {"C": 4, "N": 1}
    net = get_space("nb201").build(CELL, num_classes=10, C=4, N=1)
    net.load_state_dict(weights["state_dict"])  # the saved weights rebuild the network
    wanted = [b"model-train-nb201-run", b"val/acc", b"test/top1"]
    blob = wandb_log_bytes("offline-run-*/run-*.wandb", out / "wandb", wanted)
    assert all(w in blob for w in wanted)


def test_sigkill_mid_epoch_then_the_same_command_ends_with_the_same_weights(tmp_path):
    over = [f"arch='{CELL}'", *tiny(1536, 3)]  # 96 steps per epoch, 3 epochs
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "hnas", "train", *over, f"hydra.run.dir={tmp_path / 'k'}"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "k" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists():
        if proc.poll() is not None:
            pytest.fail(f"the fit ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint in 300 s")
        time.sleep(0.02)
    time.sleep(0.15)  # into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] == 0 and not (tmp_path / "k" / "result.json").exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "k" / "result.json").read_text())
    assert resumed["resumed_from"] == str(last) and resumed["epochs"] == 3 and resumed["steps"] == 3 * 96
    straight = train_final(cfg(over), tmp_path / "straight")
    assert straight["resumed_from"] is None and resumed["weights_digest"] == straight["weights_digest"]
    assert resumed["test"] == straight["test"]


def test_ddp_sim_trains_on_two_processes_and_writes_one_result(tmp_path):
    out = tmp_path / "ddp"
    r = train_final(cfg([f"arch='{CELL}'", *tiny(64, 1, "trainer=ddp_sim")]), out)
    assert r["world_size"] == 2 and r["steps"] == 2 and r["epochs"] == 1  # 64 images / 2 ranks / batch 16
    assert [p.relative_to(out) for p in out.rglob("result.json")] == [Path("result.json")]
    assert len(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["hnas_rng_states"]) == 2
    assert 0.0 <= r["test"]["top1"] <= 100.0


# --- where the architecture comes from ---------------------------------------------------------------------
class FakeArtifact:
    def __init__(self, files: dict[str, str], metadata: dict) -> None:
        self.files, self.metadata = files, metadata

    def download(self, root: str) -> str:
        for name, text in self.files.items():
            (Path(root) / name).write_text(text)
        return root


class FakeApi:
    def __init__(self, artifact: FakeArtifact) -> None:
        self._artifact = artifact
        self.asked: list[str] = []

    def artifact(self, ref: str) -> FakeArtifact:
        self.asked.append(ref)
        return self._artifact


def test_architecture_sources(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"space": "darts", "best": {"arch": DARTS_V2, "value": 90.0}}))
    spec = arch_of_result(result)
    assert (spec.arch, spec.space, spec.source) == (DARTS_V2, "darts", {"from_result": str(result)})
    assert arch_source(arch=6111).arch == 6111 and arch_source(arch=CELL).space is None
    api = FakeApi(FakeArtifact({"result.json": result.read_text()}, {}))
    spec = arch_source(from_artifact="me/hnas/best-arch:v3", api=api)
    assert api.asked == ["me/hnas/best-arch:v3"] and spec.arch == DARTS_V2 and spec.space == "darts"
    meta = FakeApi(FakeArtifact({}, {"arch": CELL, "space": "nb201"}))
    assert arch_source(from_artifact="me/hnas/x:latest", api=meta).arch == CELL
    for kwargs, message in [
        ({}, "no architecture to train: give arch="),
        ({"arch": CELL, "from_result": str(result)}, "give one architecture source, got arch, from_result"),
        ({"from_result": str(tmp_path / "nope.json")}, "no such file"),
        ({"from_artifact": "best-arch"}, "is not a W&B artifact reference entity/project/name:version"),
        ({"from_artifact": "me/hnas/x:v1", "api": FakeApi(FakeArtifact({}, {}))}, "holds no result.json"),
    ]:
        with pytest.raises(ArchSourceError, match=message.replace("(", r"\(")):
            arch_source(**kwargs)
    (tmp_path / "failed.json").write_text(json.dumps({"space": "nb201", "best": {"arch": None}}))
    with pytest.raises(ArchSourceError, match="has no best.arch"):
        arch_of_result(tmp_path / "failed.json")


def test_bad_training_configs_end_in_one_line(capsys, tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"space": "darts", "best": {"arch": DARTS_V2}}))
    cases = [
        ([f"from_result={result}"], "error: the architecture is in the darts space but recipe 'nb201' trains nb201 "
                                    "networks: add recipe=darts_cifar10"),
        ([f"arch='{CELL}'", "recipe.epochs=0"], "error: recipe.epochs must be an integer >= 1, got 0"),
        ([f"arch='{CELL}'", "+recipe.warmup=5"], "error: recipe has no key(s) ['warmup']"),
        (["arch=99999"], "error: nb201 index 99999 out of range; valid: 0..15624"),
        (["arch=6111", "checkpoint.keep=-3"], "error: checkpoint.keep must be an integer >= -1"),
    ]
    for overrides, expected in cases:
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as e:
            exits_on_user_error(train_final)(cfg([*TINY, *overrides]), out)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith(expected), err
        assert not out.exists() or not list(out.iterdir())  # nothing half-written


def test_the_run_folder_is_named_after_what_is_trained():
    a = train_dir_name(cfg([f"arch='{CELL}'", *TINY]))
    assert a == train_dir_name(cfg([f"arch='{CELL}'", *TINY, "trainer=ddp_sim", "logger=csv"]))  # how, not what
    assert a != train_dir_name(cfg([f"arch='{CELL}'", *tiny(64, 4)]))
    assert a.startswith("seed0-") and train_dir_name(cfg([f"arch='{CELL}'", *TINY, "seed=1"])).startswith("seed1-")


def test_train_best_trains_the_searchs_best_architecture(tmp_path):
    table = write_fake_nb201(tmp_path / "nb201.csv")
    over = ["+experiment=nb201_cifar10", f"benchmark.path={table}", f"store={tmp_path / 's.sqlite'}", "logger=none",
            "strategy=random", "strategy.budget=3", "plot=false", "train_best=true", "data=synthetic",
            "+data.num_train=32", "+data.num_test=16", "+data.shape=[3,8,8]",
            'train.overrides=["recipe.epochs=1","space.build.C=4","space.build.N=1","data.batch_size=16"]']
    r = run_experiment(cfg(over, "run"), tmp_path / "search")
    trained = json.loads((tmp_path / "search" / "train" / "result.json").read_text())
    assert trained["arch"] == r["best"]["arch"] and trained["recipe"]["name"] == "nb201"
    assert trained["data"]["batch_size"] == 16 and trained["data"]["num_train"] == 32 and trained["steps"] == 2
    assert r["train"]["test"] == trained["test"]
    assert json.loads((tmp_path / "search" / "result.json").read_text())["train"]["epochs"] == 1
