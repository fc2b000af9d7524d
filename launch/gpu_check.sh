#!/usr/bin/env bash
# gpu_check.sh -- the GPU figures of docs/results.md, measured from the project tree alone (< 8 min on one H200).
#
#   bash launch/gpu_check.sh           on the GPU node (air-gapped is fine: see launch/prepare_offline.sh)
#   bash launch/gpu_check.sh --tiny    a rehearsal in about a minute on a CPU (tiny sizes; tests/test_launch.py)
#
# Prints one `FIGURE name: ...` line per figure (copy them into docs/results.md with the GPU's name):
#   gpu             the device, torch/CUDA versions, bf16 support
#   scoring         six-proxy (RoBoT's grad_norm, snip, grasp, fisher, synflow, jacob_cov) scoring throughput of
#                   the NB201 space: `hnas score` shards (pool.shard=i/K) filling one store side by side on the GPU
#   ntk_pair        seconds per architecture of HNAS's NTK pair (ntk_trace + ntk_cond), Spearman vs the table
#   warmup          one 12-epoch NB201 warm-up at batch 256 (1,176 steps = 12 epochs of the 25,000-image train
#                   half), `hnas run`'s training evaluator, precision auto (bf16 where supported)
#   train_epoch     `hnas train` of NB201 #6111, recipe nb201, bf16: seconds per 50,000-image CIFAR-10 epoch
#   total           the script's wall time
# Data: launch/data/ (made by prepare_offline.sh: a 10,000-image CIFAR-10 subset as uint8 .npz + the NB201
# table) or, when absent, synthetic images (throughput figures only; accuracies then mean nothing).
# Env: PYTHON (python3), HNAS_GPU_CHECK_TINY=1 (= --tiny), HNAS_GPU_CHECK_OUT (output folder),
#      HNAS_GPU_CHECK_DATA (launch/data), HNAS_GPU_CHECK_POOL / _SHARDS / _NTK_ARCHS (1000 / 4 / 200).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TINY=${HNAS_GPU_CHECK_TINY:-0}
[[ "${1:-}" == "--tiny" ]] && TINY=1
PY=${PYTHON:-python3}
OUT=${HNAS_GPU_CHECK_OUT:-$ROOT/launch/out/gpu_check-$(date +%Y%m%d-%H%M%S)}
DATA_DIR=${HNAS_GPU_CHECK_DATA:-$ROOT/launch/data}
START=$(date +%s.%N)
mkdir -p "$OUT"
export PYTHONPATH="$ROOT:$ROOT/launch/site${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE=offline WANDB_SILENT=true HNAS_CACHE_DIR="$OUT/cache" HYDRA_FULL_ERROR=1
note() { echo "[gpu_check] $*" >&2; }
now() { date +%s.%N; }
elapsed() { $PY -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# --- 0. packages: hydra-core/omegaconf (required), wandb (optional) from launch/wheels into launch/site -----
if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then
    if [[ ! -d launch/wheels ]]; then
        echo "error: hydra-core/omegaconf are not installed and launch/wheels/ is missing: run" \
             "launch/prepare_offline.sh on a machine with a package index and copy launch/ over" >&2
        exit 2
    fi
    note "installing hydra-core, omegaconf from launch/wheels into launch/site"
    $PY -m pip install -q --no-index --no-deps --find-links launch/wheels --target launch/site \
        hydra-core omegaconf antlr4-python3-runtime
fi
if ! $PY -c "import wandb" 2>/dev/null && ls launch/wheels/wandb-*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --find-links launch/wheels --target launch/site wandb \
        || note "wandb could not be installed (not needed here: every step runs with logger=none)"
fi

# --- sizes ----------------------------------------------------------------------------------------------
if [[ $TINY == 1 ]]; then
    POOL=${HNAS_GPU_CHECK_POOL:-4}; SHARDS=${HNAS_GPU_CHECK_SHARDS:-2}; NTK=${HNAS_GPU_CHECK_NTK_ARCHS:-2}
    WARM_STEPS=3; WARM_BATCH=16; TRAIN_EPOCHS=1; TRAIN_BATCH=16
    NET=(space.build.C=4 space.build.N=1); PROXY_BATCH=(proxies.batch.size=16)
    SYNTH=(data=synthetic +data.num_train=64 +data.num_test=32 "+data.shape=[3,16,16]")
else
    POOL=${HNAS_GPU_CHECK_POOL:-1000}; SHARDS=${HNAS_GPU_CHECK_SHARDS:-4}; NTK=${HNAS_GPU_CHECK_NTK_ARCHS:-200}
    WARM_STEPS=1176; WARM_BATCH=256; TRAIN_EPOCHS=6; TRAIN_BATCH=256
    NET=(); PROXY_BATCH=()
    SYNTH=(data=synthetic +data.num_train=9000 +data.num_test=1000)
fi
if [[ -f $DATA_DIR/cifar10_train.npz && -f $DATA_DIR/cifar10_test.npz ]]; then
    DATA=(data=npz "data.root=$DATA_DIR" +data.train_file=cifar10_train.npz +data.test_file=cifar10_test.npz)
    DATA_NOTE="CIFAR-10 subset $DATA_DIR"
else
    DATA=("${SYNTH[@]}")
    DATA_NOTE="synthetic images (no $DATA_DIR/cifar10_*.npz)"
fi
if [[ -f $DATA_DIR/nb201.csv ]]; then
    BENCH=("benchmark.path=$DATA_DIR/nb201.csv" target=cifar10_test)
else
    BENCH=(benchmark=none target=null)
fi
# CPU threads per scoring process: the cores shared out (OpenMP threads that outnumber free cores spin-wait and
# slow small kernels down by 10x or more); one in tiny mode, which runs on loaded CPUs
THREADS=${HNAS_GPU_CHECK_THREADS:-$([[ $TINY == 1 ]] && echo 1 || echo $(( $(nproc) / SHARDS > 0 ? $(nproc) / SHARDS : 1 )))}
note "output $OUT; data: $DATA_NOTE; tiny=$TINY; $THREADS CPU thread(s) per scoring process"

# --- 1. the device --------------------------------------------------------------------------------------
$PY - <<'PYEOF'
import torch
if torch.cuda.is_available():
    name = torch.cuda.get_device_name(0)
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30
    print(f"FIGURE gpu: {name} ({mem:.0f} GiB) x {torch.cuda.device_count()}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
else:
    print(f"FIGURE gpu: none (CPU only), torch {torch.__version__}")
PYEOF

# --- 2. six-proxy scoring: SHARDS processes fill one store -------------------------------------------------
SIX="[grad_norm,snip,grasp,fisher,synflow,jacob_cov]"
t0=$(now)
pids=()
for i in $(seq 1 "$SHARDS"); do
    OMP_NUM_THREADS=$THREADS $PY -m hnas score "${DATA[@]}" "${NET[@]}" "${PROXY_BATCH[@]}" pool.size="$POOL" pool.seed=0 \
        pool.shard="$i/$SHARDS" "proxies.names=$SIX" proxies.device=auto benchmark=none target=null \
        timing_archs=0 plots=false "store=$OUT/store.sqlite" "hydra.run.dir=$OUT/score/shard$i" \
        > "$OUT/score_shard$i.log" 2>&1 &
    pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
t1=$(now)
if [[ $fail == 0 ]]; then
    $PY - "$OUT" "$POOL" "$SHARDS" "$(elapsed "$t0" "$t1")" <<'PYEOF'
import json, re, sys
from pathlib import Path
out, pool, shards, wall = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ready = [float(m.group(1)) for i in range(1, shards + 1)
         for m in re.finditer(r"proxy scores of \d+ architectures ready in ([0-9.]+) s",
                              (out / f"score_shard{i}.log").read_text())]
failed = {}
medians = {}
for i in range(1, shards + 1):
    r = json.loads((out / "score" / f"shard{i}" / "result.json").read_text())
    for name, e in r["proxies"].items():
        failed[name] = failed.get(name, 0) + e["n_failed"]
        medians.setdefault(name, []).append(e["median_s"] or 0.0)
scoring = max(ready) if ready else float("nan")
per = ", ".join(f"{k} {sum(v) / len(v) * 1000:.0f} ms" for k, v in medians.items())
print(f"FIGURE scoring: six proxies x {pool} NB201 archs on {shards} processes: {pool / wall:.1f} arch/s "
      f"including process start ({wall:.0f} s wall), {pool / scoring:.1f} arch/s scoring only ({scoring:.0f} s); "
      f"median per arch: {per}; failed or non-finite scores: {sum(failed.values())}")
PYEOF
else
    echo "FIGURE scoring: FAILED (see $OUT/score_shard*.log)"
fi

# --- 2b. GPU vs CPU agreement: the six proxies on AGREE architectures, scored on each device (own cache keys) ---
AGREE=${HNAS_GPU_CHECK_AGREE:-$([[ $TINY == 1 ]] && echo 4 || echo 50)}
OTHER=cuda  # the tiny CPU rehearsal compares CPU with CPU (identical by construction) to run the comparison code
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || OTHER=$([[ $TINY == 1 ]] && echo cpu || echo none)
if [[ $OTHER != none ]]; then
    ok=1
    for dev in cpu $OTHER; do
        OMP_NUM_THREADS=$(( $(nproc) > 1 ? $(nproc) / 2 : 1 )) $PY -m hnas score "${DATA[@]}" "${NET[@]}" \
            "${PROXY_BATCH[@]}" pool.size="$AGREE" pool.seed=3 "proxies.names=$SIX" proxies.device=$dev \
            benchmark=none target=null timing_archs=0 plots=false "store=$OUT/agree.sqlite" \
            "hydra.run.dir=$OUT/agree_$dev$([[ $dev == cpu && -d $OUT/agree_cpu ]] && echo 2)" \
            > "$OUT/agree_$dev.log" 2>&1 || ok=0
    done
    if [[ $ok == 1 ]]; then
        $PY - "$OUT" "$OTHER" <<'PYEOF'
import sys
import numpy as np
import pandas as pd
from scipy import stats
out, other = sys.argv[1], sys.argv[2]
cpu = pd.read_csv(f"{out}/agree_cpu/scores.csv")
gpu = pd.read_csv(f"{out}/agree_{'cuda' if other == 'cuda' else 'cpu2'}/scores.csv")
parts = []
for name in ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov"):
    a, b = cpu[name].to_numpy(float), gpu[name].to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b)
    rho = stats.spearmanr(a[ok], b[ok]).statistic if ok.sum() > 2 else float("nan")
    rel = float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-300))) if ok.any() else float("nan")
    parts.append(f"{name} rho {rho:.4f} max rel diff {rel:.2e}")
