"""The `score` table: models x metrics per dataset, each cell the score and its rank, sorted by mean rank.

Kept apart from the command so that `modelrank --help` does not import numpy and pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ..display import escape
from ..scoring import SATURATED, saturated_rows

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
            lines = [f"{rows.at[index, f'{column}_low']:.4g}..{rows.at[index, f'{column}_high']:.4g}"]
            best = rows.at[index, f"{column}_p_best"]
            if np.isfinite(best):  # NaN where the metric ranks nothing
                lines.append(f"P(best) {best:.2f}")
            text += "\n[dim]" + "\n".join(lines) + "[/]"
        cells.append(text)
    return cells


def score_tables(frame: pd.DataFrame, width: int) -> list[Table]:
    """Per dataset, the models x metrics table, its metric columns split into blocks no wider than ``width``."""
    metrics = list(frame.attrs["higher_is_better"])
    boot = "bootstrap" in frame.attrs
    mean_rank = pd.Series(frame.attrs["mean_rank"], index=frame.index)
    tables = []
    for dataset, rows in frame.groupby("Dataset", sort=False):
        rows = _ordered(rows, mean_rank[rows.index].to_numpy())
        shown = [m for m in metrics if rows[m].notna().any()]
        cells = {m: _metric_cells(rows, m, boot) for m in shown}
        # A name longer than half the width folds onto more lines: rich would otherwise cut the scores.
        model_width = min(max(len("model"), *(cell_len(str(m)) for m in rows["Model"])), max(len("model"), width // 2))

        def column_width(m: str) -> int:
            plain = [Text.from_markup(c).plain for c in cells[m]]
            return max(len(m) + 2, *(len(line) for c in plain for line in c.split("\n")))

        # Each column after the first takes its width + 3: a padding space on either side and the divider.
        blocks: list[list[str]] = [[]]
        used = model_width + len("mean rank") + 3  # the first block also shows the mean rank
        for m in shown:
            needed = column_width(m) + 3
            if blocks[-1] and used + needed > width:
                blocks.append([])
                used = model_width
            blocks[-1].append(m)
            used += needed
        for number, block in enumerate(blocks):
            part = f" ({number + 1}/{len(blocks)})" if len(blocks) > 1 else ""
            table = Table(title=Text(f"{dataset}: score (rank), best first{part}"), header_style="bold",
                          box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
            table.add_column("model", overflow="fold")
            if number == 0:
                table.add_column("mean rank", justify="right", no_wrap=True)
            for m in block:
                arrow = "↑" if frame.attrs["higher_is_better"][m] else "↓"
                table.add_column(escape(f"{m} {arrow}"), justify="right", no_wrap=True)
            for i, index in enumerate(rows.index):
                consensus = rows.at[index, "_mean_rank"]
                first = [f"{consensus:.2f}" if np.isfinite(consensus) else "—"] if number == 0 else []
                table.add_row(Text(str(rows.at[index, "Model"])), *first, *[cells[m][i] for m in block])
            tables.append(table)
    return tables


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
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


def footnotes(frame: pd.DataFrame) -> list[str]:
    # one line per dataset and reason: a single model scored with --metric all has one reason for every metric
    unranked: dict[tuple[str, str], list[str]] = {}
    for dataset, metric, reason in frame.attrs["no_ranking"]:
        unranked.setdefault((dataset, reason), []).append(metric)
    lines = [f"no ranking: {', '.join(metrics)} on {dataset}: {reason}"
             for (dataset, reason), metrics in unranked.items()]
    flagged = [m for m in frame.attrs["higher_is_better"] if saturated_rows(frame, m).any()]
    if flagged:
        lines.append(f"{SATURATED_MARK} saturated: the metric no longer separates models on this data; not ranked "
                     f"({', '.join(flagged)})")
    if "bootstrap" in frame.attrs:
        b = frame.attrs["bootstrap"]
        lines.append(f"bootstrap: {b['resamples']} resamples (seed {b['seed']}{', exact' if b['exact'] else ''}), "
                     f"{b['level']:.0%} intervals; P(best) = share of resamples where the model is best"
                     + ("" if b["exact"] else "; LogME with N > D from its resampled form (narrower than exact "
                        "at high D / N: --bootstrap-exact)"))
    return lines
