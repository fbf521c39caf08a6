#!/usr/bin/env bash
# The main job on the embedded default, offline: rank the ImageNet-pretrained models that ship inside PyPI
# packages (and a randomly initialised control) for the Animal-MNIST silhouettes task.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1
MODELS=efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,random:tf_efficientnet_lite0
.venv/bin/modelrank extract -m "$MODELS" -d animal-mnist --per-class 30
.venv/bin/modelrank score -d animal-mnist -m "$MODELS" --per-class 30 --metric all --out demo_scores.csv
