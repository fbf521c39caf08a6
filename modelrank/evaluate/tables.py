"""Read score tables and ground-truth tables written by modelrank or by the public benchmarks.

Two kinds of input, both CSV (or Parquet):

* scores: long ``dataset, model, method|metric, score|value`` (modelrank's own output, TransferGraph's
  ``transferability_score_records.csv``) or wide ``Dataset, Model, <method>, <method>, ...`` (Model Spider's
  ``baseline_results.csv``, ``modelrank score --out``: every numeric column that is not a dataset or model
  column, nor an annotation ``<method>_seconds|_flags|_rank|_low|_high|_p_best`` of a method, is a method);
* truth: ``dataset, model, <value>`` where the value column is the first of ``TRUTH_VALUE_COLUMNS`` present
  (modelrank records, Model Spider/SFDA ``accuracy``, TransferGraph ``eval_accuracy``, EMMS ``score``).

Column names are matched case-insensitively. Dataset and model names are matched through ``name_key``:
case, Unicode normal form, spaces and the punctuation ``-_./`` are ignored (``CIFAR-10`` = ``cifar10``), and
dataset names also go through ``DATASET_ALIASES`` (Model Spider's CSV says ``Pet`` where its README and SFDA say
``Pets``).
The first spelling met in the scores table is the one shown in results.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, error_reason, short_list
from ..tabular import check_input_file, column_any_case, read_csv_file

DATASET_COLUMNS = ("dataset", "target_dataset", "finetuned_dataset", "finetune_dataset")
MODEL_COLUMNS = ("model", "model_name")
METHOD_COLUMNS = ("method", "metric")
SCORE_VALUE_COLUMNS = ("score", "value")
#: Columns of names, read as text as given (a model or dataset called "NA" or "None" is no missing value).
NAME_COLUMNS = (*DATASET_COLUMNS, *MODEL_COLUMNS, *METHOD_COLUMNS)
#: ``modelrank score --out`` writes these next to a metric column <metric>: its seconds, saturation flags, rank
#: and bootstrap interval / probability of being best. They annotate the metric and are never methods themselves.
ANNOTATION_SUFFIXES = ("_seconds", "_flags", "_rank", "_low", "_high", "_p_best")
FLAGS_SUFFIX = "_flags"
TRUTH_VALUE_COLUMNS = ("test_metric", "accuracy", "eval_accuracy", "test_accuracy", "acc", "score", "value")
#: Truth columns that hold accuracies, as fractions or in percent. The others may hold errors, losses, R^2 or a
#: metric named in another column, on any scale: their values are never taken for fractions or percentages.
ACCURACY_COLUMNS = ("accuracy", "eval_accuracy", "test_accuracy", "acc")
#: Truth columns that hold each run's validation metric (``records export``'s ``val_metric``), for duplicates="val".
VALIDATION_COLUMNS = ("val_metric", "val_accuracy", "validation_accuracy")
#: What ``load_truth`` does with repeated (dataset, model) rows.
TRUTH_DUPLICATES = ("error", "max", "val")

# name_key(alias) -> name_key(canonical). Only spellings that the public tables really use for one dataset.
DATASET_ALIASES = {
    "pet": "pets",
    "oxfordpets": "pets",
    "oxfordiiitpet": "pets",
    "stanfordcars": "cars",
    "fgvcaircraft": "aircraft",
    "flowers102": "flowers",
    "oxfordflowers102": "flowers",
    "voc": "voc2007",
}

_IGNORED = re.compile(r"[\s\-_./]+")


def name_key(name: object) -> str:
    """The key two spellings of one model or dataset name share: lower case, no spaces or ``-_./``, Unicode in one
    normal form (NFKC: "é" typed and "é" read from a macOS file name, e + combining accent, look alike)."""
    return _IGNORED.sub("", unicodedata.normalize("NFKC", str(name)).strip().casefold())


def dataset_key(name: object) -> str:
    key = name_key(name)
    return DATASET_ALIASES.get(key, key)


def read_table(path: str | Path, what: str = "table", text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (an unnamed pandas index column is dropped); a missing, empty or
    damaged file is a one-line ``ModelrankError`` naming ``what`` and the path. In a CSV the name columns and
    ``text_columns`` are text as written."""
    path = check_input_file(path, what)
    if path.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as exc:
            raise InvalidInputError(f"cannot read {what} {path}: {error_reason(exc)}") from None
    else:
        frame = read_csv_file(path, what, text_columns=(*NAME_COLUMNS, *text_columns))
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed:")])


