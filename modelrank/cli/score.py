"""The `score` command: transferability metrics on cached or brought features."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import ModelrankError
from ._common import (
    set_interrupt_note,
    app, console, err_console, CacheDirOption, FeatureFilesOption, ModelNamesOption, DatasetNameOption,
    TaskOption, load_feature_files, split_names, key_values, progress_display, check_extraction, SizeOption,
    DataRootOption,
)
from ._output import check_format, check_out, emit, format_option, out_option, write_csv


@app.command("score")
def score_cmd(
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    task: Optional[str] = TaskOption,
    metric: str = typer.Option("all", "--metric", help="Comma-separated metric names, or all (modelrank list metrics)."),
    ped: bool = typer.Option(False, "--ped", help="Score the PED-moved features (Li et al. ICCV'23): logme -> ped_logme, ..."),
    parameter: list[str] = typer.Option([], "--set", help="Metric parameter METRIC.KEY=VALUE, repeatable (e.g. transrate.eps=1e-3); "
                                        "such a metric's column is named with it."),
    out: Optional[Path] = out_option("the scores (Dataset,Model,<metric>...,<metric>_seconds|_flags|_rank[|_low|_high|_p_best])"),
    fmt: str = format_option(),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Resample the samples B times (seeded by --bootstrap-seed): "
                                  "each score's 95% interval and each model's probability of being best [default: off]."),
    bootstrap_seed: int = typer.Option(0, "--bootstrap-seed", help="Seed of the --bootstrap resamples."),
    bootstrap_exact: bool = typer.Option(False, "--bootstrap-exact", help="Recompute every metric on every resample "
                                         "(LogME otherwise uses its first-order resampled form: a few scores' cost)."),
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Score cached/extracted features of this dataset (with -m)."),
    models: Optional[str] = typer.Option(None, "-m", "--models", help="Comma-separated model names (with -d)."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split for -d [default: the dataset's first]."),
    limit: Optional[int] = SizeOption("--limit", "Seeded random subset of at most N samples (-d)."),
    per_class: Optional[int] = SizeOption("--per-class", "Seeded subset of N samples per class (-d)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling (-d)."),
    data_root: Optional[Path] = DataRootOption,
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Score models with transferability metrics and print a ranking per dataset."""
    set_interrupt_note("extracted features are kept in the feature cache; no scores were written; rerun to resume")
    from ..scoring import bootstrap_scores, check_metric_request, rank_scores, score_feature_sets, scoring_reporter

    check_format(fmt)
    check_out(out)
    if bootstrap < 0 or bootstrap == 1:
        raise ModelrankError(f"--bootstrap takes B >= 2 resamples (or 0 for none), not {bootstrap}")
    if bool(features) == bool(dataset or models):
        raise ModelrankError("give either --features FILE... or -d DATASET -m MODELS")
    if not features and not (dataset and models):
        raise ModelrankError("-d DATASET and -m MODELS go together")
    metric_names = split_names(metric)
    if ped:
        from ..metrics.ped import ped_variant

        if metric_names == ["all"]:
            raise ModelrankError("--ped needs named metrics (e.g. --metric logme,sfda --ped)")
        metric_names = [ped_variant(name) for name in metric_names]
    params: dict[str, dict[str, object]] = {}
    for key, value in key_values(parameter).items():
        name, dot, field = key.partition(".")
        if not (dot and name and field):
            raise ModelrankError(f"--set takes METRIC.KEY=VALUE, got {key!r}")
        params.setdefault(ped_variant(name) if ped else name, {})[field] = value
    specs, _ = check_metric_request(metric_names, params)  # names, parameters and values before any extraction
    if features:
        feature_sets = load_feature_files(features, model_name, dataset_name, task)
    else:
        from ..extraction import load_feature_pairs

        names = split_names(models)
        check_extraction(names, dataset, split, cache_dir)
        with progress_display() as display:
            loaded = load_feature_pairs([(m, dataset) for m in names], split, limit=limit, per_class=per_class,
                                        seed=seed, cache_dir=str(cache_dir) if cache_dir else None,
                                        data_root=str(data_root) if data_root else None, progress=display)
        feature_sets = [loaded[m, dataset] for m in names]
    with progress_display() as display:
        frame = score_feature_sets(feature_sets, metric_names, **params,
                                   progress=scoring_reporter(display, len(feature_sets), len(specs)))
        if bootstrap:
            frame = bootstrap_scores(feature_sets, frame, bootstrap, bootstrap_seed, exact=bootstrap_exact, **params,
                                     progress=scoring_reporter(display, len(feature_sets), None, "bootstrap"))
    for note in frame.attrs["notes"]:
        err_console.print(f"[yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)
    frame = rank_scores(frame)
    if fmt == "table" and (out is None or str(out) != "-"):
        if console.is_terminal:
            console.print(Group(*_score_tables(frame, console.width)))
        else:
            emit(_plain_frame(frame), "table")
        for line in _footnotes(frame):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        if out is not None:
            write_csv(frame, out)
    else:
        emit(frame, fmt, out)
    failures = frame.attrs["failures"]
    if failures:  # the other metrics' scores are shown and written, yet the run did not do all that was asked: exit 2
        where = f"written to {out}" if out else "shown above"
        raise ModelrankError(f"{len(failures)} of {len(frame.attrs['higher_is_better'])} metrics failed "
                             f"({', '.join(failures)}; the warnings above say why); the other scores are {where}")


# ---------------------------------------------------------------------------------------------- table
# Models x metrics, per dataset: each cell is the score and its rank (1 = best; "2=" a tie), the models sorted by
# their mean rank over the metrics that rank. Metric columns are wrapped into blocks that fit the terminal.
SATURATED_MARK = "*"


def _display_ranks(ranks: pd.Series) -> pd.Series:
    """Average ranks (1.5, 1.5, 3) as a person reads them: competition ranks, "=" for ties (1=, 1=, 3)."""
    values = ranks.to_numpy(dtype=float)
    out = []
    for value in values:
        if not np.isfinite(value):
            out.append("—")
            continue
        better = int((values < value).sum())
        tied = int((values == value).sum()) > 1
        out.append(f"{better + 1}{'=' if tied else ''}")
    return pd.Series(out, index=ranks.index)


def _value_text(value: float, flag: str) -> str:
    from ..scoring import SATURATED

    if not np.isfinite(value):
        return "n/a"
    return f"{value:.6g}{SATURATED_MARK if SATURATED in flag.split(';') else ''}"


def _ordered(rows: pd.DataFrame, mean_rank: np.ndarray) -> pd.DataFrame:
    return rows.assign(_mean_rank=mean_rank).sort_values("_mean_rank", kind="stable", na_position="last")


def _metric_cells(rows: pd.DataFrame, column: str, boot: bool) -> list[str]:
    """Rich markup of one metric's column: score (rank), best in bold green; with a bootstrap, the interval
    and the probability of being best under it."""
    ranks = _display_ranks(rows[f"{column}_rank"])
    flags = rows.get(f"{column}_flags", pd.Series("", index=rows.index)).fillna("")
    cells = []
    for index in rows.index:
        text = f"{_value_text(rows.at[index, column], flags[index])} ({ranks[index]})"
        if ranks[index] in ("1", "1="):
            text = f"[bold green]{escape(text)}[/]"
        else:
            text = escape(text)
        if boot and np.isfinite(rows.at[index, f"{column}_low"]):
            text += (f"\n[dim]{rows.at[index, f'{column}_low']:.4g}..{rows.at[index, f'{column}_high']:.4g}\n"
                     f"P(best) {rows.at[index, f'{column}_p_best']:.2f}[/]")
        cells.append(text)
    return cells


def _score_tables(frame: pd.DataFrame, width: int) -> list[Table]:
    """Per dataset, the models x metrics table, its metric columns split into blocks no wider than ``width``."""
    metrics = list(frame.attrs["higher_is_better"])
    boot = "bootstrap" in frame.attrs
    mean_rank = pd.Series(frame.attrs["mean_rank"], index=frame.index)
    tables = []
    for dataset, rows in frame.groupby("Dataset", sort=False):
        rows = _ordered(rows, mean_rank[rows.index].to_numpy())
        shown = [m for m in metrics if rows[m].notna().any()]
        cells = {m: _metric_cells(rows, m, boot) for m in shown}
        model_width = max(len("model"), *(len(str(m)) for m in rows["Model"]), len("mean rank"))

        def column_width(m: str) -> int:
            plain = [Text.from_markup(c).plain for c in cells[m]]
            return max(len(m) + 2, *(len(line) for c in plain for line in c.split("\n")))

        blocks, current, used = [], [], model_width + 4 + 9 + 3
        for m in shown:
            needed = column_width(m) + 3
            if current and used + needed > width:
                blocks.append(current)
                current, used = [], model_width + 4 + 9 + 3
            current.append(m)
            used += needed
        blocks.append(current)
        for number, block in enumerate(blocks):
            part = f" ({number + 1}/{len(blocks)})" if len(blocks) > 1 else ""
            table = Table(title=f"{escape(str(dataset))}: score (rank), best first{part}", header_style="bold")
            table.add_column("model", no_wrap=True)
            table.add_column("mean rank", justify="right", no_wrap=True)
            for m in block:
                arrow = "↑" if frame.attrs["higher_is_better"][m] else "↓"
                table.add_column(escape(f"{m} {arrow}"), justify="right", no_wrap=True)
            for i, index in enumerate(rows.index):
                consensus = rows.at[index, "_mean_rank"]
                table.add_row(escape(str(rows.at[index, "Model"])),
                              f"{consensus:.2f}" if np.isfinite(consensus) else "—",
                              *[cells[m][i] for m in block])
            tables.append(table)
    return tables


def _plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as plain columns for a pipe: Dataset, Model, mean rank, then per metric its score and rank."""
    metrics = [m for m in frame.attrs["higher_is_better"] if frame[m].notna().any()]
    mean_rank = pd.Series(frame.attrs["mean_rank"], index=frame.index)
    parts = []
    for _, rows in frame.groupby("Dataset", sort=False):
        rows = _ordered(rows, mean_rank[rows.index].to_numpy())
        plain = {"Dataset": rows["Dataset"], "Model": rows["Model"], "mean_rank": rows["_mean_rank"].round(2)}
        for m in metrics:
            flags = rows.get(f"{m}_flags", pd.Series("", index=rows.index)).fillna("")
            plain[m] = [_value_text(v, f) for v, f in zip(rows[m], flags)]
            plain[f"{m}_rank"] = _display_ranks(rows[f"{m}_rank"])
            if "bootstrap" in frame.attrs:
                for suffix in ("_low", "_high", "_p_best"):
                    plain[f"{m}{suffix}"] = rows[f"{m}{suffix}"].round(6)
        parts.append(pd.DataFrame(plain))
    return pd.concat(parts, ignore_index=True)


def _footnotes(frame: pd.DataFrame) -> list[str]:
    lines = [f"no ranking: {metric} on {dataset}: {reason}" for dataset, metric, reason in frame.attrs["no_ranking"]]
    flagged = [m for m in frame.attrs["higher_is_better"] if (frame.get(f"{m}_flags", pd.Series(dtype=str)) == "saturated").any()]
    if flagged:
        lines.append(f"{SATURATED_MARK} saturated: the metric no longer separates models on this data ({', '.join(flagged)})")
    if "bootstrap" in frame.attrs:
        b = frame.attrs["bootstrap"]
        lines.append(f"bootstrap: {b['resamples']} resamples (seed {b['seed']}{', exact' if b['exact'] else ''}), "
                     f"{b['level']:.0%} intervals; P(best) = share of resamples where the model is best")
    return lines
