#!/usr/bin/env bash
# gpu_check.sh -- the GPU figures of docs/results.md, measured from the project tree alone (< 8 min on one H200).
#
#   bash launch/gpu_check.sh           on the GPU node (air-gapped is fine: see launch/prepare_offline.sh)
#   bash launch/gpu_check.sh --tiny    a rehearsal in about a minute on a CPU (tiny sizes; tests/test_launch.py)
#
# Prints one `FIGURE name: ...` line per figure (copy them into docs/results.md with the GPU's name):
#   gpu             the device, torch/CUDA versions, bf16 support
#   scoring_one     six-proxy (RoBoT's grad_norm, snip, grasp, fisher, synflow, jacob_cov) scoring throughput on
#                   NB201, one `hnas score` process on the GPU (architectures per second, the whole space in min)
#   scoring_many    the same with search.workers=N scorer processes on the one GPU (the driver writes the store),
#                   under CUDA MPS when it can be started (HNAS_GPU_CHECK_MPS=0: never)
#   agreement       GPU vs CPU scores of the six proxies on 50 architectures (Spearman, max relative difference)
#   warmup          one 12-epoch NB201 warm-up at batch 256 (1,176 steps = 12 epochs of the 25,000-image train
#                   half), `hnas run`'s training evaluator, precision auto (bf16 where supported)
#   ntk_pair        seconds per architecture of HNAS's NTK pair (ntk_trace + ntk_cond), Spearman vs the table
#   darts_scoring   the NTK pair on darts_cifar10's 5-layer search network (genotypes per second), N processes
#   darts_query     darts_cifar10's query training (batch 576): seconds per 25,000-image epoch
#   train_epoch     `hnas train` of NB201 #6111, recipe nb201, bf16: seconds per 50,000-image CIFAR-10 epoch
#   total           the script's wall time
# Each step is capped at STEP_S seconds (150; a capped step prints FAILED and the script goes on).
# Data: launch/data/ (made by prepare_offline.sh: a 10,000-image CIFAR-10 subset as uint8 .npz + the NB201
# table) or, when absent, synthetic images (throughput figures only; accuracies then mean nothing).
# Env: PYTHON (python3), HNAS_GPU_CHECK_TINY=1 (= --tiny), HNAS_GPU_CHECK_OUT (output folder),
#      HNAS_GPU_CHECK_DATA (launch/data), HNAS_GPU_CHECK_POOL1 / _POOL / _WORKERS / _NTK_ARCHS / _DARTS_ARCHS
#      (200 / 1000 / 16 / 100 / 200), HNAS_GPU_CHECK_STEP_S (150),
#      HNAS_GPU_CHECK_STEPS (all; or a comma list of figure names, e.g. darts_query,scoring_many, to re-run some).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TINY=${HNAS_GPU_CHECK_TINY:-0}
[[ "${1:-}" == "--tiny" ]] && TINY=1
PY=${PYTHON:-python3}
OUT=${HNAS_GPU_CHECK_OUT:-$ROOT/launch/out/gpu_check-$(date +%Y%m%d-%H%M%S)}
DATA_DIR=${HNAS_GPU_CHECK_DATA:-$ROOT/launch/data}
START=$(date +%s.%N)
STEPS=${HNAS_GPU_CHECK_STEPS:-all}
want() { [[ $STEPS == all || ",$STEPS," == *",$1,"* ]]; }  # run step $1?
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
    POOL1=${HNAS_GPU_CHECK_POOL1:-4}; POOLN=${HNAS_GPU_CHECK_POOL:-6}; WORKERS=${HNAS_GPU_CHECK_WORKERS:-2}
    NTK=${HNAS_GPU_CHECK_NTK_ARCHS:-2}; DARTS=${HNAS_GPU_CHECK_DARTS_ARCHS:-2}; DARTS_STEPS=2; DARTS_BATCH=16
    WARM_STEPS=3; WARM_BATCH=16; TRAIN_EPOCHS=1; TRAIN_BATCH=16; STEP_S=${HNAS_GPU_CHECK_STEP_S:-600}
    NET=(space.build.C=4 space.build.N=1); DARTS_NET=(space.build.C=4 space.build.layers=3)
    PROXY_BATCH=(proxies.batch.size=16)
    SYNTH=(data=synthetic +data.num_train=64 +data.num_test=32 "+data.shape=[3,16,16]")