def _find_column(frame: pd.DataFrame, candidates: tuple[str, ...], source: str) -> str | None:
    for candidate in candidates:
        column = column_any_case(frame.columns, candidate, source)
        if column is not None:
            return column
    return None


def _require_column(frame: pd.DataFrame, candidates: tuple[str, ...], what: str, source: str) -> str:
    column = _find_column(frame, candidates, source)
    if column is None:
        raise InvalidInputError(
            f"{source}: no {what} column (looked for {', '.join(candidates)}; found {', '.join(map(str, frame.columns))})"
        )
    return column


def _names(values: pd.Series, what: str, source: str) -> pd.Series:
    """A dataset, model or method column as text, without surrounding spaces (matching ignored them, but the output
    showed " cifar100 "). A blank cell is an error: pandas keeps it as a missing value even as text, which every
    grouping dropped without a word (and one message crashed on); so is a cell of spaces only."""
    names = values.astype(str).str.strip()
    missing = values.isna() | (names == "")
    if missing.any():
        raise InvalidInputError(f"{source}: {int(missing.sum())} row(s) without a {what} name")
    return names


#: Ground truth (accuracies, errors) beyond this magnitude overflows float64 in regret@k's differences and the
#: (max - mean) dataset weights: 1e308 - (-1e308) is inf, and a weighted mean of such datasets came out blank.
MAX_TRUTH_MAGNITUDE = 1e150


def _as_numbers(values: pd.Series, what: str, source: str, names: pd.DataFrame) -> np.ndarray:
    """``values`` as finite floats; a missing, non-numeric or infinite one is an error that quotes the first such
    cell with its dataset and model (``names``: those two columns, row for row with ``values``), not a row number
    that would be counted from 0 and after filters."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        cell = values.iloc[first]
        dataset, model = names.iloc[first]
        shown = "a blank or NaN cell" if pd.isna(cell) else repr(str(cell))  # pandas reads "nan", "NA" as NaN
        raise InvalidInputError(f"{source}: {what} has {int(bad.sum())} missing or non-numeric value(s), e.g. "
                                f"{shown} for dataset {dataset}, model {model}")
    return numbers


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``dataset_key`` and ``model_key`` its names are matched by."""
    return frame.assign(dataset_key=frame["dataset"].map(dataset_key), model_key=frame["model"].map(name_key))


def _unique(frame: pd.DataFrame, key_columns: list[str], source: str, hint: str = "") -> pd.DataFrame:
    """``frame`` (``_keyed``), refused when two rows share ``key_columns``."""
    duplicated = frame.duplicated(subset=key_columns, keep=False)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        shown = ", ".join(f"{c}={first[c]}" for c in ("method", "dataset", "model") if c in frame.columns)
        raise InvalidInputError(f"{source}: {int(duplicated.sum())} duplicate rows (e.g. {shown}){hint}")
    return frame


def is_annotation(column: str, columns) -> bool:
    """Is ``column`` an annotation (``ANNOTATION_SUFFIXES``) of another column of the table?"""
    return any(column.endswith(suffix) and column[: -len(suffix)] in columns for suffix in ANNOTATION_SUFFIXES)


def _flag_texts(frame: pd.DataFrame, column: str) -> pd.Series:
    """A flags column as text ("" where a score has no flag or the table has no such column)."""
    if column not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index)
    return frame[column].fillna("").astype(str)


#: What ``load_scores`` does with repeated (method, dataset, model) rows.
SCORE_DUPLICATES = ("error", "mean")


