"""launch/: gpu_check.sh rehearsed in tiny mode on the CPU (every figure line printed), the scoring device
option it relies on, and the shell scripts' syntax."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hnas.errors import ConfigError
from hnas.proxies.settings import ScoringSettings

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["launch/gpu_check.sh", "launch/prepare_offline.sh", "launch/torchrun.sh", "launch/slurm/search.sbatch",
           "launch/slurm/train_multinode.sbatch"]


@pytest.mark.slow  # about a minute: the rehearsal of the GPU script (make test-all runs it)
def test_gpu_check_tiny_prints_every_figure(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "HNAS_GPU_CHECK_OUT": str(tmp_path / "out"),
           "HNAS_GPU_CHECK_DATA": str(tmp_path / "no-data"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "launch/gpu_check.sh", "--tiny"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = dict(re.findall(r"^FIGURE (\w+): (.*)$", proc.stdout, flags=re.M))
    assert list(figures) == ["gpu", "scoring_one", "scoring_many", "agreement", "warmup", "ntk_pair", "darts_scoring",
                             "darts_query", "train_epoch", "total"], proc.stdout
    assert figures["agreement"].startswith("CPU vs CPU (rehearsal: no GPU) on 4 NB201 archs (no TF32): grad_norm rho")
    assert not [f for f in figures.values() if "FAILED" in f], proc.stdout
    assert figures["gpu"].startswith("none (CPU only), torch ")
    assert re.match(r"six proxies x 4 NB201 archs, one process: [0-9.]+ arch/s", figures["scoring_one"])
    assert re.match(r"six proxies x 6 NB201 archs, 2 scorer processes on one device: [0-9.]+ arch/s",
                    figures["scoring_many"])
    # the extrapolation counts distinct networks: the whole space holds 5,425 (isomorphic cells share a key)
    assert "-> the whole NB201 space (5,425 distinct networks) in " in figures["scoring_one"]
    assert re.match(r"[0-9.]+ s per arch over 2 NB201 archs", figures["ntk_pair"])
    assert re.match(r"the NTK pair x 2 DARTS genotypes, 2 scorer processes: [0-9.]+ genotypes/s",
                    figures["darts_scoring"])
    assert re.match(r"[0-9.]+ s for 2 steps at batch 16 -> [0-9.]+ s per 25,000-image epoch", figures["darts_query"])
    assert re.match(r"[0-9.]+ s for 3 steps at batch 16", figures["warmup"])
    assert re.match(r"hnas train NB201 #6111 \(32-true, batch 16\): 64 images in [0-9.]+ s", figures["train_epoch"])
    assert "synthetic images" in figures["total"]
    # each scoring run filled its own store, every architecture and proxy computed once; the workers' scores went
    # through the driver
    from hnas.store import Store

    assert Store(tmp_path / "out" / "score_one.sqlite").count_scores() == 4 * 6
    assert Store(tmp_path / "out" / "score_many.sqlite").count_scores() == 6 * 6
    assert Store(tmp_path / "out" / "store.sqlite").count_scores() == 2 * 2  # NTK pool; random scores none
    assert Store(tmp_path / "out" / "agree.sqlite").count_scores() == 4 * 6  # the second CPU pass read them
    assert Store(tmp_path / "out" / "darts.sqlite").count_scores() == 2 * 2


def test_scoring_device_option():
    assert ScoringSettings().torch_device is None  # the CPU, where the networks are built
    assert str(ScoringSettings(device="cpu").torch_device) == "cpu"
    assert ScoringSettings.from_config({"device": "auto"}).torch_device.type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="proxies.device 'gpu0' is not a torch device"):
        ScoringSettings(device="gpu0")


@pytest.mark.parametrize("script", SCRIPTS)
def test_launch_scripts_parse(script):
    assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0


def test_offline_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"launch/wheels/", "launch/data/", "launch/site/", "launch/out/"} <= set(ignored)
