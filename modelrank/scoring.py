"""Score many models with many metrics, and read/write single-model feature files.

``score_feature_sets`` returns one wide table in the shape of Model Spider's ``baseline_results.csv``
(``Dataset, Model, <metric>...``) followed by one ``<metric>_seconds`` column per metric (wall-clock time
of that metric on that model; for zoo-level metrics, the time of the whole-zoo call divided equally among
its models). ``df.attrs["notes"]`` lists what was skipped and why; ``df.attrs["failures"]`` maps each named
metric column that failed on some model to its error messages (those cells are NaN, every other score is kept);
``df.attrs["higher_is_better"]`` maps each metric column to its direction; ``df.attrs["flags"]`` lists the
scores a metric qualified with a ``MetricFlagWarning`` (e.g. "not_converged"), one dict per (Dataset, Model,
metric column, flag, message).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InvalidInputError, MissingResourceError, ModelrankError
from .features import TASK_TYPES, FeatureSet
from .metrics import METRICS, MetricSpec, compute_metric, score_zoo
from .metrics.base import MetricFlagWarning, check_applicable, check_parameters

#: progress(dataset, model, metric) is called before each metric evaluation (model = "*" for zoo metrics).
ProgressFn = Callable[[str, str, str], None]


def _resolve_metrics(metrics: Sequence[str] | str) -> tuple[list[MetricSpec], bool]:
    if isinstance(metrics, str):
        metrics = [metrics]
    # "logme,leep" (the CLI's comma form) and ["logme", "leep"] name the same metrics
    names = list(dict.fromkeys(n.strip() for m in metrics for n in m.split(",") if n.strip()))
    if names == ["all"]:
        return [entry.obj for entry in METRICS], True
    if "all" in names:
        raise InvalidInputError("'all' cannot be combined with metric names")
    if not names:
        raise InvalidInputError("no metric given")
    return [METRICS.get(name) for name in names], False


def _why_not(spec: MetricSpec, data: FeatureSet) -> str | None:
    """Reason ``spec`` cannot run on ``data`` (task type or a missing input), else None."""
    try:
        check_applicable(spec, data)
    except InvalidInputError as exc:
        return str(exc)
    return None


def metric_column(name: str, params: dict[str, Any]) -> str:
    """Column name of a metric's scores: its name, plus its non-default parameters when any were given."""
    if not params:
        return name
    return f"{name}[{','.join(f'{key}={value}' for key, value in sorted(params.items()))}]"


