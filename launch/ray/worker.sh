#!/usr/bin/env bash
# Join the Ray cluster whose head runs at HEAD_IP:PORT (see launch/ray/head.sh); stop it with `ray stop`.
set -euo pipefail
ADDRESS=${1:?usage: launch/ray/worker.sh HEAD_IP:PORT}
ray start --address="$ADDRESS" ${RAY_WORKER_ARGS:-}
