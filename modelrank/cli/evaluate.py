"""The `evaluate` command: scores against fine-tune ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..display import escape
from ..errors import ModelrankError
from ..registry import COMMA_HINT, names_of, split_names
from ._common import SEVERAL, app, console, err_console
from ._output import check_out, check_output, emit, fits_terminal, format_option, out_option, write_csv


def _noise(value: Optional[str]) -> float | str | None:
    """--truth-noise: a number (one std for every value) or the name of the truth column holding each std."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


@app.command("evaluate")
def evaluate_cmd(
    scores: Path = typer.Option(..., "--scores", help="Scores CSV: long (dataset,model,method,score) or wide (Dataset,Model,<method>...)."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth CSV: dataset, model and accuracy / test_metric / eval_accuracy."),
    out: Optional[Path] = out_option("the long table method,dataset,measure,value,se,n_tasks,note"),
    fmt: str = format_option(),
    protocol: str = typer.Option("scipy", "--protocol", help="Weighted tau convention: scipy (rank=True, symmetric) | model_spider (weights from the truth's rank)."),
    tau: list[str] = typer.Option(["weighted,kendall,spearman,pearson,rel,regret"], "--tau",
                                  help=f"Measures, {SEVERAL}: weighted, kendall, spearman, pearson, rel, regret."),
    k: int = typer.Option(1, "--k", help="k of rel@k and regret@k."),
    lower_is_better: list[str] = typer.Option([], "--lower-is-better", help=f"Methods whose raw score is better when "
                                              f"lower ({SEVERAL}; the commas of a name's [...], as in "
                                              "knn[k=3,metric=euclidean], are its own)."),
    duplicates: str = typer.Option("error", "--duplicates", help="Repeated (dataset, model) rows in the truth: error | "
                                   "max (keep the best) | val (the run with the best val_metric, as a sweep selects)."),
    score_duplicates: str = typer.Option("error", "--score-duplicates",
                                         help="Repeated (method, dataset, model) rows in the scores, e.g. a log each "
                                         "run appends to: error | mean (average them)."),
    truth_where: list[str] = typer.Option([], "--truth-where", help="Keep truth rows with COLUMN=VALUE (repeatable), e.g. protocol=linear."),
    truth_noise: Optional[str] = typer.Option(None, "--truth-noise", help="Noise (std) of the ground truth, or the truth column "
                                              "holding it (e.g. accuracy_std of benchmark records): adds noise_tau, which "
                                              "does not reward ordering models within noise."),
    exclude_flagged: bool = typer.Option(True, "--exclude-flagged/--keep-flagged",
                                         help="Leave out scores the metric flagged as saturated (<method>_flags columns "
                                         "of `score --out`), which `score` does not rank either, or keep them at the "
                                         "metric's ceiling as published protocols do; fewer than two unsaturated "
                                         "scores on a dataset give no ranking either way."),
    compare: Optional[str] = typer.Option(None, "--compare", help="A,B: paired comparison of two methods over the datasets "
                                          "(mean difference, standard error, wins/losses); with --format csv|json it is what stdout carries."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save score-vs-truth scatter plots (PNG; needs matplotlib: pip install 'modelrank[plot]')."),
) -> None:
    """Judge transferability scores against fine-tune ground truth (weighted tau, Kendall, ..., rel@k, regret@k).

    Scores a metric cannot tell apart (equal within its precision) are ties; where all of a method's scores on
    a dataset are tied it gives no ranking there, which is left out of its means (the "ranked" column).
    """
    from ..evaluate.evaluation import compare_methods, evaluate
    from ..evaluate.report import evaluation_tables, plain_tables, plot_evaluation, plot_file

    inputs = [("--scores", scores), ("--truth", truth)]
    check_output(fmt, out, inputs)
    if plot is not None:
        check_out(plot, "--plot", inputs)
        plot = plot_file(plot)
    pair = split_names(compare) if compare else []
    if compare is not None and (len(pair) != 2 or pair[0] == pair[1]):  # A,A: a table of zeros
        pieces = f" ({len(pair)} names: {', '.join(map(repr, pair))}; {COMMA_HINT})" if len(pair) > 2 else ""
        raise ModelrankError(f"--compare takes two different methods A,B, not {compare!r}{pieces}")
    if compare is not None and out is not None and str(out) == "-":
        raise ModelrankError("--compare and --out - would both print on stdout: write the results with --out FILE")
    where = {}
    for item in truth_where:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise ModelrankError(f"--truth-where takes COLUMN=VALUE, not {item!r}")
        where[column.strip()] = value.strip()
    evaluation = evaluate(
        scores, truth, measures=names_of(tau), protocol=protocol, k=k,
        lower_is_better=names_of(lower_is_better), duplicates=duplicates, score_duplicates=score_duplicates,
        truth_where=where,
        exclude_flagged=exclude_flagged, truth_noise=_noise(truth_noise),
    )
    comparison = compare_methods(evaluation, *pair) if pair else None
    for method, dataset, reason in evaluation.no_ranking.itertuples(index=False):
        err_console.print(f"[yellow]no ranking:[/] {escape(f'{method} / {dataset}: {reason}')}", highlight=False, soft_wrap=True)
    for warning in evaluation.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if fmt == "table" and (out is None or str(out) != "-"):
        tables = evaluation_tables(evaluation) if console.is_terminal else []
        if tables and all(map(fits_terminal, tables)):
            for table in tables:
                console.print(table)
        else:  # piped, or too wide for the terminal: plain columns (in blocks that fit, led by measure and method)
            emit(plain_tables(evaluation), "table", lead=2)
        if comparison is not None:
            emit(comparison, "table", title=f"paired comparison {pair[0]} - {pair[1]} over datasets")
        if out is not None:
            write_csv(evaluation.results, out)
    else:
        emit(evaluation.results if comparison is None else comparison, fmt, out if comparison is None else None)
        if comparison is not None and out is not None:
            write_csv(evaluation.results, out)
    if plot is not None:
        err_console.print(f"wrote {escape(str(plot_evaluation(evaluation, plot)))}", highlight=False, soft_wrap=True)