def _flagged_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[MetricFlagWarning]]:
    """``fn(*args, **kwargs)`` and the ``MetricFlagWarning``s it raised; every warning still reaches the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricFlagWarning)
        value = fn(*args, **kwargs)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, [w.message for w in caught if issubclass(w.category, MetricFlagWarning)]


def score_feature_sets(
    feature_sets: Sequence[FeatureSet],
    metrics: Sequence[str] | str = "all",
    *,
    progress: ProgressFn | None = None,
    **params: dict[str, Any],
) -> pd.DataFrame:
    """Score every (dataset, model) FeatureSet with every requested metric.

    ``metrics``: registered names (a list or one comma-separated string such as "logme,leep"), or "all".
    A metric the user NAMED that cannot run on some input (wrong task type, a missing input such as
    source_probs or class_names) raises ``InvalidInputError`` before any metric runs. A named metric that
    fails on the data while running (``ModelrankError``, e.g. an undefined score) loses only its own cells: they
    are NaN, the failure is warned and kept in ``df.attrs["failures"]``, and every other score is returned.
    With "all", metrics that cannot run or fail are NaN and explained in ``df.attrs["notes"]``.
    ``params``: per-metric keyword arguments, keyed by metric name, e.g. ``nleep={"seed": 1}``; such a metric's
    column is named with them (``nleep[seed=1]``), so scores at different settings never share a column.
    Zoo-level metrics are computed once per dataset over all its models (``score_zoo``).
    """
    if not feature_sets:
        raise InvalidInputError("no feature sets to score")
    specs, everything = _resolve_metrics(metrics)
    chosen = {s.name for s in specs}
    for name in params:
        if name not in chosen:
            raise InvalidInputError(f"parameters given for metric {name!r}, which is not being scored")
    for spec in specs:  # a misspelt parameter is an error even with "all", never a skipped metric
        check_parameters(spec, params.get(spec.name, {}))
    keys = [(fs.dataset, fs.model) for fs in feature_sets]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("two feature sets share the same (dataset, model)")
    if not everything:
        reasons = [reason for spec in specs for fs in feature_sets if (reason := _why_not(spec, fs))]
        if reasons:
            more = f" (and {len(reasons) - 1} more metric/model pairs)" if len(reasons) > 1 else ""
            raise InvalidInputError(reasons[0] + more)

    scores = {key: {} for key in keys}
    seconds = {key: {} for key in keys}
    notes: list[str] = []
    failures: dict[str, list[str]] = {}
    flags: list[dict[str, str]] = []

    def flag(raised: list[MetricFlagWarning], cells: list[tuple[str, str]], column: str) -> None:
        flags.extend({"Dataset": d, "Model": m, "metric": column, "flag": w.flag, "message": str(w)}
                     for w in raised for d, m in cells)  # fmt: skip

    def failed(message: str, cells: list[tuple[str, str]], spec: MetricSpec) -> None:
        if everything:
            notes.append(f"skipped: {message}")
        else:
            failures.setdefault(columns[spec.name], []).append(message)
            warnings.warn(f"{message}; the other scores are kept", stacklevel=3)
        for key in cells:
            scores[key][columns[spec.name]] = np.nan

    columns = {s.name: metric_column(s.name, params.get(s.name, {})) for s in specs}
    datasets = list(dict.fromkeys(fs.dataset for fs in feature_sets))
    for fs in feature_sets:
        if fs.task == "classification" and len(fs.labels) > 1 and len(np.unique(fs.labels)) == len(fs.labels):
            notes.append(f"warning: {fs.model}/{fs.dataset}: every one of the {len(fs.labels)} samples is its own "
                         "class, so no metric can measure class separability: its scores do not rank transfer")
    for spec in specs:
        kwargs = params.get(spec.name, {})
        for dataset in datasets:
            group = [fs for fs in feature_sets if fs.dataset == dataset]
            runnable = []
            for fs in group:
                reason = _why_not(spec, fs)
                if reason:
                    failed(reason, [(fs.dataset, fs.model)], spec)
                else:
                    runnable.append(fs)
            if spec.zoo_level and runnable:
                if progress:
                    progress(dataset, "*", spec.name)
                start = time.perf_counter()
                try:
                    values, raised = _flagged_call(score_zoo, spec.name, runnable, **kwargs)
                except ModelrankError as exc:
                    failed(f"{spec.name} on {dataset}: {exc}", [(dataset, fs.model) for fs in runnable], spec)
                    continue
                flag(raised, [(dataset, fs.model) for fs in runnable], columns[spec.name])
                share = (time.perf_counter() - start) / len(runnable)
                for fs in runnable:
                    scores[(dataset, fs.model)][columns[spec.name]] = values[fs.model]
                    seconds[(dataset, fs.model)][columns[spec.name]] = share
                continue
            for fs in runnable:
                if progress:
                    progress(dataset, fs.model, spec.name)
                start = time.perf_counter()
                try:
                    value, raised = _flagged_call(compute_metric, spec.name, fs, **kwargs)
                except ModelrankError as exc:
                    failed(f"{spec.name} on {fs.model}/{dataset}: {exc}", [(dataset, fs.model)], spec)
                    continue
                flag(raised, [(dataset, fs.model)], columns[spec.name])
                scores[(dataset, fs.model)][columns[spec.name]] = value
                seconds[(dataset, fs.model)][columns[spec.name]] = time.perf_counter() - start

    names = [columns[s.name] for s in specs]
    rows = [
        {"Dataset": d, "Model": m, **{n: scores[(d, m)].get(n, np.nan) for n in names},
         **{f"{n}_seconds": seconds[(d, m)].get(n, np.nan) for n in names}}
        for d, m in keys
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["Dataset", "Model", *names, *[f"{n}_seconds" for n in names]])
    if frame[names].isna().all().all():
        reasons = [note.removeprefix("skipped: ") for note in notes if note.startswith("skipped: ")]
        shown = "; ".join(dict.fromkeys(reasons[:4]))
        raise InvalidInputError(f"no metric could score these features ({len(reasons)} skipped): {shown}"
                                + (" ..." if len(reasons) > 4 else ""))
    frame.attrs["notes"] = notes
    frame.attrs["flags"] = flags
    frame.attrs["failures"] = failures
    frame.attrs["higher_is_better"] = {columns[s.name]: s.higher_is_better for s in specs}
    return frame


# --------------------------------------------------------------------------------------------- files
FEATURE_FILE_HELP = (
    ".npz with arrays features (n, d), labels (n,) and optional source_probs (n, k) and class_names (strings, one "
    "per class id); or .parquet with columns features (list<float>), label, optional source_probs (list<float>) "
    "and optional class_name (string per row), or the class names as JSON under schema metadata key class_names"
)
#: Parquet schema metadata key holding the JSON list of class names (what ``save_feature_file`` writes).
CLASS_NAMES_METADATA = b"class_names"


def _infer_task(labels: np.ndarray) -> str:
    """Regression when labels are multi-column or non-integer floats; classification otherwise."""
    if labels.ndim == 2 and labels.shape[1] > 1:
        return "regression"
    if labels.dtype.kind == "f" and np.isfinite(labels).all() and not np.all(labels == np.round(labels)):
        return "regression"
    return "classification"


def _list_column_to_matrix(table, column: str, path: Path) -> np.ndarray:
    """A Parquet list<float> / fixed_size_list<float> column as an (n, d) array, without per-row Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = table.column(column).combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)):  # fmt: skip
        raise InvalidInputError(f"{path}: column {column!r} must be a list of floats, not {array.type}")
    if array.null_count:
        raise InvalidInputError(f"{path}: column {column!r} has {array.null_count} null rows")
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise InvalidInputError(f"{path}: rows of column {column!r} have different lengths")
    width = int(lengths[0]) if len(lengths) else 0
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(array), width)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    label_column = next((c for c in ("label", "labels") if c in table.column_names), None)
    if "features" not in table.column_names or label_column is None:
        raise InvalidInputError(f"{path}: needs columns 'features' and 'label' (has {table.column_names})")
    arrays = {"features": _list_column_to_matrix(table, "features", path)}
    label_type = table.schema.field(label_column).type
    if pa.types.is_list(label_type) or pa.types.is_fixed_size_list(label_type) or pa.types.is_large_list(label_type):
        arrays["labels"] = _list_column_to_matrix(table, label_column, path)
    else:
        arrays["labels"] = table.column(label_column).to_numpy()
    if "source_probs" in table.column_names:
        arrays["source_probs"] = _list_column_to_matrix(table, "source_probs", path)
    metadata = table.schema.metadata or {}
    if CLASS_NAMES_METADATA in metadata:
        names = json.loads(metadata[CLASS_NAMES_METADATA])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(f"{path}: schema metadata class_names must be a JSON list of strings")
        arrays["class_names"] = np.array(names, dtype=str)
    elif "class_name" in table.column_names:
        column = table.column("class_name")
        if column.null_count:
            raise InvalidInputError(f"{path}: column 'class_name' has {column.null_count} null rows")
        arrays["class_names"] = _class_names_of_rows(arrays["labels"], column.to_numpy(zero_copy_only=False), path)
    return arrays


