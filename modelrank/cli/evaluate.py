"""The `evaluate` command: scores against fine-tune ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelrankError
from ._common import app, console, split_names


@app.command("evaluate")
def evaluate_cmd(
    scores: Path = typer.Option(..., "--scores", help="Scores CSV: long (dataset,model,method,score) or wide (Dataset,Model,<method>...)."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth CSV: dataset, model and accuracy / test_metric / eval_accuracy."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the long table method,dataset,measure,value here."),
    protocol: str = typer.Option("scipy", "--protocol", help="Weighted tau convention: scipy (rank=True, symmetric) | model_spider (weights from the truth's rank)."),
    tau: str = typer.Option("weighted,kendall,spearman,pearson,rel,regret", "--tau", help="Measures, comma-separated: weighted, kendall, spearman, pearson, rel, regret."),
    k: int = typer.Option(1, "--k", help="k of rel@k and regret@k."),
    lower_is_better: str = typer.Option("", "--lower-is-better", help="Methods whose raw score is better when lower (comma-separated)."),
    duplicates: str = typer.Option("error", "--duplicates", help="Repeated (dataset, model) rows in the truth: error | max (keep the best)."),
    truth_where: list[str] = typer.Option([], "--truth-where", help="Keep truth rows with COLUMN=VALUE (repeatable), e.g. protocol=linear."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save score-vs-truth scatter plots (PNG; needs modelrank[plot])."),
) -> None:
    """Judge transferability scores against fine-tune ground truth (weighted tau, Kendall, ..., rel@k, regret@k)."""
    from ..evaluate.evaluation import evaluate
    from ..evaluate.report import plot_evaluation, print_evaluation

    where = {}
    for pair in truth_where:
        column, sep, value = pair.partition("=")
        if not sep or not column.strip():
            raise ModelrankError(f"--truth-where takes COLUMN=VALUE, not {pair!r}")
        where[column.strip()] = value.strip()
    evaluation = evaluate(
        scores, truth, measures=split_names(tau), protocol=protocol, k=k,
        lower_is_better=split_names(lower_is_better), duplicates=duplicates, truth_where=where,
    )
    print_evaluation(evaluation, console)
    if out is not None:
        evaluation.to_csv(out)
        console.print(f"wrote {out}")
    if plot is not None:
        console.print(f"wrote {plot_evaluation(evaluation, plot)}")