label = "GPU vs CPU" if other == "cuda" else "CPU vs CPU (rehearsal: no GPU)"
print(f"FIGURE agreement: {label} on {len(cpu)} NB201 archs (no TF32): " + "; ".join(parts))
PYEOF
    else
        echo "FIGURE agreement: FAILED (see $OUT/agree_*.log)"
    fi
else
    echo "FIGURE agreement: skipped (no GPU)"
fi

# --- 3. the NTK pair per architecture (+ its Spearman vs the table when packed) ----------------------------
t0=$(now)
if $PY -m hnas score "${DATA[@]}" "${NET[@]}" "${PROXY_BATCH[@]}" pool.size="$NTK" pool.seed=1 \
        "proxies.names=[ntk_trace,ntk_cond]" proxies.device=auto "${BENCH[@]}" timing_archs=0 plots=false \
        "store=$OUT/store.sqlite" "hydra.run.dir=$OUT/ntk" > "$OUT/ntk.log" 2>&1; then
    $PY - "$OUT" "$NTK" <<'PYEOF'
import json, re, sys
from pathlib import Path
out, n = Path(sys.argv[1]), int(sys.argv[2])
secs = [float(x) for x in re.findall(r"proxy scores of \d+ architectures ready in ([0-9.]+) s",
                                     (out / "ntk.log").read_text())]