else
    POOL1=${HNAS_GPU_CHECK_POOL1:-200}; POOLN=${HNAS_GPU_CHECK_POOL:-1000}; WORKERS=${HNAS_GPU_CHECK_WORKERS:-16}
    NTK=${HNAS_GPU_CHECK_NTK_ARCHS:-100}; DARTS=${HNAS_GPU_CHECK_DARTS_ARCHS:-200}; DARTS_STEPS=44; DARTS_BATCH=576
    WARM_STEPS=1176; WARM_BATCH=256; TRAIN_EPOCHS=6; TRAIN_BATCH=256; STEP_S=${HNAS_GPU_CHECK_STEP_S:-150}
    NET=(); DARTS_NET=(); PROXY_BATCH=()
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
THREADS=${HNAS_GPU_CHECK_THREADS:-$([[ $TINY == 1 ]] && echo 1 || echo $(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )))}
note "output $OUT; data: $DATA_NOTE; tiny=$TINY; $THREADS CPU thread(s) for one scoring process, a share each for $WORKERS workers"

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

# --- 2. six-proxy scoring: one process, then WORKERS scorer processes on the one device (search.workers) -----
SIX="[grad_norm,snip,grasp,fisher,synflow,jacob_cov]"
score_figure() {  # score_figure LABEL DIR LOG POOL WALL STORE: the FIGURE line of one scoring run
    $PY - "$@" <<'PYEOF'
import json, re, sys
from pathlib import Path
from hnas.store import Store
label, run, logf, pool, wall = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ready = [float(x) for x in re.findall(r"proxy scores of \d+ architectures ready in ([0-9.]+) s", logf.read_text())]
r = json.loads((run / "result.json").read_text())
failed = sum(e["n_failed"] for e in r["proxies"].values())
per = ", ".join(f"{k} {(e['median_s'] or 0) * 1000:.0f} ms" for k, e in r["proxies"].items())
scoring = ready[0] if ready else float("nan")
# isomorphic architectures share one canonical key and are scored once: the rate that extrapolates is the rate
# of distinct networks (the whole NB201 space holds 5,425 of them)
nets = Store(sys.argv[6]).count_scores() // len(r["proxies"])
whole = ""
if r.get("space") == "nb201":
    from hnas.spaces import get_space
    space = get_space("nb201")
    distinct = len({space.key(space.from_index(i)) for i in range(15625)})
    whole = f" -> the whole NB201 space ({distinct:,} distinct networks) in {distinct / (nets / scoring) / 60:.1f} min"
print(f"FIGURE {label}: {pool / wall:.1f} arch/s including process start ({wall:.0f} s wall), {pool / scoring:.1f} "
      f"arch/s scoring ({scoring:.1f} s; {nets} distinct networks, {nets / scoring:.1f}/s){whole}; median per "
      f"arch and proxy: {per}; failed or non-finite scores: {failed}")
PYEOF
}
# CUDA MPS lets several processes' kernels share the GPU at once (without it they time-slice): measured on an H200,
# 8 scorer processes went from 9.9 to 26.5 arch/s, 16 under MPS reached 32.5. gpu_check starts a daemon of its own for the multi-process
# steps when it can (HNAS_GPU_CHECK_MPS=0: never) and stops it afterwards; one already running is used as is.
MPS_MODE=${HNAS_GPU_CHECK_MPS:-auto}
MPS_OWN=0
mps_start() {
    MPS_NOTE=""
    [[ $MPS_MODE == 0 ]] && return 0
    $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || return 0
    if [[ -e ${CUDA_MPS_PIPE_DIRECTORY:-/tmp/nvidia-mps}/control ]]; then MPS_NOTE=" (CUDA MPS on)"; return 0; fi
    if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
        MPS_OWN=1; MPS_NOTE=" (CUDA MPS on)"
    else
        MPS_NOTE=" (no CUDA MPS: kernels time-slice)"
    fi
}
mps_stop() { if [[ $MPS_OWN == 1 ]]; then echo quit | nvidia-cuda-mps-control || true; MPS_OWN=0; fi; }
trap mps_stop EXIT
for mode in one many; do
    want "scoring_$mode" || continue
    if [[ $mode == one ]]; then n=$POOL1; extra=(); label="scoring_one: six proxies x $n NB201 archs, one process"
    else n=$POOLN; extra=("search.workers=$WORKERS"); mps_start
         label="scoring_many: six proxies x $n NB201 archs, $WORKERS scorer processes on one device$MPS_NOTE"; fi
    t0=$(now)
    if OMP_NUM_THREADS=$THREADS timeout "$STEP_S" $PY -m hnas score "${DATA[@]}" "${NET[@]}" "${PROXY_BATCH[@]}" \
            pool.size="$n" pool.seed=$([[ $mode == one ]] && echo 0 || echo 1) "proxies.names=$SIX" \
            proxies.device=auto "${extra[@]}" benchmark=none target=null timing_archs=0 plots=false \
            "store=$OUT/score_$mode.sqlite" "hydra.run.dir=$OUT/score_$mode" > "$OUT/score_$mode.log" 2>&1; then
        score_figure "$label" "$OUT/score_$mode" "$OUT/score_$mode.log" "$n" "$(elapsed "$t0" "$(now)")" \
            "$OUT/score_$mode.sqlite" || echo "FIGURE scoring_$mode: FAILED (see $OUT/score_$mode.log)"
    else
        echo "FIGURE scoring_$mode: FAILED (see $OUT/score_$mode.log)"
    fi
    mps_stop