def load_scores(
    scores: str | Path | pd.DataFrame, source: str | None = None, duplicates: str = "error"
) -> pd.DataFrame:
    """Scores as a long table ``method, dataset, model, score, flags, dataset_key, model_key`` (higher = better).

    ``flags``: what the metric flagged about the score ("saturated", from ``<method>_flags`` columns of the wide
    layout or a ``flags`` column of the long one; "" for none).

    ``scores`` is a path or a DataFrame in the long or the wide layout (see the module docstring). One row per
    (method, dataset, model); missing values are errors, and so are duplicates unless ``duplicates="mean"``: repeated
    runs of a metric (a scores log that each run appends to, as TransferGraph's) then count as their mean score, with
    every flag any of them carried.
    """
    if duplicates not in SCORE_DUPLICATES:
        raise InvalidInputError(f"score duplicates must be one of {', '.join(SCORE_DUPLICATES)}, not {duplicates!r}")
    source = source or (str(scores) if not isinstance(scores, pd.DataFrame) else "scores")
    frame = read_table(scores, "scores file") if not isinstance(scores, pd.DataFrame) else scores
    dataset_col = _require_column(frame, DATASET_COLUMNS, "dataset", source)
    model_col = _require_column(frame, MODEL_COLUMNS, "model", source)
    method_col = _find_column(frame, METHOD_COLUMNS, source)
    value_col = _find_column(frame, SCORE_VALUE_COLUMNS, source)
    if method_col is not None and value_col is not None:
        long = pd.DataFrame(
            {
                "method": _names(frame[method_col], "method", source),
                "dataset": _names(frame[dataset_col], "dataset", source),
                "model": _names(frame[model_col], "model", source),
                "score": _as_numbers(frame[value_col], f"column {value_col!r}", source, frame[[dataset_col, model_col]]),
                "flags": _flag_texts(frame, "flags").to_numpy(),
            }
        )
    else:
        used = {dataset_col, model_col}
        # A method column is numeric, or mostly numbers with a few bad cells (reported below, not dropped).
        methods = [
            c for c in frame.columns
            if c not in used and not is_annotation(str(c), frame.columns)
            and (pd.api.types.is_numeric_dtype(frame[c]) or pd.to_numeric(frame[c], errors="coerce").notna().any())
        ]
        if not methods:
            raise InvalidInputError(
                f"{source}: no score columns; expected a long table (method, score) or numeric method columns"
            )
        frame = frame.assign(**{dataset_col: _names(frame[dataset_col], "dataset", source),
                                model_col: _names(frame[model_col], "model", source)})
        flags = frame.assign(**{str(m): _flag_texts(frame, f"{m}{FLAGS_SUFFIX}") for m in methods})
        flags = flags.melt(id_vars=[dataset_col, model_col], value_vars=methods, value_name="flags")["flags"]
        long = frame.melt(id_vars=[dataset_col, model_col], value_vars=methods, var_name="method", value_name="score")
        # A blank cell is a metric that was skipped on that (dataset, model) (`score --metric all` writes them).
        blank = long["score"].isna()
        skipped = long[blank].groupby("method", sort=False).size()
        long = long[~blank]
        for method in methods:
            rows = long["method"] == method
            _as_numbers(long.loc[rows, "score"], f"column {method!r}", source, long.loc[rows, [dataset_col, model_col]])
        long = pd.DataFrame(
            {
                "method": long["method"].astype(str),
                "dataset": long[dataset_col],
                "model": long[model_col],
                "score": long["score"].to_numpy(dtype=np.float64),
                "flags": flags.to_numpy()[~blank.to_numpy()],
            }
        )
        long.attrs["blank"] = [f"{source}: column {method!r} has {count} blank (skipped) cell(s), left out"
                               for method, count in skipped.items()]
    if long.empty:
        raise InvalidInputError(f"{source}: the score table is empty")
    keys = ["method", "dataset_key", "model_key"]
    long = _mean_of_repeats(_keyed(long), keys) if duplicates == "mean" else _keyed(long)
    return _unique(long, keys, source, hint="; pass --score-duplicates mean (duplicates='mean') to average repeated runs")


