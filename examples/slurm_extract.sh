#!/usr/bin/env bash
# Extract features for a model zoo on a Slurm cluster: every array task computes its share of the chunks
# (--shard i/N), all tasks write into one shared cache, and any later command reads the completed entries.
#
#   sbatch --array=0-7 examples/slurm_extract.sh                       # 8 tasks, the defaults below
#   MODELS=efficientnet_lite0 DATASET=folder:/data/pets SUBSET="--per-class 50" sbatch --array=0-3 examples/slurm_extract.sh
#   # when every task is done (or as a dependent job: sbatch --dependency=afterok:JOBID ...), the same subset:
#   modelrank score -d folder:/data/pets -m efficientnet_lite0 --per-class 50 --metric logme,leep,nleep --out scores.csv
#
# A task that fails or is preempted can simply be resubmitted: chunks already written are skipped. Chunks hold
# 1024 samples, so N tasks share the work once the subset has N x 1024 samples or more. Without Slurm,
# examples/run_array_locally.sh runs the same tasks as local processes.
#SBATCH --job-name=modelrank-extract
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=modelrank-extract-%A_%a.log
set -euo pipefail

MODELS=${MODELS:-efficientnet_lite0,efficientnet_lite1,efficientnet_lite2}
DATASET=${DATASET:-cifar100}
TASKS=${SLURM_ARRAY_TASK_COUNT:?run as a job array: sbatch --array=0-7 $0}
# The cache must be on a file system every node sees (default: ~/.cache/modelrank).
export MODELRANK_CACHE=${MODELRANK_CACHE:-$HOME/.cache/modelrank}

# SUBSET: which samples (--split, --limit, --per-class, --seed; `score` must be given the same to find them);
# EXTRACT_ARGS: other `modelrank extract` options, e.g. "--device cuda --batch-size 256".
# shellcheck disable=SC2086
modelrank extract -m "$MODELS" -d "$DATASET" --shard "${SLURM_ARRAY_TASK_ID}/${TASKS}" ${SUBSET:-} ${EXTRACT_ARGS:-}