done

# --- 3. GPU vs CPU agreement: the six proxies on AGREE architectures, scored on each device (own cache keys) ---
if want agreement; then
AGREE=${HNAS_GPU_CHECK_AGREE:-$([[ $TINY == 1 ]] && echo 4 || echo 50)}
OTHER=cuda  # the tiny CPU rehearsal compares CPU with CPU (identical by construction) to run the comparison code
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || OTHER=$([[ $TINY == 1 ]] && echo cpu || echo none)
if [[ $OTHER != none ]]; then
    ok=1
    for dev in cpu $OTHER; do
        # the CPU pass on WORKERS processes (a share of the cores each), the device pass in one process
        extra=(); [[ $dev == cpu && $TINY == 0 ]] && extra=("search.workers=$WORKERS")
        OMP_NUM_THREADS=$THREADS timeout "$STEP_S" $PY -m hnas score "${DATA[@]}" "${NET[@]}" \
            "${PROXY_BATCH[@]}" pool.size="$AGREE" pool.seed=3 "proxies.names=$SIX" proxies.device=$dev \
            "${extra[@]}" benchmark=none target=null timing_archs=0 plots=false "store=$OUT/agree.sqlite" \
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
    parts.append(f"{name} rho {rho:.4f} max rel diff {rel:.2e} ({int(ok.sum())} finite pairs)")
label = "GPU vs CPU" if other == "cuda" else "CPU vs CPU (rehearsal: no GPU)"
print(f"FIGURE agreement: {label} on {len(cpu)} NB201 archs (no TF32): " + "; ".join(parts))
PYEOF
    else
        echo "FIGURE agreement: FAILED (see $OUT/agree_*.log)"
    fi
else
    echo "FIGURE agreement: skipped (no GPU)"
fi
fi

# --- 4. one 12-epoch NB201 warm-up at batch 256 through the main job's training evaluator ------------------
if want warmup; then
if timeout "$STEP_S" $PY -m hnas run +experiment=cifar10 "${DATA[@]}" "${NET[@]}" pool=list "pool.archs=[6111]" \
        strategy=random strategy.budget=1 evaluator.budget.max_epochs=null ++evaluator.budget.max_steps="$WARM_STEPS" \
        data.batch_size="$WARM_BATCH" data.valid_fraction=0.2 trainer=default ++trainer.precision=auto \
        benchmark=none logger=none plot=false "store=$OUT/store.sqlite" "hydra.run.dir=$OUT/warmup" \
        > "$OUT/warmup.log" 2>&1; then
    $PY - "$OUT" "$WARM_STEPS" "$WARM_BATCH" <<'PYEOF' || echo "FIGURE warmup: FAILED (see $OUT/warmup.log)"
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
fi

# --- 5. the NTK pair per architecture (+ its Spearman vs the table when packed) ----------------------------
if want ntk_pair; then
if timeout "$STEP_S" $PY -m hnas score "${DATA[@]}" "${NET[@]}" "${PROXY_BATCH[@]}" pool.size="$NTK" pool.seed=1 \
        "proxies.names=[ntk_trace,ntk_cond]" proxies.device=auto "${BENCH[@]}" timing_archs=0 plots=false \
        "store=$OUT/store.sqlite" "hydra.run.dir=$OUT/ntk" > "$OUT/ntk.log" 2>&1; then
    $PY - "$OUT" "$NTK" <<'PYEOF' || echo "FIGURE ntk_pair: FAILED (see $OUT/ntk.log)"
import json, re, sys
from pathlib import Path
out, n = Path(sys.argv[1]), int(sys.argv[2])
secs = [float(x) for x in re.findall(r"proxy scores of \d+ architectures ready in ([0-9.]+) s",
                                     (out / "ntk.log").read_text())]
