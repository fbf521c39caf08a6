"""The `spider` commands: learned rankers trained on fine-tune records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import ModelrankError
from ._common import app, console, split_names, print_table, key_values


spider_app = typer.Typer(help="Learned ranking for unseen tasks: Model Spider, a graph learner and baselines, trained "
                         "on fine-tune records.", no_args_is_help=True)
app.add_typer(spider_app, name="spider")
RecordsArgument = typer.Argument(..., help="records: dataset,model,accuracy CSV | domainnet:FOLDER | "
                                 "transfergraph-image:FOLDER | transfergraph-text:FOLDER | benchmark:FOLDER")



@spider_app.command("train")
def spider_train(
    records: str = RecordsArgument,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the trained learner in."),
    learner: str = typer.Option("spider", "--learner", "-l", help="spider | graph | task_attention | model_prior | metadata_lr | metric | random"),
    option: list[str] = typer.Option([], "--set", help="Learner option key=value (repeatable), e.g. --set epochs=50"),
    task_meta: Optional[Path] = typer.Option(None, help="CSV of task metadata (first column = task name)."),
    model_meta: Optional[Path] = typer.Option(None, help="CSV of model metadata (first column = model name)."),
) -> None:
    """Train a learner on fine-tune records and save it."""
    from ..spider import make_learner
    from ..spider.loaders import load_records

    data = load_records(records, task_meta, model_meta)
    path = make_learner(learner, **key_values(option)).fit(data).save(out)
    console.print(f"{learner}: {len(data.models)} models, {len(data.record_tasks)} tasks with records -> {path}")


@spider_app.command("rank")
def spider_rank(
    learner_dir: Path = typer.Argument(..., help="Folder written by `modelrank spider train`."),
    task: str = typer.Argument(..., help="Task name (known to the learner from its records or metadata)."),
    observed: list[str] = typer.Option([], "--observed", help="model=accuracy already fine-tuned (repeatable)."),
    top: int = typer.Option(10, help="How many models to show."),
) -> None:
    """Rank the zoo for a task with a saved learner."""
    from ..spider import load_learner

    seen = {k: _accuracy(k, v) for k, v in key_values(observed).items()} if observed else None
    scores = load_learner(learner_dir).predict(task, observed=seen).sort_values(ascending=False)
    print_table(f"ranking for {task}", ["rank", "model", "score"],
                [[i + 1, m, f"{s:.4f}"] for i, (m, s) in enumerate(scores.head(top).items())])


@spider_app.command("eval")
def spider_eval(
    records: str = RecordsArgument,
    learners: str = typer.Option("random,model_prior,task_attention,graph,spider", help="Comma-separated learners."),
    protocol: str = typer.Option("cold_start", help="cold_start | partial | seed_mixture"),
    by: str = typer.Option("task", help="Held-out groups: task | domain (needs a domain column in task metadata)."),
    folds: Optional[int] = typer.Option(None, help="Number of task folds (default: leave-one-task-out)."),
    k_observed: int = typer.Option(3, "--k", help="Models revealed per task in the partial protocol."),
    option: list[str] = typer.Option([], "--set", help="Option key=value, passed to each learner that has it (e.g. "
                                     "epochs=50, cv_group=domain)."),
    seed: int = typer.Option(0),
) -> None:
    """Evaluate learners with a cold-start / partially observed protocol and print the mean measures."""
    from ..spider import LEARNERS, make_learner
    from ..spider.loaders import load_records
    from ..spider.protocols import evaluate, seed_mixture, task_folds

    data = load_records(records)
    extra = key_values(option)
    names = split_names(learners)
    options = {name: set(LEARNERS.get(name).defaults) for name in names}
    unused = sorted(set(extra) - set().union(*options.values()))
    if unused:
        raise ModelrankError(f"no learner among {', '.join(names)} has option(s) {', '.join(unused)}")
    for name in names:
        config = {key: value for key, value in extra.items() if key in options[name]}
        factory = lambda: make_learner(name, **config)  # noqa: E731
        if protocol == "seed_mixture":
            result = seed_mixture(factory, data, seed=seed)
        else:
            result = evaluate(factory, data, protocol, task_folds(data, by, folds, seed=seed), k_observed, seed)
        summary = result.summary()
        print_table(f"{name} ({protocol}, fit {sum(result.fit_seconds):.1f} s)", ["protocol", *summary.columns],
                    [[idx, *[int(row[c]) if c in ("n", "tasks") else f"{row[c]:.3f}" for c in summary.columns]]
                     for idx, row in summary.iterrows()])


def _accuracy(model: str, value: object) -> float:
    """An --observed accuracy: a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number):
        raise ModelrankError(f"--observed {model}={value}: the accuracy must be a number")
    return number
