#!/usr/bin/env bash
# A local stand-in for `sbatch --array=0-(N-1) examples/slurm_extract.sh`: runs the N array tasks as parallel
# processes with the variables Slurm sets, and waits for all of them. The same variables as slurm_extract.sh:
#
#   MODELS=efficientnet_lite0 DATASET=digits SUBSET="--per-class 10" examples/run_array_locally.sh 3
#   modelrank score -d digits -m efficientnet_lite0 --per-class 10 --metric logme,leep    # reads the cache only
set -euo pipefail
TASKS=${1:-4}
here=$(cd "$(dirname "$0")" && pwd)

pids=()
for ((task = 0; task < TASKS; task++)); do
  SLURM_ARRAY_TASK_ID=$task SLURM_ARRAY_TASK_COUNT=$TASKS bash "$here/slurm_extract.sh" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=$((failed + 1))
done
if [ "$failed" -gt 0 ]; then
  echo "$failed of $TASKS array tasks failed; rerun to compute only the missing chunks" >&2
  exit 1
fi
echo "all $TASKS array tasks done" >&2
