#!/usr/bin/env bash
# Start the head of a Ray cluster on this machine (it also runs evaluations with its own GPUs/CPUs).
# Then: launch/ray/worker.sh HEAD_IP:PORT on every other machine, and launch/ray/search.sh here.
# Every machine needs the same hnas install (pip install 'hnas[ray]') and the data at the same path
# (data.root): each evaluation rebuilds the evaluator from the run's config on the node that runs it.
set -euo pipefail
PORT=${RAY_PORT:-6379}
ray start --head --port="$PORT" --include-dashboard=false ${RAY_HEAD_ARGS:-}
echo "Ray head started. On each worker machine: launch/ray/worker.sh $(hostname -I | awk '{print $1}'):$PORT"