r = json.loads((out / "ntk" / "result.json").read_text())
p = r["proxies"]
rho = "" if r.get("target") is None else (
    f"; Spearman vs {r['target']}: ntk_trace {p['ntk_trace'].get('spearman')}, ntk_cond {p['ntk_cond'].get('spearman')}")
print(f"FIGURE ntk_pair: {secs[0] / n:.3f} s per arch over {n} NB201 archs (median ntk_trace "
      f"{p['ntk_trace']['median_s']:.3f} s, ntk_cond {p['ntk_cond']['median_s']:.3f} s; failed "
      f"{p['ntk_trace']['n_failed'] + p['ntk_cond']['n_failed']}){rho}")
PYEOF
else
    echo "FIGURE ntk_pair: FAILED (see $OUT/ntk.log)"
fi

# --- 4. one 12-epoch NB201 warm-up at batch 256 through the main job's training evaluator ------------------
if $PY -m hnas run +experiment=cifar10 "${DATA[@]}" "${NET[@]}" pool=list "pool.archs=[6111]" \
        strategy=random strategy.budget=1 evaluator.budget.max_epochs=null ++evaluator.budget.max_steps="$WARM_STEPS" \
        data.batch_size="$WARM_BATCH" data.valid_fraction=0.2 trainer=default ++trainer.precision=auto \
        benchmark=none logger=none plot=false "store=$OUT/store.sqlite" "hydra.run.dir=$OUT/warmup" \
        > "$OUT/warmup.log" 2>&1; then
    $PY - "$OUT" "$WARM_STEPS" "$WARM_BATCH" <<'PYEOF'
