#!/usr/bin/env bash
# Extract features on every GPU of one node with torchrun: it starts G processes and gives each its LOCAL_RANK;
# `--device auto` (or cuda) is then that process's own GPU, cuda:LOCAL_RANK. The processes share the work through
# the cache's chunk claims (each chunk is claimed by one of them, a dead one's claims are taken over), so there is
# no process group and no --shard to set; on a machine without CUDA every process runs on the CPU.
#
#   examples/torchrun_extract.sh                 # one process per visible GPU, the defaults below
#   MODELS=efficientnet_lite0 DATASET=folder:/data/pets SUBSET="--per-class 50" examples/torchrun_extract.sh 4
#   modelrank score -d folder:/data/pets -m efficientnet_lite0 --per-class 50 --metric logme,leep   # the same subset
#
# Several nodes: run it once per node (or as the Slurm job array of slurm_extract.sh, adding --shard) on a cache
# that every node sees. Chunks hold 1024 samples, so G processes share the work once the subset has G x 1024.
set -euo pipefail

MODELS=${MODELS:-efficientnet_lite0,efficientnet_lite1,efficientnet_lite2}
DATASET=${DATASET:-cifar100}
PROCESSES=${1:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}

# SUBSET and EXTRACT_ARGS as in slurm_extract.sh, e.g. SUBSET="--per-class 50" EXTRACT_ARGS="--batch-size 256".
# shellcheck disable=SC2086
torchrun --standalone --nproc_per_node="$PROCESSES" -m modelrank extract -m "$MODELS" -d "$DATASET" ${SUBSET:-} ${EXTRACT_ARGS:-}
