#!/usr/bin/env bash
# `hnas train` under torchrun: torchrun starts the ranks, Lightning recognises it (TorchElasticEnvironment:
# RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun) and requires trainer.devices x trainer.num_nodes
# = WORLD_SIZE, so pass both. Only global rank 0 writes result.json, the checkpoints and W&B.
#
# One node, all its GPUs (NPROC, default: every visible GPU):
#   bash launch/torchrun.sh arch=6111 data.root=data/cifar10
# Several nodes (run on each node; NNODES, NODE_RANK, MASTER=host:port of node 0):
#   NNODES=2 NODE_RANK=0 MASTER=node0:29500 bash launch/torchrun.sh from_result=.../result.json recipe=darts_cifar10
# (Without torchrun, `hnas train ... trainer=ddp_train` lets Lightning start the ranks of one node itself.)
set -euo pipefail
NPROC=${NPROC:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
NNODES=${NNODES:-1}
if [[ $NNODES == 1 ]]; then
    RDZV=(--standalone)
else
    RDZV=(--nnodes="$NNODES" --node-rank="${NODE_RANK:?set NODE_RANK}" --rdzv-backend=c10d
          --rdzv-endpoint="${MASTER:?set MASTER=host:port of node 0}" --rdzv-id="${RDZV_ID:-hnas-train}")
fi
exec torchrun "${RDZV[@]}" --nproc-per-node="$NPROC" -m hnas.train trainer=ddp_train trainer.devices="$NPROC" \
    trainer.num_nodes="$NNODES" "$@"
