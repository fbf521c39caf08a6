"""Judge a published table of transferability scores against its fine-tune ground truth (weighted Kendall's tau ...).

Scores: wide `Dataset, Model, <method>...` (the layout of Model Spider's baseline_results.csv and of
`modelrank score --out`) or long `dataset, model, method, score`. Truth: `dataset, model, accuracy`.
Without --scores/--truth a small synthetic pair is generated, so the script runs anywhere.

    python examples/evaluate_published_scores.py --scores baseline_results.csv --truth finetune_accuracy.csv \
        --protocol model_spider
    python examples/evaluate_published_scores.py            # synthetic: 3 datasets x 6 models x 3 methods

The same from the shell:

    modelrank evaluate --scores baseline_results.csv --truth finetune_accuracy.csv --protocol model_spider
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import modelrank


def synthetic_tables(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A truth table of 3 datasets x 6 models, and the scores of three methods that follow it closely, loosely,
    and not at all (written as scores.csv and truth.csv in ``folder``)."""
    rng = np.random.default_rng(seed)
    datasets, models = ["Aircraft", "Pets", "DTD"], [f"model_{i}" for i in range(6)]
    truth = pd.DataFrame([(d, m, 60 + 30 * rng.random()) for d in datasets for m in models],
                         columns=["dataset", "model", "accuracy"])
    accuracy = truth["accuracy"].to_numpy()
    scores = truth[["dataset", "model"]].rename(columns=str.title).assign(
        close=accuracy / 100 + rng.normal(0, 0.02, len(truth)),
        loose=accuracy / 100 + rng.normal(0, 0.1, len(truth)),
        unrelated=rng.normal(0, 1, len(truth)),
    )
    folder.mkdir(parents=True, exist_ok=True)
    scores.to_csv(folder / "scores.csv", index=False)
    truth.to_csv(folder / "truth.csv", index=False)
    return folder / "scores.csv", folder / "truth.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--protocol", default="scipy", help="scipy (symmetric weighted tau) | model_spider")
    args = parser.parse_args()
    if (args.scores is None) != (args.truth is None):
        parser.error("give both --scores and --truth, or neither (synthetic tables)")
    scores, truth = (args.scores, args.truth) if args.scores else synthetic_tables(Path(tempfile.mkdtemp()))

    evaluation = modelrank.evaluate(scores, truth, measures=["weighted", "kendall"], protocol=args.protocol)
    for warning in evaluation.warnings:
        print(f"warning: {warning}")
    for measure in evaluation.measures:
        print(f"\n{measure} (methods x datasets; 1 = the scores order the models as fine-tuning does)")
        print(evaluation.table(measure).to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
