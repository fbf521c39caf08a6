"""Fine-tune records: the table the learned rankers are trained on, plus what is known about models and tasks.

A record is one (dataset, model, accuracy) triple: model ``model`` was fine-tuned on task ``dataset`` and
reached ``accuracy`` (any higher-is-better number). Side information, all optional:

* ``model_meta`` / ``task_meta``: metadata tables indexed by model / task name (architecture, #params,
  #classes, domain, ...). Numeric and low-cardinality text columns become node features.
* ``model_embed`` / ``task_embed``: numeric embeddings indexed by name (e.g. a text embedding of the task's
  domain and class names).
* ``scores``: transferability scores (LogME, H-score, ...) per (dataset, model) pair. These are cheap to
  compute for a new task, so a held-out task keeps them while losing its accuracy rows.
* ``task_prototypes``: per task, the class prototypes (C, D) of one general encoder's features.
* ``model_task_prototypes``: per (model, task), the class prototypes (C, D_model) of that model's own
  features on the task (what Model Spider's re-ranking uses).

Held-out tasks keep their side information (it describes the task, it is not the label); only their
accuracy rows are removed (``without_tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..evaluate.tables import NAME_COLUMNS
from ..tabular import column_any_case, read_csv_file

RECORD_COLUMNS = ("dataset", "model", "accuracy")


#: Largest |accuracy| a record may hold. Records are accuracies or another metric of a fine-tuned model; the learners
#: standardise them in float32, whose squares overflow from ~1.8e19 (a 1e308 became inf and a ranking of noise).
RECORD_VALUE_BOUND = 1e12


@dataclass
class TaskInfo:
    """Everything a learner may use about one task at ranking time (never its accuracies).

    ``meta``: one metadata row (column -> value); ``embedding``: 1-D vector; ``scores``: DataFrame indexed
    by model with one column per transferability score; ``prototypes``: (C, D) general-encoder class
    prototypes; ``model_prototypes``: model -> (C, D_model) prototypes of that model's features;
    ``rerank_k``: how many of the top models a learner's own re-ranking re-orders (default: the learner's setting).
    """

    name: str
    meta: Mapping[str, object] | None = None
    embedding: np.ndarray | None = None
    scores: pd.DataFrame | None = None
    prototypes: np.ndarray | None = None
    model_prototypes: Mapping[str, np.ndarray] | None = None
    rerank_k: int | None = None


def _check_index(frame: pd.DataFrame | None, what: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"{what} must be a pandas DataFrame indexed by name, got {type(frame).__name__}")
    # a blank name (a metadata CSV's empty first cell) was a float NaN among the names: sorting them was a traceback
    unnamed = frame.index.isna() | (frame.index.astype(str).str.strip() == "")
    if unnamed.any():
        raise InvalidInputError(f"{what} has {int(unnamed.sum())} row(s) without a name")
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise InvalidInputError(f"{what} has duplicated names: {dup}")
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    return frame


@dataclass
class Records:
    """Fine-tune records (``table``: dataset, model, accuracy) and optional side information (see module doc)."""

    table: pd.DataFrame
    model_meta: pd.DataFrame | None = None
    task_meta: pd.DataFrame | None = None
    model_embed: pd.DataFrame | None = None
    task_embed: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    task_prototypes: dict[str, np.ndarray] | None = None
    model_task_prototypes: dict[tuple[str, str], np.ndarray] | None = None
    name: str = "records"
    info: dict[str, object] = field(default_factory=dict)
    held_out: frozenset[str] = frozenset()  # tasks whose records were removed: still known by name

    def __post_init__(self) -> None:
        table = self.table
        if not isinstance(table, pd.DataFrame):
            raise InvalidInputError(f"records must be a DataFrame with columns {RECORD_COLUMNS}")
        missing = [c for c in RECORD_COLUMNS if c not in table.columns]
        if missing:
            raise InvalidInputError(f"records table lacks column(s) {missing}; it needs {list(RECORD_COLUMNS)}")
        table = table.loc[:, list(RECORD_COLUMNS)].copy()
        table["dataset"] = table["dataset"].astype(str)
        table["model"] = table["model"].astype(str)
        accuracy = pd.to_numeric(table["accuracy"], errors="coerce")
        bad = ~np.isfinite(accuracy.to_numpy(dtype=float))
        if bad.any():
            rows = table.loc[bad, ["dataset", "model"]].head(3).values.tolist()
            raise InvalidInputError(f"{int(bad.sum())} record(s) have a missing or non-numeric accuracy, e.g. {rows}")
        huge = np.abs(accuracy.to_numpy(dtype=float)) > RECORD_VALUE_BOUND
        if huge.any():
            rows = table.loc[huge, ["dataset", "model", "accuracy"]].head(3).values.tolist()
            raise InvalidInputError(f"{int(huge.sum())} record(s) have an accuracy beyond +-{RECORD_VALUE_BOUND:.0e}, "
                                    f"e.g. {rows}: the learners compute in float32 (a 1e308 overflowed to inf)")
        table["accuracy"] = accuracy.astype(float)
        dup = table.duplicated(["dataset", "model"])
        if dup.any():
            rows = table.loc[dup, ["dataset", "model"]].head(3).values.tolist()
            raise InvalidInputError(
                f"{int(dup.sum())} duplicated (dataset, model) record(s), e.g. {rows}; aggregate repeated runs first "
                "(read_records_csv(..., aggregate='max') does)"
            )
        self.table = table.reset_index(drop=True)
        for attr in ("model_meta", "task_meta", "model_embed", "task_embed"):
            setattr(self, attr, _check_index(getattr(self, attr), attr))
        for attr in ("model_embed", "task_embed"):
            frame = getattr(self, attr)
            if frame is not None:
                values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
                if not np.all(np.isfinite(values)):
                    raise InvalidInputError(f"{attr} must be all finite numbers")
        for attr, names in (("model_meta", self.models), ("model_embed", self.models)):
            frame = getattr(self, attr)
            if frame is not None:
                lacking = sorted(set(names) - set(frame.index))
                if lacking:
                    raise InvalidInputError(f"{attr} has no row for model(s) {lacking[:5]} ({len(lacking)} in all)")
        for attr in ("task_meta", "task_embed"):
            frame = getattr(self, attr)
            if frame is not None:
                lacking = sorted(set(self.table["dataset"]) - set(frame.index))
                if lacking:
                    raise InvalidInputError(f"{attr} has no row for task(s) {lacking[:5]} ({len(lacking)} in all)")
        if self.scores is not None:
            scores = self.scores
            if not {"dataset", "model"} <= set(scores.columns) or len(scores.columns) < 3:
                raise InvalidInputError("scores must have columns dataset, model and at least one score column")
            scores = scores.copy()
            scores["dataset"] = scores["dataset"].astype(str)
            scores["model"] = scores["model"].astype(str)
            # A score is a number, blank where a model has none: text was a traceback converting them to float32,
            # and an inf (or a value whose square overflows float32) was trained on without a word and saved in a
            # learner that load_learner refuses (its arrays hold no inf).
            columns = [c for c in scores.columns if c not in ("dataset", "model")]
            values = scores[columns].apply(pd.to_numeric, errors="coerce").astype(float)
            text = values.isna() & scores[columns].notna()
            if text.to_numpy().any():
                column = text.any()[text.any()].index[0]
                raise InvalidInputError(f"scores column {column!r} holds {int(text[column].sum())} value(s) that are "
                                        f"not numbers, e.g. {scores.loc[text[column], column].iloc[0]!r}")
            wild = np.abs(values.to_numpy()) > RECORD_VALUE_BOUND  # inf included, NaN (no score) not
            if wild.any():
                column = columns[int(np.flatnonzero(wild.any(0))[0])]
                raise InvalidInputError(f"scores column {column!r} holds infinite values or values beyond "
                                        f"+-{RECORD_VALUE_BOUND:.0e} (the learners compute in float32); "
                                        "blank = no score")
            scores[columns] = values
            if scores.duplicated(["dataset", "model"]).any():
                raise InvalidInputError("scores has duplicated (dataset, model) rows")
            self.scores = scores.reset_index(drop=True)

    # ---------------------------------------------------------------------------------------- views
    @property
    def models(self) -> list[str]:
        """Models with at least one record (the zoo a learner fitted on these records can rank)."""
        return sorted(self.table["model"].unique())

    @property
    def tasks(self) -> list[str]:
        """Every task with records or side information (held-out tasks included)."""
        names = set(self.table["dataset"]) | set(self.held_out)
        for frame in (self.task_meta, self.task_embed):
            if frame is not None:
                names |= set(frame.index)
        if self.scores is not None:
            names |= set(self.scores["dataset"])
        if self.task_prototypes:
            names |= set(self.task_prototypes)
        return sorted(names)

    @property
    def score_columns(self) -> list[str]:
        if self.scores is None:
            return []
        return [c for c in self.scores.columns if c not in ("dataset", "model")]

    @property
    def record_tasks(self) -> list[str]:
        """Tasks that have accuracy records."""
        return sorted(self.table["dataset"].unique())

    @property
    def single_model_tasks(self) -> list[str]:
        """Tasks with a record of one model only: they train a learner, but there is nothing to rank on them."""
        counts = self.table.groupby("dataset")["model"].size()  # one record per (dataset, model)
        return sorted(counts.index[counts < 2])

    def rankable_tasks(self) -> list[str]:
        """Tasks with records of 2 or more models: what a learner learns to rank and a held-out evaluation measures
        (``single_model_tasks`` rank nothing, as in ``modelrank.evaluate``). Raises when there is none."""
        single = set(self.single_model_tasks)
        tasks = [t for t in self.record_tasks if t not in single]
        if not tasks:
            raise InvalidInputError("no task has records for 2 or more models: there is no ranking to learn from")
        return tasks

    def matrix(self, tasks: Iterable[str] | None = None, models: Iterable[str] | None = None) -> pd.DataFrame:
        """Accuracy as a tasks x models frame (NaN where a pair has no record)."""
        wide = self.table.pivot(index="dataset", columns="model", values="accuracy")
        return wide.reindex(index=list(tasks) if tasks is not None else self.record_tasks,
                            columns=list(models) if models is not None else self.models)

    def truth(self, task: str) -> pd.Series:
        """Accuracy of every model with a record on ``task`` (indexed by model)."""
        rows = self.table[self.table["dataset"] == task]
        if rows.empty:
            raise InvalidInputError(f"task {task!r} has no records")
        return rows.set_index("model")["accuracy"].sort_index()

    def task_info(self, task: str) -> TaskInfo:
        """The side information of ``task`` (never its accuracies)."""
        if task not in set(self.tasks):
            raise InvalidInputError(f"unknown task {task!r}: it has neither records nor metadata")
        meta = self.task_meta.loc[task].to_dict() if self.task_meta is not None and task in self.task_meta.index else None
        embedding = (self.task_embed.loc[task].to_numpy(dtype=float)
                     if self.task_embed is not None and task in self.task_embed.index else None)
        scores = None
        if self.scores is not None:
            rows = self.scores[self.scores["dataset"] == task]
            if not rows.empty:
                scores = rows.set_index("model")[self.score_columns]
        prototypes = self.task_prototypes.get(task) if self.task_prototypes else None
        model_prototypes = None
        if self.model_task_prototypes:
            model_prototypes = {m: p for (m, t), p in self.model_task_prototypes.items() if t == task} or None
        return TaskInfo(task, meta, embedding, scores, prototypes, model_prototypes)

    # ------------------------------------------------------------------------------------- subsets
    def without_tasks(self, tasks: Iterable[str]) -> "Records":
        """The same records with every accuracy row of ``tasks`` removed (their side information stays)."""
        drop = set(tasks)
        return replace(self, table=self.table[~self.table["dataset"].isin(drop)].reset_index(drop=True),
                       held_out=frozenset(self.held_out | drop))

    def with_rows(self, table: pd.DataFrame) -> "Records":
        """The same side information with another accuracy table."""
        return replace(self, table=table)

    def check_rankable(self, task: str) -> pd.Series:
        """Truth of ``task``; raises if fewer than 2 models were fine-tuned on it (nothing to rank)."""
        truth = self.truth(task)
        if truth.size < 2:
            raise InvalidInputError(f"task {task!r} has {truth.size} model record(s); ranking needs at least 2")
        return truth


def records_from_frame(frame: pd.DataFrame, aggregate: str | None = "max", **side) -> Records:
    """Build Records from any frame with dataset, model, accuracy columns; repeated runs are aggregated.

    ``aggregate``: "max" (best run, as TransferGraph and most benchmarks report), "mean", or None (duplicates
    are an error). Extra columns are ignored.
    """
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"records need columns {list(RECORD_COLUMNS)}; missing {missing}")
    table = frame.loc[:, list(RECORD_COLUMNS)].copy()
    # Names without their surrounding spaces, as `evaluate --truth` reads the same table: "m1 " was a model of its
    # own beside "m1", and a name of spaces only was a task or a model called "   ".
    for column in ("dataset", "model"):
        table[column] = table[column].astype(str).str.strip().where(table[column].notna())
    unnamed = (table[["dataset", "model"]].isna() | table[["dataset", "model"]].eq("")).any(axis=1)
    if unnamed.any():  # grouping dropped them without a word
        raise InvalidInputError(f"{int(unnamed.sum())} record(s) without a dataset or model name")
    table["accuracy"] = pd.to_numeric(table["accuracy"], errors="coerce")
    if aggregate is not None:
        if aggregate not in ("max", "mean"):
            raise InvalidInputError(f"aggregate must be 'max', 'mean' or None, not {aggregate!r}")
        if table["accuracy"].isna().any():
            raise InvalidInputError(f"{int(table['accuracy'].isna().sum())} record(s) have a missing or non-numeric accuracy")
        table = table.groupby(["dataset", "model"], as_index=False)["accuracy"].agg(aggregate)
    return Records(table, **side)


# The public records layout (TransferGraph records.csv, ``modelrank records export``) names the columns so.
RECORD_ALIASES = {"finetuned_dataset": "dataset", "eval_accuracy": "accuracy"}


def read_records_csv(path: str | Path, aggregate: str | None = "max") -> Records:
    """Read a records CSV: ``dataset,model,accuracy`` or the public layout (``model, finetuned_dataset, …,
    eval_accuracy``, as ``modelrank records export`` writes it), column names in any letter case. Extra columns
    are ignored; when a ``selected`` column marks the run each sweep chose on validation data, only those rows are
    kept (taking the best test accuracy over a sweep would select on the test set); remaining repeated runs are
    aggregated."""
    path = Path(path)
    frame = read_csv_file(path, "records file", text_columns=NAME_COLUMNS)
    if frame.empty:
        raise InvalidInputError(f"records CSV {path} has no records (only a header)")
    # Column names in any letter case (Model Spider writes "Dataset,Model"), as `evaluate --truth` reads them.
    found = {key: column_any_case(frame.columns, key, f"records CSV {path}")
             for key in (*RECORD_COLUMNS, *RECORD_ALIASES, "selected")}
    frame = frame.rename(columns={column: key for key, column in found.items() if column is not None})
    frame = frame.rename(columns={k: v for k, v in RECORD_ALIASES.items() if v not in frame.columns})
    if "selected" in frame.columns:
        # A 0/1 column with a blank cell is read as floats: its marks are "1.0".
        selected = frame["selected"].astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])
        if selected.any():
            # A pair none of whose runs is marked would vanish with the unmarked runs of the others (without a
            # dataset or model column, records_from_frame says what is missing).
            names = [frame[c] for c in ("dataset", "model") if c in frame.columns]
            chosen = selected.groupby(names).any() if len(names) == 2 else pd.Series(dtype=bool)
            if not chosen.all():
                unmarked = chosen[~chosen].index.tolist()
                raise InvalidInputError(f"records CSV {path}: {len(unmarked)} (dataset, model) pair(s) have no run "
                                        f"marked selected while others do, e.g. {unmarked[0]}; mark one run of each "
                                        "pair or drop the selected column")
            frame = frame[selected.to_numpy()]
    # `records export` of a cache holding linear probes and fine-tunes: the aggregate took the best of both per model
    protocol = column_any_case(frame.columns, "protocol", f"records CSV {path}")
    if protocol is not None and {"dataset", "model"} <= set(frame.columns):
        mixed = frame.groupby(["dataset", "model"])[protocol].nunique() > 1
        if mixed.any():
            kinds = ", ".join(sorted(frame[protocol].dropna().astype(str).unique()))
            raise InvalidInputError(f"records CSV {path}: {int(mixed.sum())} (dataset, model) pair(s) have runs of "
                                    f"several protocols ({kinds}), e.g. {mixed[mixed].index[0]}; the best of a probe "
                                    f"and a fine-tune is no ground truth: keep the rows of one {protocol} (a `modelrank "
                                    "benchmark` results folder reads as benchmark:FOLDER, its linear probes)")
    return records_from_frame(frame, aggregate=aggregate, name=path.stem)
