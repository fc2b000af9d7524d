#!/usr/bin/env bash
# prepare_offline.sh -- run on a machine WITH a package index (and ../shared/data): fills the two ignored folders
# that gpu_check.sh (and hnas itself) need on an air-gapped GPU node, where only the project tree travels.
#
#   launch/wheels/  hydra-core, omegaconf, antlr4-python3-runtime (built as a wheel: PyPI has only its sdist),
#                   wandb and their dependencies                                                    (~27 MB)
#   launch/data/    cifar10_train.npz (9,000 training images, 900 per class) + cifar10_test.npz (1,000 test
#                   images, 100 per class), uint8 NHWC, compressed                                    (~28 MB)
#                   nb201.csv (the compact NAS-Bench-201 table)                                       (6.6 MB)
#
#   bash launch/prepare_offline.sh [--no-wandb]
# Env: PYTHON (python3), HNAS_SHARED_DATA (../shared/data), HNAS_NPZ_TRAIN / HNAS_NPZ_TEST (9000 / 1000 images),
#      HNAS_WHEEL_PLATFORM + HNAS_WHEEL_PYTHON: the GPU node's platform tag and Python version when they differ
#      from this machine's (e.g. manylinux2014_x86_64 and 3.10); default: wheels for this machine.
# Everything that travels (tree + these folders) should stay under 64 MB: the sizes are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
SHARED=${HNAS_SHARED_DATA:-$ROOT/../shared/data}
WANDB=1
[[ "${1:-}" == "--no-wandb" ]] && WANDB=0
mkdir -p launch/wheels launch/data

# --- wheels -------------------------------------------------------------------------------------------------
$PY -m pip wheel -q --no-deps -w launch/wheels "antlr4-python3-runtime==4.9.*"
PLATFORM=()
if [[ -n "${HNAS_WHEEL_PLATFORM:-}" ]]; then
    PLATFORM=(--platform "$HNAS_WHEEL_PLATFORM" --python-version "${HNAS_WHEEL_PYTHON:?set HNAS_WHEEL_PYTHON too}"
              --implementation cp)
fi
PKGS=(hydra-core omegaconf)
[[ $WANDB == 1 ]] && PKGS+=(wandb)
$PY -m pip download -q -d launch/wheels --only-binary=:all: --find-links launch/wheels "${PLATFORM[@]}" "${PKGS[@]}"

# --- data: a stratified CIFAR-10 subset as .npz + the NB201 table ----------------------------------------------
[[ -f $SHARED/nb201/nb201.csv ]] || { echo "error: no $SHARED/nb201/nb201.csv (set HNAS_SHARED_DATA)" >&2; exit 2; }
install -m 0644 "$SHARED/nb201/nb201.csv" launch/data/nb201.csv
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" $PY - "$SHARED/cifar10" launch/data "${HNAS_NPZ_TRAIN:-9000}" \
    "${HNAS_NPZ_TEST:-1000}" <<'PYEOF'
"""Pick n/10 images per class (seeded) from the CIFAR-10 image folder's train and test splits."""
import sys
from pathlib import Path

import numpy as np

from hnas.data import build_datamodule

root, out, n_train, n_test = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = build_datamodule("imagefolder", root=root).data
rng = np.random.default_rng(0)
for split, x, y, n in (("train", data.train_x, data.train_y, n_train), ("test", data.test_x, data.test_y, n_test)):
    x, y = x.numpy(), y.numpy()
    classes = np.unique(y)
    per = n // len(classes)
    pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]))
    np.savez_compressed(out / f"cifar10_{split}.npz", x=x[pick], y=y[pick].astype(np.int64))
    print(f"cifar10_{split}.npz: {len(pick)} images ({per} per class) of {len(y)}")
PYEOF

du -sh launch/wheels launch/data
total=$(du -sck launch/wheels launch/data $(git ls-files 2>/dev/null || echo .) 2>/dev/null | tail -1 | cut -f1)
echo "what travels (tree + launch/wheels + launch/data): $((total / 1024)) MB"
if (( total > 64 * 1024 )); then
    echo "warning: over 64 MB; use --no-wandb or smaller HNAS_NPZ_TRAIN" >&2
fi
