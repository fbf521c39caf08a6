"""The `list` command: registered models, datasets, metrics and learners."""

from __future__ import annotations


import typer

from ..errors import ModelrankError
from ._common import app, print_table


@app.command("list")
def list_cmd(
    what: str = typer.Argument(..., help="models | datasets | metrics | learners"),
) -> None:
    """List the registered models, datasets, metrics or learners."""
    if what == "metrics":
        from ..metrics import METRICS

        rows = [
            [
                s.name,
                ", ".join(s.obj.needs),
                ", ".join(s.obj.tasks),
                "higher" if s.obj.higher_is_better else "lower",
                "zoo" if s.obj.zoo_level else "",
                s.obj.reference,
            ]
            for s in METRICS
        ]
        print_table("metrics", ["name", "needs", "tasks", "better", "scope", "reference"], rows)
    elif what == "models":
        from ..models import list_model_rows

        columns, rows = list_model_rows()
        print_table("models", columns, rows)
    elif what == "datasets":
        from ..data import list_dataset_rows

        columns, rows = list_dataset_rows()
        print_table("datasets", columns, rows)
    elif what == "learners":
        from ..spider import learner_rows

        from rich.markup import escape

        columns, rows = learner_rows()
        rows = [[escape(cell) for cell in row] for row in rows]
        print_table("learners (modelrank spider train --learner NAME)", columns, rows)
    else:
        raise ModelrankError(f"cannot list {what!r}; choose models, datasets, metrics or learners")