def _class_names_of_rows(labels: np.ndarray, row_names: np.ndarray, path: Path) -> np.ndarray:
    """Class names indexed by class id, from a per-row name column; ids without rows get an empty name."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels < 0).any():
        raise InvalidInputError(f"{path}: a class_name column needs integer class ids >= 0 in 'label'")
    row_names = row_names.astype(str)
    ids, first_row = np.unique(labels, return_index=True)
    named = row_names[first_row]
    clash = row_names != named[np.searchsorted(ids, labels)]
    if clash.any():
        row = int(np.argmax(clash))
        first = str(named[np.searchsorted(ids, labels[row])])
        raise InvalidInputError(f"{path}: class id {labels[row]} is named both {first!r} and {str(row_names[row])!r} "
                                "in column class_name")
    names = np.full(int(ids[-1]) + 1 if len(ids) else 0, "", dtype=named.dtype)
    names[ids] = named
    return names


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{path} is not an .npz (zip) archive")
    with np.load(path, allow_pickle=False) as data:
        if "features" not in data.files or "labels" not in data.files:
            raise InvalidInputError(f"{path}: needs arrays 'features' and 'labels' (has {data.files})")
        return {k: data[k] for k in ("features", "labels", "source_probs", "class_names") if k in data.files}


def load_feature_file(
    path: str | Path, model_name: str | None = None, dataset_name: str = "custom", task: str | None = None
) -> FeatureSet:
    """Read one model's features from ``.npz`` or ``.parquet`` (see ``FEATURE_FILE_HELP``).

    ``model_name`` defaults to the file stem. ``task`` defaults to regression when the labels are
    multi-column or non-integer floats, classification otherwise. Any unreadable or malformed file raises
    a one-line ``ModelrankError``.
    """
    path = Path(path)
    if task is not None and task not in TASK_TYPES:
        raise InvalidInputError(f"task must be one of {', '.join(TASK_TYPES)}, not {task!r}")
    if not path.is_file():
        raise MissingResourceError(f"feature file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            arrays = _read_npz(path)
        elif suffix in (".parquet", ".pq"):
            arrays = _read_parquet(path)
        else:
            raise InvalidInputError(f"{path}: unsupported feature file type {suffix!r}; use .npz or .parquet")
    except ModelrankError:
        raise
    except Exception as exc:  # zip/parquet/pickle readers raise many types; all mean "not a valid file"
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InvalidInputError(f"cannot read {path}: {first_line}") from None
    features, labels = arrays["features"], arrays["labels"]
    if features.ndim != 2:
        raise InvalidInputError(f"{path}: features must be 2-D (n, d), got shape {features.shape}")
    if labels.shape[0] != features.shape[0]:
        raise InvalidInputError(f"{path}: {labels.shape[0]} labels for {features.shape[0]} feature rows")
    probs = arrays.get("source_probs")
    if probs is not None and (probs.ndim != 2 or probs.shape[0] != features.shape[0]):
        raise InvalidInputError(f"{path}: source_probs must have shape ({features.shape[0]}, k), got {probs.shape}")
    class_names = arrays.get("class_names")
    if class_names is not None:
        class_names = _checked_class_names(class_names, labels, path)
    return FeatureSet(
        features=features,
        labels=labels,
        model=model_name or path.stem,
        dataset=dataset_name,
        task=task or _infer_task(labels),
        source_probs=probs,
        class_names=class_names,
    )


def _checked_class_names(names: np.ndarray, labels: np.ndarray, path: Path) -> list[str]:
    """``names`` as a list of str, after checking that it names every class id in ``labels``."""
    if names.ndim != 1 or names.dtype.kind != "U":
        raise InvalidInputError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    if labels.ndim == 1 and labels.dtype.kind in "iu" and len(labels) and labels.max() >= len(names):
        raise InvalidInputError(f"{path}: {len(names)} class_names for class ids up to {int(labels.max())}")
    return names.tolist()


def save_feature_file(data: FeatureSet, path: str | Path) -> Path:
    """Write ``data`` as ``.npz`` or ``.parquet`` (by suffix) in the layout ``load_feature_file`` reads."""
    path = Path(path)
    arrays = {"features": np.asarray(data.features), "labels": np.asarray(data.labels)}
    if data.source_probs is not None:
        arrays["source_probs"] = np.asarray(data.source_probs)
    if data.class_names is not None:
        arrays["class_names"] = np.array(data.class_names, dtype=str)
    if path.suffix.lower() == ".npz":
        np.savez(path, **arrays)
        return path
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise InvalidInputError(f"unsupported feature file type {path.suffix!r}; use .npz or .parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def list_column(matrix: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel()), matrix.shape[1])

    columns = {"features": list_column(arrays["features"])}
    labels = arrays["labels"]
    columns["label"] = list_column(labels) if labels.ndim == 2 else pa.array(labels)
    if "source_probs" in arrays:
        columns["source_probs"] = list_column(arrays["source_probs"])
    table = pa.table(columns)
    if data.class_names is not None:
        table = table.replace_schema_metadata({CLASS_NAMES_METADATA: json.dumps(list(data.class_names))})
    pq.write_table(table, path)
    return path
