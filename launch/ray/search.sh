#!/usr/bin/env bash
# One search on the running Ray cluster, started on the head node: the search loop and the store stay here,
# each evaluation is a Ray task with one GPU (search.ray.gpus_per_task) on whichever node has one free.
# Q (default 8) candidates are evaluated at once; extra arguments are Hydra overrides, e.g.
#   Q=16 launch/ray/search.sh seed=3 data.root=/shared/cifar10
set -euo pipefail
Q=${Q:-8}
hnas run +experiment=cifar10 search.parallel="$Q" search.executor=ray search.ray.address=auto \
    search.ray.gpus_per_task=1 trainer=gpu "$@"
