"""Show an `Evaluation`: rich tables in the papers' layout, and score-vs-truth scatter plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..errors import InvalidInputError, MissingResourceError
from .evaluation import MEAN, WEIGHTED_MEAN, Evaluation

if TYPE_CHECKING:
    import pandas as pd


def _best_per_column(values: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Mask of the best finite cell(s) of every column (ties all bold)."""
    filled = np.where(np.isfinite(values), values, np.inf if lower_is_better else -np.inf)
    best = filled.min(axis=0) if lower_is_better else filled.max(axis=0)
    return np.isfinite(values) & np.isclose(filled, best, rtol=0, atol=5e-4)


def evaluation_tables(evaluation: Evaluation, digits: int = 3) -> list[Table]:
    """One table per measure: methods as rows, datasets then mean (± its standard error over datasets) and
    weighted mean as columns, best in bold; "no rank" where a method's scores are all tied on a dataset, and
    per method the datasets it ranks ("ranked 1 of 2": the means are over those only)."""
    tables = []
    unranked = set(zip(evaluation.no_ranking["method"], evaluation.no_ranking["dataset"]))
    ranked = evaluation.ranked_tasks()
    means = evaluation.results[evaluation.results["dataset"] == MEAN].set_index(["method", "measure"])["se"]
    for measure in evaluation.measures:
        frame = evaluation.table(measure)
        lower = evaluation.lower_is_better[measure]
        values = frame.to_numpy(dtype=np.float64)
        bold = _best_per_column(values, lower)
        table = Table(title=f"{measure} ({'lower' if lower else 'higher'} is better)", header_style="bold")
        table.add_column("method")
        for column in frame.columns:
            label = {MEAN: "Mean", WEIGHTED_MEAN: "W.Mean"}.get(column, column)
            table.add_column(Text(str(label)), justify="right")
            if column == MEAN:
                table.add_column("±SE", justify="right")
        table.add_column("ranked", justify="right")
        for i, method in enumerate(frame.index):
            cells = []
            for j, (column, value) in enumerate(zip(frame.columns, values[i])):
                text = "no rank" if (method, column) in unranked else "—" if not np.isfinite(value) else f"{value:.{digits}f}"
                cells.append(f"[bold]{text}[/bold]" if bold[i, j] else text)
                if column == MEAN:
                    se = means.get((method, measure), np.nan)
                    cells.append(f"{se:.{digits}f}" if np.isfinite(se) else "—")
            table.add_row(Text(str(method)), *cells, ranked.get(method, ""))
        tables.append(table)
    return tables


def plain_tables(evaluation: Evaluation) -> "pd.DataFrame":
    """Every measure's table stacked for plain text: measure, method, datasets, mean, se, weighted mean, ranked."""
    import pandas as pd

    se = evaluation.results[evaluation.results["dataset"] == MEAN].set_index(["method", "measure"])["se"]
    ranked = evaluation.ranked_tasks()
    unranked = list(zip(evaluation.no_ranking["method"], evaluation.no_ranking["dataset"]))
    parts = []
    for measure in evaluation.measures:
        frame = evaluation.table(measure).round(4).astype(object)
        for method, dataset in unranked:
            if method in frame.index:
                frame.loc[method, dataset] = "no rank"
        frame.insert(frame.columns.get_loc(MEAN) + 1, "se", [round(se.get((m, measure), np.nan), 4) for m in frame.index])
        frame["ranked"] = ranked.reindex(frame.index).to_numpy()
        parts.append(frame.rename_axis("method").reset_index().assign(measure=measure))
    stacked = pd.concat(parts, ignore_index=True)
    return stacked[["measure", *[c for c in stacked.columns if c != "measure"]]]


def print_wide(console: Console, renderable: Table) -> None:
    """Print at the table's natural width rather than truncate numbers when the console is narrower."""
    width = console.width
    console.width = max(width, Measurement.get(console, console.options.update_width(10_000), renderable).maximum)
    try:
        console.print(renderable)
    finally:
        console.width = width


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingResourceError("--plot needs matplotlib: pip install 'modelrank[plot]'") from exc
    return plt


def plot_file(path: str | Path) -> Path:
    """The file a plot is saved as: ``path`` when its suffix names a format matplotlib writes, ``path`` + ``.png``
    without a suffix (matplotlib's own choice, made visible). Checked before any work."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(f"{path.name}.png")
    _pyplot()  # matplotlib is installed (else a one-line error)
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise InvalidInputError(f"cannot plot to {path}: matplotlib writes {', '.join(sorted(formats))}, "
                                f"not {path.suffix}")
    return path


def plot_evaluation(evaluation: Evaluation, path: str | Path, measure: str | None = None) -> Path:
    """Scatter of score (x) vs ground truth (y): one panel per (method, dataset), titled with a measure; saved
    as ``plot_file(path)`` (written to a temporary name and renamed), which is returned.

    Needs matplotlib (``pip install 'modelrank[plot]'``).
    """
    from ..cache import atomic_write

    plt = _pyplot()
    path = plot_file(path)
    measure = measure or evaluation.measures[0]
    table = evaluation.table(measure)
    methods, datasets = evaluation.methods, evaluation.datasets
    fig, axes = plt.subplots(
        len(methods), len(datasets), figsize=(2.4 * len(datasets), 2.0 * len(methods)), squeeze=False
    )
    grouped = dict(tuple(evaluation.pairs.groupby(["method", "dataset"])))
    for i, method in enumerate(methods):
        for j, dataset in enumerate(datasets):
            ax = axes[i, j]
            cell = grouped.get((method, dataset))
            if cell is not None:
                ax.scatter(cell["score"], cell["truth"], s=12)
                value = table.loc[method, dataset]
                ax.set_title(f"{measure} {value:.3f}" if np.isfinite(value) else "n/a", fontsize=7)
            ax.tick_params(labelsize=5)
            if i == 0:
                ax.annotate(dataset, (0.5, 1.25), xycoords="axes fraction", ha="center", fontsize=9, weight="bold")
            if j == 0:
                ax.set_ylabel(f"{method}\ntruth", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix[1:].lower()))
    plt.close(fig)
    return path
