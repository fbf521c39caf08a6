"""Train a learned ranker on fine-tune records of past tasks, save it, and rank the models for a new task.

Records: `dataset, model, accuracy` (e.g. `modelrank records export records.csv`, or a benchmark's records.csv);
task metadata: a CSV whose first column is the task name (here: domain and number of classes). The new task
needs a metadata row but no records. Without --records, a synthetic zoo is generated in which the best model
depends on the task's domain, so a ranker that reads the metadata beats a fixed "best on average" order.

    python examples/learned_ranker.py --records records.csv --task-meta tasks.csv --task my_new_task
    python examples/learned_ranker.py                     # synthetic: 8 models, 20 past tasks, 1 new task

The same from the shell:

    modelrank spider train records.csv --out ranker --learner spider --task-meta tasks.csv
    modelrank spider rank ranker my_new_task --observed model_3=0.71
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from modelrank.evaluate import weighted_tau
from modelrank.spider import load_learner, load_records, make_learner

NEW_TASK = "new_task"


def synthetic_records(folder: Path, n_models: int = 8, n_tasks: int = 20, seed: int = 0) -> tuple[Path, Path, pd.Series]:
    """records.csv (past tasks), tasks.csv (metadata of every task, the new one too) and the new task's hidden
    accuracies. Half the models suit domain "photo", half "sketch"; each model also has a small own quality."""
    rng = np.random.default_rng(seed)
    models = [f"model_{i}" for i in range(n_models)]
    tasks = [f"task_{j}" for j in range(n_tasks)] + [NEW_TASK]
    domain = np.array(["photo", "sketch"])[rng.integers(0, 2, len(tasks))]
    suits_photo = np.arange(n_models) < n_models // 2
    affinity = np.where(suits_photo[:, None] == (domain == "photo")[None, :], 0.1, -0.1)
    accuracy = 0.6 + affinity + rng.uniform(0, 0.05, (n_models, 1)) + rng.normal(0, 0.01, (n_models, len(tasks)))
    table = pd.DataFrame([(t, m, accuracy[i, j]) for i, m in enumerate(models) for j, t in enumerate(tasks)],
                         columns=["dataset", "model", "accuracy"])
    folder.mkdir(parents=True, exist_ok=True)
    table[table["dataset"] != NEW_TASK].to_csv(folder / "records.csv", index=False)
    meta = pd.DataFrame({"task": tasks, "domain": domain, "num_classes": rng.integers(5, 50, len(tasks))})
    meta.to_csv(folder / "tasks.csv", index=False)
    hidden = table[table["dataset"] == NEW_TASK].set_index("model")["accuracy"]
    return folder / "records.csv", folder / "tasks.csv", hidden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path)
    parser.add_argument("--task-meta", type=Path)
    parser.add_argument("--task", default=NEW_TASK, help="The task to rank the models for.")
    parser.add_argument("--learner", default="spider", help="spider | graph | task_attention | model_prior | metadata_lr")
    parser.add_argument("--episodes", type=int, default=300, help="Training episodes of the spider learner.")
    parser.add_argument("--out", type=Path, help="Folder to save the trained ranker in [default: a temporary one].")
    args = parser.parse_args()
    hidden = None
    if args.records is None:
        args.records, args.task_meta, hidden = synthetic_records(Path(tempfile.mkdtemp(prefix="modelrank-records-")))

    records = load_records(str(args.records), task_meta=args.task_meta)
    options = {"episodes": args.episodes} if args.learner == "spider" else {}
    saved = make_learner(args.learner, **options).fit(records).save(args.out or tempfile.mkdtemp(prefix="modelrank-ranker-"))
    print(f"trained {args.learner} on {len(records.record_tasks)} tasks x {len(records.models)} models -> {saved}")

    ranking = load_learner(saved).predict(args.task).sort_values(ascending=False)
    print(f"\nmodels for {args.task}, best first:")
    print(ranking.to_string(float_format=lambda v: f"{v:.3f}"))
    if hidden is not None:  # the synthetic task's accuracies are known: how good is the learned order?
        prior = make_learner("model_prior").fit(records).predict(args.task)
        print(f"\nweighted tau vs the hidden accuracies: {args.learner} "
              f"{weighted_tau(hidden[ranking.index].to_numpy(), ranking.to_numpy()):.3f}, "
              f"best-on-average prior {weighted_tau(hidden[prior.index].to_numpy(), prior.to_numpy()):.3f}")


if __name__ == "__main__":
    main()