r = json.loads((out / "ntk" / "result.json").read_text())
p = r["proxies"]
rho = "" if r.get("target") is None else (
    f"; Spearman vs {r['target']}: ntk_trace {p['ntk_trace'].get('spearman')}, ntk_cond {p['ntk_cond'].get('spearman')}")
print(f"FIGURE ntk_pair: {secs[0] / n:.3f} s per arch over {n} NB201 archs, one process (median ntk_trace "
      f"{p['ntk_trace']['median_s']:.3f} s, ntk_cond {p['ntk_cond']['median_s']:.3f} s; failed "
      f"{p['ntk_trace']['n_failed'] + p['ntk_cond']['n_failed']}){rho}")
PYEOF
else
    echo "FIGURE ntk_pair: FAILED (see $OUT/ntk.log)"
fi
fi

# --- 6. DARTS: the NTK pair of darts_cifar10 on the 5-layer search network, WORKERS scorer processes ----------
if want darts_scoring; then
mps_start
t0=$(now)
if timeout "$STEP_S" $PY -m hnas score space=darts "${DATA[@]}" "${DARTS_NET[@]}" "${PROXY_BATCH[@]}" \
        pool.size="$DARTS" pool.seed=0 "proxies.names=[ntk_trace,ntk_cond]" proxies.device=auto \
        "search.workers=$WORKERS" benchmark=none target=null timing_archs=0 plots=false \
        "store=$OUT/darts.sqlite" "hydra.run.dir=$OUT/darts_score" > "$OUT/darts_score.log" 2>&1; then
    score_figure "darts_scoring: the NTK pair x $DARTS DARTS genotypes, $WORKERS scorer processes$MPS_NOTE" \
        "$OUT/darts_score" "$OUT/darts_score.log" "$DARTS" "$(elapsed "$t0" "$(now)")" "$OUT/darts.sqlite" \
        | sed 's/arch\/s/genotypes\/s/g' || echo "FIGURE darts_scoring: FAILED (see $OUT/darts_score.log)"
else
    echo "FIGURE darts_scoring: FAILED (see $OUT/darts_score.log)"
fi
mps_stop
fi

# --- 7. DARTS: the query training of darts_cifar10 (batch 576, drop-path, clipping), one 25,000-image epoch ---
if want darts_query; then
if timeout "$STEP_S" $PY -m hnas run +experiment=darts_cifar10 "${DATA[@]}" "${DARTS_NET[@]}" pool.size=1 \
        strategy=random strategy.budget=1 evaluator.budget.max_epochs=null ++evaluator.budget.max_steps="$DARTS_STEPS" \
        data.batch_size="$DARTS_BATCH" logger=none plot=false "store=$OUT/darts.sqlite" \
        "hydra.run.dir=$OUT/darts_query" > "$OUT/darts_query.log" 2>&1; then
    $PY - "$OUT" "$DARTS_STEPS" "$DARTS_BATCH" <<'PYEOF' || echo "FIGURE darts_query: FAILED (see $OUT/darts_query.log)"
import json, math, sys
from pathlib import Path
from hnas.store import Store
out, steps, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = json.loads((out / "darts_query" / "result.json").read_text())
info = Store(out / "darts.sqlite").trials(r["run_id"])[0]["info"]
per_step = info["train_s"] / info["steps"]
epoch = per_step * math.ceil(25000 / batch)
print(f"FIGURE darts_query: {info['train_s']:.1f} s for {info['steps']} steps at batch {batch} -> {epoch:.1f} s per "
      f"25,000-image epoch, a 10-epoch query about {10 * epoch:.0f} s of training; val acc "
      f"{r['history'][0]['value']:.2f}%")
PYEOF
else
    echo "FIGURE darts_query: FAILED (see $OUT/darts_query.log)"
fi
fi

# --- 8. hnas train of NB201 #6111, recipe nb201, precision auto (bf16) ---------------------------------
if want train_epoch; then
if timeout "$STEP_S" $PY -m hnas train arch=6111 "${DATA[@]}" "${NET[@]}" recipe.epochs="$TRAIN_EPOCHS" \
        data.batch_size="$TRAIN_BATCH" val_every_n_epochs=0 logger=none "hydra.run.dir=$OUT/train" \
        > "$OUT/train.log" 2>&1; then
    $PY - "$OUT" <<'PYEOF' || echo "FIGURE train_epoch: FAILED (see $OUT/train.log)"
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
fi

echo "FIGURE total: $(elapsed "$START" "$(now)") s (data: $DATA_NOTE; logs and results in $OUT)"
