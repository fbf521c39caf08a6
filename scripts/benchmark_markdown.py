"""Print the Markdown tables the README shows for a `modelrank benchmark` run.

    python scripts/benchmark_markdown.py ~/.cache/modelrank/benchmark/demo

Prints the metrics x tasks weighted-tau table, the ground-truth sanity table, the zoo table, the slice that
`tests/test_benchmark.py` regenerates from scratch, and the stage timings.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

SLICE_MODELS = ["zoo/demo/lite0-imagenet", "zoo/demo/lite1-imagenet", "zoo/demo/lite2-imagenet"]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def cell(column: str, value: object) -> str:
    """A table cell: seconds to 2 decimals, measures to 3, text (the "ranked k of n" column) as it is."""
    if isinstance(value, str):
        return value
    return f"{value:.2f}" if column == "s/task" else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the benchmark's results folder (table.csv, sanity.csv, ...)")
    out = parser.parse_args().results

    table = pd.read_csv(out / "table.csv", index_col=0)
    print(markdown(["metric", *[c.removeprefix("task/") for c in table.columns]],
                   [[metric, *[cell(c, v) for c, v in row.items()]] for metric, row in table.iterrows()]))
    print()
    sanity = pd.read_csv(out / "sanity.csv")
    print(markdown(
        ["task", "best model", "best acc", "worst acc", "spread over models", "seed std", "noise (interaction)", "F", "p"],
        [[r.task.removeprefix("task/"), ", ".join(m.split("/")[-1] for m in r.best_model.split(", ")), f"{r.best_accuracy:.3f}", f"{r.worst_accuracy:.3f}",
          f"{r.spread:.3f}", f"{r.seed_std:.3f}", f"{r.noise:.3f}", f"{r.f_stat:.1f}", f"{r.p_value:.3f}"]
         for r in sanity.itertuples()]))
    print()
    zoo = pd.read_csv(out / "zoo.csv")
    print(markdown(
        ["model", "source", "classes", "params", "trained", "source acc"],
        [[r.name, r.source_dataset, str(r.num_classes), f"{r.params / 1e6:.2f}M", f"{r.trained_params / 1e6:.2f}M",
          "" if pd.isna(r.source_accuracy) else f"{r.source_accuracy:.3f}"] for r in zoo.itertuples()]))
    print()
    scores, probes = pd.read_csv(out / "scores.csv"), pd.read_csv(out / "probes.csv")
    rows = []
    for model in SLICE_MODELS:
        logme = scores[(scores.Dataset == "task/textures") & (scores.Model == model)]["logme"].iloc[0]
        probe = probes[(probes.dataset == "task/textures") & (probes.model == model) & (probes.seed == 0)
                       & (probes.protocol == "linear")]["accuracy"].iloc[0]
        rows.append(["task/textures", model, f"{logme:.6f}", f"{probe:.6f}"])
    print(markdown(["task", "model", "logme", "linear probe (seed 0)"], rows))
    print()
    print("stage seconds:", json.loads((out / "stages.json").read_text()))


if __name__ == "__main__":
    main()
