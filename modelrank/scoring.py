"""Score many models with many metrics, and read/write single-model feature files.

``score_feature_sets`` returns one wide table in the shape of Model Spider's ``baseline_results.csv``
(``Dataset, Model, <metric>...``) followed by one ``<metric>_seconds`` column per metric (wall-clock time
of that metric on that model; for zoo-level metrics, the time of the whole-zoo call divided equally among
its models) and one ``<metric>_flags`` column ("saturated" where the metric said its score saturated on that
data, see ``SaturationWarning``; "" otherwise). ``df.attrs["notes"]`` lists what was skipped or saturated and
why; ``df.attrs["higher_is_better"]`` maps each metric column to its direction.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InvalidInputError, MissingResourceError, ModelrankError
from .features import TASK_TYPES, FeatureSet
from .metrics import METRICS, MetricSpec, compute_metric, score_zoo
from .metrics.base import SaturationWarning, check_applicable, check_parameters

#: progress(dataset, model, metric) is called before each metric evaluation (model = "*" for zoo metrics).
ProgressFn = Callable[[str, str, str], None]
SATURATED = "saturated"


@contextmanager
def saturation_caught():
    """Collect the ``SaturationWarning`` messages raised inside the block (into the yielded list) instead of
    printing them; every other warning is passed on unchanged."""
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield caught
    finally:
        for record in records:
            if issubclass(record.category, SaturationWarning):
                caught.append(str(record.message))
            else:
                warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


def _resolve_metrics(metrics: Sequence[str] | str) -> tuple[list[MetricSpec], bool]:
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(dict.fromkeys(m.strip() for m in metrics if m.strip()))
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


def score_feature_sets(
    feature_sets: Sequence[FeatureSet],
    metrics: Sequence[str] | str = "all",
    *,
    progress: ProgressFn | None = None,
    **params: dict[str, Any],
) -> pd.DataFrame:
    """Score every (dataset, model) FeatureSet with every requested metric.

    ``metrics``: registered names, or "all". A metric the user NAMED that cannot run (wrong task type,
    missing input such as source_probs, or a metric error on the data) raises ``InvalidInputError``; with
    "all" such cells are NaN and explained in ``df.attrs["notes"]``.
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

    scores = {key: {} for key in keys}
    seconds = {key: {} for key in keys}
    flags = {key: {} for key in keys}
    notes: list[str] = []

    def saturated(messages: list[str], cells: list[tuple[str, str]], spec: MetricSpec) -> None:
        for key in cells:
            flags[key][columns[spec.name]] = SATURATED if messages else ""
        notes.extend(f"saturated: {m}" for m in dict.fromkeys(messages) if f"saturated: {m}" not in notes)

    def failed(message: str, cells: list[tuple[str, str]], spec: MetricSpec) -> None:
        if not everything:
            raise InvalidInputError(message)
        notes.append(f"skipped: {message}")
        for key in cells:
            scores[key][columns[spec.name]] = np.nan

    columns = {s.name: metric_column(s.name, params.get(s.name, {})) for s in specs}
    datasets = list(dict.fromkeys(fs.dataset for fs in feature_sets))
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
                    with saturation_caught() as messages:
                        values = score_zoo(spec.name, runnable, **kwargs)
                except ModelrankError as exc:
                    failed(f"{spec.name} on {dataset}: {exc}", [(dataset, fs.model) for fs in runnable], spec)
                    continue
                share = (time.perf_counter() - start) / len(runnable)
                saturated(messages, [(dataset, fs.model) for fs in runnable], spec)
                for fs in runnable:
                    scores[(dataset, fs.model)][columns[spec.name]] = values[fs.model]
                    seconds[(dataset, fs.model)][columns[spec.name]] = share
                continue
            for fs in runnable:
                if progress:
                    progress(dataset, fs.model, spec.name)
                start = time.perf_counter()
                try:
                    with saturation_caught() as messages:
                        value = compute_metric(spec.name, fs, **kwargs)
                    saturated(messages, [(dataset, fs.model)], spec)
                except ModelrankError as exc:
                    failed(f"{spec.name} on {fs.model}/{dataset}: {exc}", [(dataset, fs.model)], spec)
                    continue
                scores[(dataset, fs.model)][columns[spec.name]] = value
                seconds[(dataset, fs.model)][columns[spec.name]] = time.perf_counter() - start

    names = [columns[s.name] for s in specs]
    rows = [
        {"Dataset": d, "Model": m, **{n: scores[(d, m)].get(n, np.nan) for n in names},
         **{f"{n}_seconds": seconds[(d, m)].get(n, np.nan) for n in names},
         **{f"{n}_flags": flags[(d, m)].get(n, "") for n in names}}
        for d, m in keys
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["Dataset", "Model", *names, *[f"{n}_seconds" for n in names],
                                        *[f"{n}_flags" for n in names]])
    frame.attrs["notes"] = notes
    frame.attrs["higher_is_better"] = {columns[s.name]: s.higher_is_better for s in specs}
    return frame


# --------------------------------------------------------------------------------------------- files
FEATURE_FILE_HELP = (
    ".npz with arrays features (n, d), labels (n,) and optional source_probs (n, k); or .parquet with columns "
    "features (list<float>), label and optional source_probs (list<float>)"
)


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
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{path} is not an .npz (zip) archive")
    with np.load(path, allow_pickle=False) as data:
        if "features" not in data.files or "labels" not in data.files:
            raise InvalidInputError(f"{path}: needs arrays 'features' and 'labels' (has {data.files})")
        return {k: data[k] for k in ("features", "labels", "source_probs") if k in data.files}


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
    return FeatureSet(
        features=features,
        labels=labels,
        model=model_name or path.stem,
        dataset=dataset_name,
        task=task or _infer_task(labels),
        source_probs=probs,
    )


def save_feature_file(data: FeatureSet, path: str | Path) -> Path:
    """Write ``data`` as ``.npz`` or ``.parquet`` (by suffix) in the layout ``load_feature_file`` reads."""
    path = Path(path)
    arrays = {"features": np.asarray(data.features), "labels": np.asarray(data.labels)}
    if data.source_probs is not None:
        arrays["source_probs"] = np.asarray(data.source_probs)
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
    pq.write_table(pa.table(columns), path)
    return path