def _mean_of_repeats(long: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` of a keyed long score table: the first row's names, the mean score, and the flags of
    every repeat (each once, in the order first seen)."""
    grouped = long.groupby(keys, sort=False)
    merged = grouped[["method", "dataset", "model", "dataset_key", "model_key"]].first()
    merged["score"] = grouped["score"].mean()
    merged["flags"] = grouped["flags"].agg(lambda flags: ";".join(dict.fromkeys(f for f in flags if f)))
    merged = merged.reset_index(drop=True)
    merged.attrs = long.attrs  # the wide layout's notes of blank cells
    return merged


def load_truth(
    truth: str | Path | pd.DataFrame,
    duplicates: str = "error",
    where: dict[str, str] | None = None,
    source: str | None = None,
    noise_column: str | None = None,
) -> pd.DataFrame:
    """Ground truth as ``dataset, model, truth, dataset_key, model_key`` (one row per dataset and model).

    ``noise_column``: also read each value's noise (a std) from that column into ``noise``; when the table also
    has ``n_seeds`` (benchmark records: the std is over seeds, the value their mean) it is divided by
    sqrt(n_seeds), the noise left in the mean.

    ``where``: keep only rows whose column (case-insensitive name) equals the value as text, e.g.
    ``{"protocol": "linear"}`` for a records table holding several protocols. ``duplicates="max"`` keeps the
    best value of each (dataset, model), as when a records table holds one row per hyper-parameter setting
    (TransferGraph picks the best ``eval_accuracy`` per model the same way); ``"val"`` keeps the row with the best
    validation metric (``VALIDATION_COLUMNS``; the mean of rows tied there), the setting a sweep selects without
    looking at the test value the truth holds; ``"error"`` (default) refuses repeated rows.
    """
    if duplicates not in TRUTH_DUPLICATES:
        raise InvalidInputError(f"duplicates must be one of {', '.join(TRUTH_DUPLICATES)}, not {duplicates!r}")
    source = source or (str(truth) if not isinstance(truth, pd.DataFrame) else "truth")
    # A filter compares the text as written: "10" is not matched against a float column's "10.0", nor "NA" lost
    # as a missing value.
    filtered = tuple(name.lower() for name in where or {})
    frame = read_table(truth, "ground-truth file", filtered) if not isinstance(truth, pd.DataFrame) else truth
    for name, value in (where or {}).items():
        column = _require_column(frame, (name.lower(),), f"{name!r} (from a filter)", source)
        frame = frame[frame[column].astype(str) == str(value)]
    dataset_col = _require_column(frame, DATASET_COLUMNS, "dataset", source)
    model_col = _require_column(frame, MODEL_COLUMNS, "model", source)
    value_col = _require_column(frame, TRUTH_VALUE_COLUMNS, "ground-truth value", source)
    names = frame[[dataset_col, model_col]]
    long = pd.DataFrame(
        {
            "dataset": _names(frame[dataset_col], "dataset", source),
            "model": _names(frame[model_col], "model", source),
            "truth": _as_numbers(frame[value_col], f"column {value_col!r}", source, names),
        }
    )
    if long.empty:
        raise InvalidInputError(f"{source}: the ground-truth table is empty")
    largest = float(np.abs(long["truth"]).max())
    if largest > MAX_TRUTH_MAGNITUDE:
        raise InvalidInputError(f"{source}: column {value_col!r} reaches {largest:.3g}; ground truth beyond "
                                f"{MAX_TRUTH_MAGNITUDE:.0e} overflows the differences and sums the measures take "
                                "(regret@k, the weighted mean): rescale it")
    if noise_column is not None:
        column = _require_column(frame, (noise_column.lower(),), f"noise {noise_column!r}", source)
        noise = _as_numbers(frame[column], f"column {column!r}", source, names)
        seeds = _find_column(frame, ("n_seeds",), source)
        long["noise"] = noise / np.sqrt(_as_numbers(frame[seeds], "column 'n_seeds'", source, names)) if seeds else noise
    validation_col = _find_column(frame, VALIDATION_COLUMNS, source)
    long, keys = _keyed(long).reset_index(drop=True), ["dataset_key", "model_key"]  # idxmax returns labels: unique
    if duplicates == "max":
        best = long.groupby(keys, sort=False)["truth"].idxmax()
        long = long.loc[best.to_numpy()].reset_index(drop=True)
    elif duplicates == "val":
        if validation_col is None:
            raise InvalidInputError(f"{source}: duplicates='val' needs a validation column "
                                    f"({', '.join(VALIDATION_COLUMNS)}); the table has {list(frame.columns)}")
        long = _best_on_validation(long, keys, _as_numbers(frame[validation_col], f"column {validation_col!r}",
                                                           source, names))
    # `records export` holds a run per protocol: the best of a linear probe and a fine-tune is no ground truth
    protocol_col = _find_column(frame, ("protocol",), source)
    protocols = sorted(frame[protocol_col].dropna().astype(str).unique()) if protocol_col is not None else []
    hint = (f"; the rows are of protocols {', '.join(protocols)}: keep one with where={{'{protocol_col}': ...}} (CLI: "
            f"--truth-where {protocol_col}={protocols[0]})" if len(protocols) > 1 else
            f"; pass duplicates='val' (CLI: --duplicates val) to keep each model's run with the best {validation_col}, "
            "as a sweep selects (duplicates='max' keeps the best test value)" if validation_col is not None else
            "; pass duplicates='max' (CLI: --duplicates max) to keep the best value per dataset and model")
    long = _unique(long, keys, source, hint=hint)
    return _on_one_scale(long, str(value_col), source) if str(value_col).lower() in ACCURACY_COLUMNS else long


def _best_on_validation(long: pd.DataFrame, keys: list[str], validation: np.ndarray) -> pd.DataFrame:
    """One row per ``keys`` of a keyed truth table: the rows whose ``validation`` value is the best of their
    (dataset, model), averaged where several tie there (first names kept)."""
    best = validation == long.assign(val=validation).groupby(keys, sort=False)["val"].transform("max").to_numpy()
    grouped = long[best].groupby(keys, sort=False)
    names = ["dataset", "model", *keys]
    merged = grouped[names].first().join(grouped[[c for c in long.columns if c not in names]].mean())
    return merged.reset_index(drop=True)


def _on_one_scale(truth: pd.DataFrame, column: str, source: str) -> pd.DataFrame:
    """Accuracies (in [0, 100]) as fractions on every dataset where some other dataset holds fractions, with a note
    in ``attrs["scale"]``; a dataset mixing both is warned there.

    A dataset whose accuracies reach above 1 is in percent. Across datasets the scale leaves the rankings within
    each alone, but regret@k is in the truth's units and the weighted mean weighs each dataset by max - mean of its
    truth: a percent dataset counted 100 times a fraction one. Within one dataset, a value <= 1 that read as a
    fraction would reach the lowest percentage (0.85 beside 85.0 and 92.0) is most likely a fraction among
    percentages, but only warned: a percent table rightly holds models at <= 1% (a random-init control at chance on
    100 classes), which no rule can tell from a fraction; the names let the user look."""
    values = truth["truth"]
    notes: list[str] = []
    if not values.between(0, 100).all():  # not accuracies after all
        return truth
    percent = values.groupby(truth["dataset_key"], sort=False).transform("max") > 1
    for _, rows in truth[percent].groupby("dataset_key", sort=False):
        lowest = rows.loc[rows["truth"] > 1, "truth"].min()
        mixed = rows[(rows["truth"] <= 1) & (rows["truth"] * 100 >= lowest)]
        if not mixed.empty:
            notes.append(f"{source}: dataset {rows['dataset'].iloc[0]}: {column} of model(s) "
                         f"{short_list(mixed['model'])} is at most 1 while the others' are percentages (from "
                         f"{lowest:g}): fractions among percentages? (as percentages they are models at or below 1%)")
    if percent.any() and not percent.all():
        names = truth.loc[percent, "dataset"].drop_duplicates()
        others = truth.loc[~percent, "dataset"].drop_duplicates()
        notes.append(f"{source}: {column} is in percent on dataset(s) {short_list(names)} but in fractions on "
                     f"{short_list(others)}: the percentages are divided by 100, so that regret@k and the weighted "
                     "mean's dataset weights compare datasets on one scale (rankings within a dataset do not change)")
        # a noise column (a std) is in its values' units
        scaled = [c for c in ("truth", "noise") if c in truth.columns]
        truth = truth.assign(**{c: truth[c].where(~percent, truth[c] / 100) for c in scaled})
    truth.attrs["scale"] = notes
    truth.attrs["rescaled"] = bool(percent.any() and not percent.all())
    return truth
