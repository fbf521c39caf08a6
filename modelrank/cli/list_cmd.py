"""The `list` command: registered models, datasets, metrics and learners."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelrankError
from ._common import app
from ._output import check_output, emit_rows, format_option, out_option


@app.command("list")
def list_cmd(
    what: str = typer.Argument(..., help="models | datasets | metrics | parameters | learners"),
    fmt: str = format_option(),
    out: Optional[Path] = out_option("the listing"),
) -> None:
    """List the registered models, datasets, metrics (and their parameters) or learners.

    For metrics, "scope" says whether a metric scores each model on its own ("model") or all the models of a
    dataset relative to each other ("zoo", e.g. NCTI: its scores are only comparable within one call).
    "parameters" lists what `score --set METRIC.KEY=VALUE` takes: each metric's keys, defaults and values.
    """
    check_output(fmt, out)
    if what == "metrics":
        from ..metrics import METRICS

        columns = ["name", "needs", "tasks", "better", "scope", "reference"]
        rows = [[s.name, ", ".join(s.obj.needs), ", ".join(s.obj.tasks), "higher" if s.obj.higher_is_better else "lower",
                 "zoo" if s.obj.zoo_level else "model", s.obj.reference] for s in METRICS]
    elif what == "parameters":
        from ..metrics import METRICS
        from ..metrics.base import metric_parameters

        columns = ["metric", "parameter", "default", "accepts"]
        rows = [[s.name, key, default, accepts]
                for s in METRICS for key, default, accepts in metric_parameters(s.obj)]
    elif what == "models":
        from ..models import list_model_rows

        columns, rows = list_model_rows()
    elif what == "datasets":
        from ..data import list_dataset_rows

        columns, rows = list_dataset_rows()
    elif what == "learners":
        from ..spider import learner_rows

        columns, rows = learner_rows()
    else:
        raise ModelrankError(f"cannot list {what!r}; choose models, datasets, metrics, parameters or learners")
    # A parameter is named by its metric and key: both lead every block of a plain table cut to the terminal.
    emit_rows(columns, rows, fmt, out, title=what, lead=2 if what == "parameters" else 1)
