"""Reproduce ETran's CIFAR-100 weighted tau (Gholami et al., ICCV'23; ETran.ipynb prints 0.900) from its printed scores.

Inputs: anchors/etran/notebook_cifar100_scores.csv (the notebook's printed S_lda and S_en of 11 supervised
models) and anchors/sfda/finetune_accuracy.csv (the SFDA ground truth that ETran reuses). Protocol (ETran
``tw.py``): ETran = 0.85 * minmax(S_lda) + 0.15 * minmax(S_en), min-max across the 11 models, then
``weightedtau(score, accuracy)`` with scipy's default rank=True (modelrank protocol "scipy").

Not reproducible from the anchors, for lack of per-model scores: the SFDA README table (anchors/sfda) and the PED
README table (anchors/ped); only their ground truth and the published taus are public.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from _anchors import console, parser, require

from modelrank.evaluate import weighted_tau
from modelrank.evaluate.tables import load_truth, name_key
from modelrank.metrics.ncti import min_max

PUBLISHED = 0.900  # ETran.ipynb, cell 8 output: "Kendall dataset:cifar100 :0.900"
LDA_WEIGHT, ENERGY_WEIGHT = 0.85, 0.15


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    scores = pd.read_csv(require(args.anchors / "etran" / "notebook_cifar100_scores.csv"))
    truth = load_truth(require(args.anchors / "sfda" / "finetune_accuracy.csv"))
    truth = truth[truth["dataset_key"] == "cifar100"].set_index("model_key")["truth"]
    keys = scores["model"].map(name_key)
    if not keys.isin(truth.index).all():
        console.print(f"[bold red]models without ground truth:[/] {sorted(set(keys) - set(truth.index))}")
        return 1
    accuracy = truth.loc[keys].to_numpy()
    lda, energy = scores["lda"].to_numpy(), scores["energy"].to_numpy()
    etran = LDA_WEIGHT * min_max(lda) + ENERGY_WEIGHT * min_max(energy)
    rows = {
        "ETran (0.85 lda + 0.15 energy)": weighted_tau(accuracy, etran),
        "S_lda alone": weighted_tau(accuracy, lda),
        "S_en alone": weighted_tau(accuracy, energy),
    }
    for name, value in rows.items():
        console.print(f"{name:32s} weighted tau {value:.3f}")
    ours = rows["ETran (0.85 lda + 0.15 energy)"]
    ok = bool(np.isclose(ours, PUBLISHED, atol=args.tolerance))
    console.print(f"published {PUBLISHED:.3f}: " + ("[bold green]reproduced[/]" if ok else f"[bold red]NOT reproduced ({ours:.4f})[/]"))
    console.print("Not reproducible here (published taus without per-model scores): SFDA README table, PED README table.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
