#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun (mmpretrain's
# conventions). GPUS = processes on *this* node (one per GPU); for several
# nodes run it on each with NNODES, NODE_RANK, MASTER_ADDR (and PORT).
# Without CUDA the processes train on CPU with gloo (see tools/train.py).
#
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
#   NNODES=8 NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CONFIG 8
set -e

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args...]" >&2
    exit 2
fi

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
# The interpreter: $PYTHON if set; else the virtual environment that
# `make install` creates next to tools/ (.venv), so no activation is needed;
# else `python` from PATH (an activated conda/venv environment).
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_ROOT/.venv/bin/python" ]; then
        PYTHON="$REPO_ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi

PYTHONPATH="$REPO_ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$REPO_ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