import json, sys
from pathlib import Path
from hnas.store import Store
out, steps, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = json.loads((out / "warmup" / "result.json").read_text())
info = Store(out / "store.sqlite").trials(r["run_id"])[0]["info"]
h = r["history"][0]
print(f"FIGURE warmup: {info['train_s']:.1f} s for {info['steps']} steps at batch {batch} (= 12 epochs of 25,000 "
      f"images when 1176 x 256), {h['cost_s']:.1f} s with validation; NB201 #6111, val acc {h['value']:.2f}%")
PYEOF
else
    echo "FIGURE warmup: FAILED (see $OUT/warmup.log)"
fi

# --- 5. hnas train of NB201 #6111, recipe nb201, precision auto (bf16) ---------------------------------
if $PY -m hnas train arch=6111 "${DATA[@]}" "${NET[@]}" recipe.epochs="$TRAIN_EPOCHS" data.batch_size="$TRAIN_BATCH" \
        val_every_n_epochs=0 logger=none "hydra.run.dir=$OUT/train" > "$OUT/train.log" 2>&1; then
    $PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
r = json.loads((out / "train" / "result.json").read_text())
images = r["images_per_epoch"] * r["epochs"]
rate = images / r["fit_s"]
print(f"FIGURE train_epoch: hnas train NB201 #6111 ({r['precision']}, batch {r['data']['batch_size']}): {images} "
      f"images in {r['fit_s']:.1f} s = {rate:.0f} img/s -> {50000 / rate:.1f} s per 50,000-image epoch; "
      f"test top-1 {r['test']['top1']}% after {r['epochs']} epoch(s)")
PYEOF
else
    echo "FIGURE train_epoch: FAILED (see $OUT/train.log)"
fi

echo "FIGURE total: $(elapsed "$START" "$(now)") s (data: $DATA_NOTE; logs and results in $OUT)"
