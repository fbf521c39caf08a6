"""Score many models with many metrics, and read/write single-model feature files.

``score_feature_sets`` returns one wide table in the shape of Model Spider's ``baseline_results.csv``
(``Dataset, Model, <metric>...``) followed by one ``<metric>_seconds`` column per metric (wall-clock time
of that metric on that model; for zoo-level metrics, the time of the whole-zoo call divided equally among
its models) and one ``<metric>_flags`` column: the flags the metric raised on that score (``MetricFlagWarning``:
"saturated" where its score saturated on that data, "not_converged" where an iteration cap stopped it; several
are joined by ";"; "" otherwise). ``df.attrs["notes"]`` lists what was skipped or flagged and why;
``df.attrs["flags"]`` has one dict per flagged score (Dataset, Model, metric column, flag, message);
``df.attrs["failures"]`` maps each named metric column that failed on some model to its error messages (those
cells are NaN, every other score is kept); ``df.attrs["higher_is_better"]`` maps each metric column to its
direction.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import progress as progress_lib
from .errors import InvalidInputError, MissingResourceError, ModelrankError, check_seed, error_reason, short_list
from .features import TASK_TYPES, FeatureSet
from .metrics import METRICS, MetricSpec, compute_metric, score_zoo
from .metrics._checks import check_finite
from .metrics.base import MetricFlagWarning, _labels_are_text, check_applicable, check_parameters

#: progress(dataset, model, metric) is called before each metric evaluation (model = "*" for zoo metrics).
ProgressFn = Callable[[str, str, str], None]
SATURATED = "saturated"


@contextmanager
def flags_caught():
    """Collect the ``MetricFlagWarning``s raised inside the block (into the yielded list) instead of printing
    them: ``score_feature_sets`` turns them into flags and notes. Every other warning is passed on unchanged."""
    caught: list[MetricFlagWarning] = []
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield caught
    finally:
        for record in records:
            if issubclass(record.category, MetricFlagWarning):
                caught.append(record.message)
            else:
                warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


def scoring_reporter(progress: "progress_lib.ProgressFn | None", n_sets: int, n_metrics: int | None,
                     row: str = "score") -> ProgressFn | None:
    """A ``score_feature_sets`` / ``bootstrap_scores`` progress callback for a ``modelrank.progress.ProgressFn``:
    it counts (metric, model) evaluations out of ``n_sets * n_metrics`` (a zoo-level metric, model "*", counts
    once per model it scores); ``n_metrics=None`` counts the calls without a total (the bootstrap's)."""
    if progress is None:
        return None
    total = n_sets * n_metrics if n_metrics is not None else None
    done = 0

    def scored(dataset: str, model: str, metric: str) -> None:
        nonlocal done
        where = dataset if model == "*" else f"{model}/{dataset}"
        progress_lib.report(progress, row, f"{metric} on {where}", done, total)
        done += n_sets if model == "*" and total is not None else 1

    return scored


def _resolve_metrics(metrics: Sequence[str] | str) -> tuple[list[MetricSpec], bool]:
    given = [metrics] if isinstance(metrics, str) else list(metrics) if isinstance(metrics, Iterable) else [metrics]
    if not all(isinstance(m, str) for m in given):  # 5 or None: a TypeError from iterating or splitting them
        raise InvalidInputError(f"metrics are names (a list or 'logme,leep') or 'all', not {metrics!r}")
    # "logme,leep" (the CLI's comma form) and ["logme", "leep"] name the same metrics
    names = list(dict.fromkeys(n.strip() for m in given for n in m.split(",") if n.strip()))
    if names == ["all"]:
        return [entry.obj for entry in METRICS], True
    if "all" in names:
        raise InvalidInputError("'all' cannot be combined with metric names")
    if not names:
        raise InvalidInputError("no metric given")
    return [METRICS.get(name) for name in names], False


def check_metric_request(metrics: Sequence[str] | str, params: dict[str, dict[str, Any]]) -> tuple[list[MetricSpec], bool]:
    """The metrics asked for (and whether that was "all"), after checking every name, parameter name and
    parameter type: a command calls this before extracting or loading anything."""
    specs, everything = _resolve_metrics(metrics)
    chosen = {s.name for s in specs}
    for name, given in params.items():
        if name not in chosen:
            raise InvalidInputError(f"parameters given for metric {name!r}, which is not being scored")
        if not isinstance(given, Mapping):  # score(..., knn=3) for knn={"k": 3}
            raise InvalidInputError(f"parameters of metric {name!r} go in a dict, {name}={{parameter: value}}, "
                                    f"not {given!r}")
    for spec in specs:  # a misspelt parameter is an error even with "all", never a skipped metric
        check_parameters(spec, params.get(spec.name, {}))
    return specs, everything


def _why_not(spec: MetricSpec, data: FeatureSet, subject: str | None = None) -> str | None:
    """Reason ``spec`` cannot run on ``data`` (task type or a missing input), else None; ``subject``: see
    ``check_applicable``."""
    try:
        check_applicable(spec, data, subject)
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
    specs, everything = check_metric_request(metrics, params)
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
    flags: dict[tuple[str, str], dict[str, str]] = {key: {} for key in keys}
    notes: list[str] = []
    failures: dict[str, list[str]] = {}
    # (column, dataset, reason) -> models: with "all", one note per metric and reason naming its models
    skipped: dict[tuple[str, str, str], list[str]] = {}
    inapplicable: set[str] = set()  # reasons a metric could not run at all (task type, a missing input)
    flag_records: list[dict[str, str]] = []

    def flag(raised: list[MetricFlagWarning], cells: list[tuple[str, str]], column: str) -> None:
        for key in cells:
            flags[key][column] = ";".join(dict.fromkeys(w.flag for w in raised))
        flag_records.extend({"Dataset": d, "Model": m, "metric": column, "flag": w.flag, "message": str(w)}
                            for w in raised for d, m in cells)  # fmt: skip

    def failed(reason: str, cells: list[tuple[str, str]], spec: MetricSpec) -> None:
        if everything:
            skipped.setdefault((columns[spec.name], cells[0][0], reason), []).extend(model for _, model in cells)
        else:  # warned at the end, once it is known that other scores are kept
            where = f"{cells[0][1]}/{cells[0][0]}" if len(cells) == 1 and not spec.zoo_level else cells[0][0]
            failures.setdefault(columns[spec.name], []).append(f"{spec.name} on {where}: {reason}")
        for key in cells:
            scores[key][columns[spec.name]] = np.nan

    columns = {s.name: metric_column(s.name, params.get(s.name, {})) for s in specs}
    datasets = list(dict.fromkeys(fs.dataset for fs in feature_sets))
    for fs in feature_sets:
        if fs.task == "classification" and len(fs.labels) > 1 and len(np.unique(fs.labels)) == len(fs.labels):
            notes.append(f"warning: {fs.model}/{fs.dataset}: every one of the {len(fs.labels)} samples is its own "
                         "class, so no metric can measure class separability: its scores do not rank transfer")
    for dataset in datasets:  # feature files of other subsets, or other labels, under one dataset name
        group = [fs for fs in feature_sets if fs.dataset == dataset]
        if not _same_samples(group):
            sizes = ", ".join(f"{fs.model}: {fs.n_samples}" for fs in group[:6]) + (" ..." if len(group) > 6 else "")
            notes.append(f"warning: the models of {dataset} hold different samples or labels ({sizes} samples): "
                         "their scores measure them on different data, so they do not rank the models")
    for spec in specs:
        kwargs = params.get(spec.name, {})
        for dataset in datasets:
            group = [fs for fs in feature_sets if fs.dataset == dataset]
            runnable = []
            for fs in group:
                # a named metric that cannot run was refused above: this is "all", whose note names the models
                reason = _why_not(spec, fs, "each of them")
                if reason:
                    inapplicable.add(reason)
                    failed(reason, [(fs.dataset, fs.model)], spec)
                else:
                    runnable.append(fs)
            if spec.zoo_level and runnable:
                if progress:
                    progress(dataset, "*", spec.name)
                start = time.perf_counter()
                try:
                    with flags_caught() as raised:
                        values = score_zoo(spec.name, runnable, **kwargs)
                except ModelrankError as exc:
                    failed(str(exc), [(dataset, fs.model) for fs in runnable], spec)
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
                    with flags_caught() as raised:
                        value = compute_metric(spec.name, fs, **kwargs)
                except ModelrankError as exc:
                    failed(str(exc), [(dataset, fs.model)], spec)
                    continue
                flag(raised, [(dataset, fs.model)], columns[spec.name])
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
    failed_messages = [message for messages in failures.values() for message in messages]
    notes.extend(_models_note("skipped", column, dataset, models, reason)
                 for (column, dataset, reason), models in skipped.items())
    if frame[names].isna().all().all():
        reasons = [note.removeprefix("skipped: ") for note in notes if note.startswith("skipped: ")] + failed_messages
        # what went wrong with the data first: behind the metrics of the other task type (regression targets with
        # NaN under --metric all) the four reasons shown were all "supports classification tasks, not regression"
        reasons.sort(key=lambda note: any(note.endswith(reason) for reason in inapplicable))
        shown = "; ".join(dict.fromkeys(reasons[:4]))
        pairs = sum(map(len, skipped.values())) + len(failed_messages)
        raise InvalidInputError(f"no metric could score these features ({pairs} metric/model pair(s) failed): "
                                f"{shown}" + (" ..." if len(reasons) > 4 else ""))
    for message in failed_messages:
        warnings.warn(f"{message}; the other scores are kept", stacklevel=2)
    frame.attrs["notes"] = notes + _flag_notes(flag_records)
    frame.attrs["flags"] = flag_records
    frame.attrs["failures"] = failures
    frame.attrs["higher_is_better"] = {columns[s.name]: s.higher_is_better for s in specs}
    return frame


def _flag_notes(records: list[dict[str, str]]) -> list[str]:
    """One note per flag, metric and dataset, naming its models: a metric saturated on a zoo of 50 models was 50
    notes, their messages differing only in each model's numbers (its feature dimension, its score). The message
    shown is the first model's; every model's own stays in ``attrs["flags"]``."""
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for record in records:
        groups.setdefault((record["flag"], record["metric"], record["Dataset"]), []).append(record)
    notes = []
    for (flag, metric, dataset), group in groups.items():
        models = list(dict.fromkeys(record["Model"] for record in group))
        messages = list(dict.fromkeys(record["message"] for record in group))
        more = f" ({group[0]['Model']}'s; {len(messages)} different messages)" if len(messages) > 1 else ""
        notes.append(_models_note(flag, metric, dataset, models, f"{messages[0]}{more}"))
    return notes


def _models_note(kind: str, column: str, dataset: str, models: list[str], text: str) -> str:
    """A note on a metric's scores of several models, naming them (a long list cut short)."""
    return f"{kind}: {column} on {dataset} for {len(models)} model(s) {short_list(models)}: {text}"


# --------------------------------------------------------------------------------------------- ranks
def saturated_rows(rows: pd.DataFrame, column: str) -> pd.Series:
    """Which of ``rows`` the metric ``column`` flagged as saturated (a score may carry several flags)."""
    flags = rows.get(f"{column}_flags", pd.Series("", index=rows.index)).fillna("")
    return flags.str.split(";").apply(lambda raised: SATURATED in raised).astype(bool)


def rank_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (from ``score_feature_sets``) with a ``<metric>_rank`` column per metric: 1 = best on its dataset.

    Ranks follow the metric's direction and its tie rule (``modelrank.evaluate.ties``): tied models share the
    average of their ranks. A saturated score is not ranked: it sits at the metric's ceiling because the data is
    too small for the features (e.g. H-Score with N <= D), so it would win against every model the metric can
    still tell apart; the others are ranked among themselves. A metric ranks nothing on a dataset when it scored
    only one model there, when all its scores there are tied, or when fewer than two of them are unsaturated: its
    ranks are NaN there and ``df.attrs["no_ranking"]`` lists ``(dataset, metric, reason)``.
    ``df.attrs["mean_rank"]`` is the consensus: per row, the mean rank over the metrics that rank it.
    """
    from .evaluate.ties import metric_tolerance, no_ranking, tie_ranks

    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.attrs.get("higher_is_better"), dict):
        # a KeyError 'higher_is_better' (or an AttributeError) said nothing of what was missing
        raise InvalidInputError(
            "rank_scores takes the table score returns: its attrs['higher_is_better'] gives each metric's "
            "direction, which a table read back from a file has lost (score again, or set "
            "frame.attrs['higher_is_better'] = {metric: True, ...})")
    frame = frame.copy()
    unranked: list[tuple[str, str, str]] = []
    for column, higher in frame.attrs["higher_is_better"].items():
        rtol, atol = metric_tolerance(column)
        frame[f"{column}_rank"] = np.nan
        for dataset, rows in frame.groupby("Dataset", sort=False):
            scored = rows[rows[column].notna()]
            if scored.empty:
                continue
            if len(scored) == 1:  # no winner: with --metric all it won every metric whose input only it had
                unranked.append((dataset, column, f"only 1 model scored ({scored['Model'].iloc[0]})"))
                continue
            saturated = saturated_rows(scored, column)
            if saturated.all():
                unranked.append((dataset, column, f"saturated for all {len(scored)} models"))
                continue
            if len(scored) - saturated.sum() < 2:  # the one unsaturated model would win by the others' ceiling
                unranked.append((dataset, column, f"saturated for {saturated.sum()} of {len(scored)} models"))
                continue
            contenders = scored[~saturated]
            reason = no_ranking(contenders[column].to_numpy(), rtol, atol)
            if reason:
                unranked.append((dataset, column, reason))
                continue
            frame.loc[contenders.index, f"{column}_rank"] = tie_ranks(contenders[column].to_numpy(), rtol, atol,
                                                                      higher)
    for dataset, column, _ in unranked:  # no ranking, no best: P(best) named one (1.0 for a lone model)
        if f"{column}_p_best" in frame.columns:
            frame.loc[frame["Dataset"] == dataset, f"{column}_p_best"] = np.nan
    rank_columns = [f"{c}_rank" for c in frame.attrs["higher_is_better"]]
    frame.attrs["no_ranking"] = unranked
    frame.attrs["mean_rank"] = frame[rank_columns].mean(axis=1).to_numpy() if rank_columns else np.array([])
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
        column = table.column(label_column)
        if column.null_count:  # to_numpy made the nulls of an integer column NaN: "labels are NaN or inf"
            raise InvalidInputError(f"{path}: {column.null_count} of {len(column)} labels are missing (null)")
        arrays["labels"] = column.to_numpy()
    if "source_probs" in table.column_names:
        arrays["source_probs"] = _list_column_to_matrix(table, "source_probs", path)
    metadata = table.schema.metadata or {}
    if CLASS_NAMES_METADATA in metadata:
        try:
            names = json.loads(metadata[CLASS_NAMES_METADATA])
        except ValueError:  # not JSON (or not UTF-8): json's "Expecting value: line 1 column 1" named no field
            names = None
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
    if path.is_dir():
        raise InvalidInputError(f"feature file {path} is a directory; give the .npz or .parquet file")
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
        raise InvalidInputError(f"cannot read {path}: {error_reason(exc)}") from None
    features, labels = arrays["features"], arrays["labels"]
    if features.ndim != 2:
        raise InvalidInputError(f"{path}: features must be 2-D (n, d), got shape {features.shape}")
    if 0 in features.shape:  # every metric refuses it: under --metric all each skipped the model, exit 0
        raise InvalidInputError(f"{path}: features are empty (shape {features.shape}): no samples or no dimensions")
    if features.dtype.kind not in "biuf":  # as every metric requires; the linear probe crashed on text or dates
        raise InvalidInputError(f"{path}: features must be real numbers, got dtype {features.dtype}")
    if labels.ndim == 0:
        raise InvalidInputError(f"{path}: labels must hold one label per feature row, got a single value")
    if labels.shape[0] != features.shape[0]:
        raise InvalidInputError(f"{path}: {labels.shape[0]} labels for {features.shape[0]} feature rows")
    _check_label_values(labels, path)
    probs = arrays.get("source_probs")
    if probs is not None and (probs.ndim != 2 or probs.shape[0] != features.shape[0] or probs.shape[1] == 0):
        raise InvalidInputError(f"{path}: source_probs must have shape ({features.shape[0]}, k), k >= 1, got "
                                f"{probs.shape}")
    # A NaN or inf is a malformed file, refused before any metric runs: under --metric all every metric skipped that
    # model (a note each) and the others were ranked without it, exit 0.
    check_finite(features, f"{path}: features")
    if probs is not None and probs.dtype.kind in "biuf":
        check_finite(probs, f"{path}: source_probs")
    class_names = arrays.get("class_names")
    if class_names is not None:
        class_names = _checked_class_names(class_names, labels, path)
    model = model_name or path.stem
    for what, name in (("model name", model), ("dataset name", dataset_name)):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes of another encoding in a file name or argument: tables cannot hold them
            raise InvalidInputError(f"{path}: the {what} {name!r} is not UTF-8 text; rename it or pass "
                                    f"--{what.replace(' ', '-')}") from None
    return FeatureSet(
        features=features,
        labels=labels,
        model=model,
        dataset=dataset_name,
        task=task or _infer_task(labels),
        source_probs=probs,
        class_names=class_names,
    )


def _check_label_values(labels: np.ndarray, path: Path) -> None:
    """Labels are numbers or class names (text); read as Python objects (a Parquet text column), none may be
    missing. Dates, structs or a missing name crashed the commands (sorting the labels, hashing them)."""
    kind = labels.dtype.kind
    if kind == "O":
        missing = int(pd.isna(labels).sum())
        if missing:
            raise InvalidInputError(f"{path}: {missing} of {len(labels)} labels are missing")
        kind = pd.api.types.infer_dtype(labels, skipna=False)
        if kind in ("string", "bytes"):
            return
    elif kind == "f":
        bad = int((~np.isfinite(labels)).sum())
        if bad:  # no class and no regression target
            raise InvalidInputError(f"{path}: {bad} of {labels.size} labels are NaN or inf")
        return
    elif kind in "biuUS":
        return
    shown = kind if labels.dtype.kind == "O" else labels.dtype
    raise InvalidInputError(f"{path}: labels must be numbers or class names (text), not {shown} values such as "
                            f"{str(labels.flat[0])[:40]!r}")


def _checked_class_names(names: np.ndarray, labels: np.ndarray, path: Path) -> list[str]:
    """``names`` as a list of str, after checking that it names every class id in ``labels``."""
    if names.ndim != 1 or names.dtype.kind != "U":
        raise InvalidInputError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    if labels.ndim == 1 and labels.dtype.kind in "iu" and len(labels) and labels.max() >= len(names):
        raise InvalidInputError(f"{path}: {len(names)} class_names for class ids up to {int(labels.max())}")
    return names.tolist()


def _npz_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as ``.npz`` holds them without pickling, which ``load_feature_file`` refuses: an object array of text
    or numbers (a pandas column) was written as a pickle that could not be read back; it becomes a text or number
    array. Other object labels (mixed, missing values, lists) are refused here rather than written unreadable."""
    if labels.dtype != object:
        return labels
    try:
        plain = np.array(labels.tolist())
    except ValueError:  # ragged lists
        plain = labels
    if plain.dtype.kind in "biuf" or (plain.dtype.kind in "US" and _labels_are_text(labels)):
        return plain
    raise InvalidInputError("these labels (Python objects) cannot be saved to .npz without pickling: give numbers "
                            "or text")


def save_feature_file(data: FeatureSet, path: str | Path) -> Path:
    """Write ``data`` as ``.npz`` or ``.parquet`` (by suffix) in the layout ``load_feature_file`` reads."""
    path = Path(path)
    arrays = {"features": np.asarray(data.features), "labels": np.asarray(data.labels)}
    if data.source_probs is not None:
        arrays["source_probs"] = np.asarray(data.source_probs)
    if data.class_names is not None:
        arrays["class_names"] = np.array(data.class_names, dtype=str)
    if path.suffix.lower() == ".npz":
        arrays["labels"] = _npz_labels(arrays["labels"])
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


# ----------------------------------------------------------------------------------------- bootstrap
def _strata(labels: np.ndarray, task: str) -> list[np.ndarray]:
    """Sample indices drawn together: each class for classification (class sizes stay as they are, so no draw
    loses a class that a metric needs), all samples for regression."""
    n = len(labels)
    if task != "classification":
        return [np.arange(n)]
    _, codes = np.unique(np.asarray(labels).reshape(n, -1)[:, 0], return_inverse=True)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def resample_counts(labels: np.ndarray, task: str, n_boot: int, seed: int) -> np.ndarray:
    """(B, N) bootstrap counts: how often each sample is drawn in each of ``n_boot`` resamples (seeded),
    stratified by class for classification (``_strata``)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, len(labels)))
    for members in _strata(labels, task):  # a handful of classes, each drawn for all resamples at once
        drawn = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        np.add.at(counts, (np.repeat(np.arange(n_boot), len(members)), drawn.ravel()), 1.0)
    return counts


def half_sample_counts(labels: np.ndarray, task: str, n_draws: int, seed: int) -> np.ndarray:
    """(B, N) 0/1 counts of ``n_draws`` seeded half-samples: half of each stratum (``_strata``; a class of one
    sample is always kept) drawn WITHOUT replacement, so a draw holds distinct samples only."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_draws, len(labels)))
    for members in _strata(labels, task):
        keep = max(1, len(members) // 2)
        chosen = np.argsort(rng.random((n_draws, len(members))), axis=1)[:, :keep]  # a permutation's first half
        counts[np.arange(n_draws)[:, None], members[chosen]] = 1.0
    return counts


def _resampled(fs: FeatureSet, counts: np.ndarray) -> FeatureSet:
    rows = np.repeat(np.arange(fs.n_samples), counts.astype(np.int64))
    probs = None if fs.source_probs is None else fs.source_probs[rows]
    return FeatureSet(features=fs.features[rows], labels=fs.labels[rows], model=fs.model, dataset=fs.dataset,
                      task=fs.task, source_probs=probs, class_names=fs.class_names)


def _same_samples(group: list[FeatureSet]) -> bool:
    """Do all models of a dataset hold the same samples in the same order (so resamples can be paired)?"""
    first = group[0]
    for fs in group[1:]:
        if first.sample_ids is not None and fs.sample_ids is not None:
            if not np.array_equal(first.sample_ids, fs.sample_ids):
                return False
        elif fs.n_samples != first.n_samples or not np.array_equal(fs.labels, first.labels):
            return False
    return True


def _replicate_scores(spec: MetricSpec, group: list[FeatureSet], counts: dict[str, np.ndarray],
                      kwargs: dict[str, Any], progress: ProgressFn | None, exact: bool) -> dict[str, np.ndarray]:
    """Per model: the metric on each resample (NaN where it fails), through ``RESAMPLED`` unless ``exact``."""
    from .metrics.resampled import RESAMPLED

    n_boot = next(iter(counts.values())).shape[0]
    out = {fs.model: np.full(n_boot, np.nan) for fs in group}
    fast = None if spec.zoo_level or exact else RESAMPLED.get(spec.name)
    todo = []
    for fs in group:
        if fast is None or fs.n_samples <= fs.features.shape[1]:
            todo.append(fs)
            continue
        if progress:
            progress(fs.dataset, fs.model, f"{spec.name} x{n_boot}")
        inputs = fs.inputs()
        try:
            with flags_caught():
                out[fs.model] = fast(**{k: inputs[k] for k in spec.needs}, counts=counts[fs.model], **kwargs)
        except ModelrankError:
            todo.append(fs)
    for b in range(n_boot if todo else 0):
        if progress:
            progress(todo[0].dataset, "*", f"{spec.name} resample {b + 1}/{n_boot}")
        resamples = [_resampled(fs, counts[fs.model][b]) for fs in todo]
        try:
            with flags_caught():
                if spec.zoo_level:
                    values = score_zoo(spec.name, resamples, **kwargs)
                else:
                    values = {r.model: compute_metric(spec.name, r, **kwargs) for r in resamples}
        except ModelrankError:
            continue
        for model, value in values.items():
            out[model][b] = value
    return out


def bootstrap_scores(
    feature_sets: Sequence[FeatureSet],
    frame: pd.DataFrame,
    n_boot: int,
    seed: int = 0,
    *,
    level: float = 0.95,
    exact: bool = False,
    progress: ProgressFn | None = None,
    **params: dict[str, Any],
) -> pd.DataFrame:
    """How sure ``frame``'s scores (from ``score_feature_sets`` on the same sets) are: a bootstrap over samples.

    Every metric is recomputed on ``n_boot`` seeded resamples of each dataset's samples (``resample_counts``;
    the same resamples for every model when they hold the same samples, so models are compared on equal
    draws). Adds per metric column ``<metric>_low`` / ``<metric>_high``, the percentile interval at ``level``
    shifted by the bootstrap's bias estimate (mean of the resamples - full-data score: a resample repeats
    samples, which makes in-sample fits such as LogME's evidence look better, so raw percentiles can miss the
    full-data score entirely), and ``<metric>_p_best``, the share of resamples in which that model is best (a tie for best, under the
    metric's tie tolerance, is shared equally): for the top model, the probability that it really is best.
    Metrics with a resampled form (``modelrank.metrics.resampled``, e.g. LogME) reuse the full data's
    spectrum (each sample's count exact, interactions left out; see there); the others, and all with
    ``exact=True``, cost ``n_boot`` scores each. With N <= D a resample would hold ~63% distinct samples and so
    lower-rank features, which moves rank-dependent metrics (LogME, H-Score, SFDA, EMMS) far more than new data
    would: such a dataset is rescored on ``n_boot`` half-samples without replacement instead (half of each class,
    ``half_sample_counts``), each model's draws centred on its full-data score and scaled by sqrt(m / (N - m))
    (the delete-d jackknife's variance, m kept samples), and a note says so. ``df.attrs["bootstrap"]`` records
    B, seed and level.
    """
    from .evaluate.ties import tie_groups

    if not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise InvalidInputError(f"the bootstrap needs at least 2 resamples, got {n_boot!r}")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}")
    check_seed(seed, "the bootstrap seed")
    frame = frame.copy()
    columns = frame.attrs["higher_is_better"]
    notes = list(frame.attrs.get("notes", []))
    tail = (1 - level) / 2 * 100
    for column, higher in columns.items():
        spec = METRICS.get(column.split("[", 1)[0])  # columns are named <metric>[<parameters>]
        for suffix in ("_low", "_high", "_p_best"):
            frame[f"{column}{suffix}"] = np.nan
        for dataset in dict.fromkeys(fs.dataset for fs in feature_sets):
            rows = frame.index[(frame["Dataset"] == dataset) & frame[column].notna()]
            scored = set(frame.loc[rows, "Model"])
            group = [fs for fs in feature_sets if fs.dataset == dataset and fs.model in scored]
            if not group:
                continue
            paired = _same_samples(group)
            # N <= D: a resample with repeats holds ~63% distinct samples and so lower-rank features, which moves
            # rank-dependent metrics far more than new data would; half-samples hold distinct samples only.
            halves = any(fs.n_samples <= fs.features.shape[1] for fs in group)
            sampler = half_sample_counts if halves else resample_counts
            shared = sampler(group[0].labels, group[0].task, n_boot, seed)
            counts = {fs.model: shared if paired else sampler(fs.labels, fs.task, n_boot, seed + i)
                      for i, fs in enumerate(group)}
            if halves:
                notes.append(f"bootstrap: {dataset} has no more samples than feature dimensions, so {column} is "
                             "rescored on half-samples without replacement (half-sampling) instead of resamples")
            replicates = _replicate_scores(spec, group, counts, params.get(spec.name, {}), progress, exact)
            table = np.array([replicates[fs.model] for fs in group])  # (models, B)
            complete = np.isfinite(table).all(axis=0)
            if complete.sum() < n_boot / 2:
                notes.append(f"bootstrap: {column} on {dataset} failed on {n_boot - complete.sum()} of {n_boot} resamples")
                continue
            if not paired:
                notes.append(f"bootstrap: the models of {dataset} hold different samples, so {column} resamples "
                             "are drawn per model (unpaired)")
            table = table[:, complete]
            index = pd.Series(rows, index=frame.loc[rows, "Model"])
            full = frame.loc[index.loc[[fs.model for fs in group]], column].to_numpy(dtype=float)
            if halves:
                # Half-sampling: a half-sample's spread around its mean estimates the full data's (delete-d
                # jackknife: Var = m / (N - m) Var(half), with m the kept samples), and each model's own shift
                # at half the size (its bias) is removed before models are compared.
                kept = shared.sum(axis=1).mean() if paired else group[0].n_samples / 2
                scale = np.sqrt(kept / max(group[0].n_samples - kept, 1.0))
                table = full[:, None] + scale * (table - table.mean(axis=1, keepdims=True))
            signed = table if higher else -table
            # Saturated scores are not ranked (``rank_scores``), so they are never best either.
            contenders = ~saturated_rows(frame.loc[index.loc[[fs.model for fs in group]]], column).to_numpy()
            best_share = np.full(len(group), np.nan)
            best_share[contenders] = 0.0
            # resamples, each O(models); none when every model is saturated (the loop ran on empty draws and crashed)
            for draw in signed[contenders].T if contenders.any() else ():
                groups = tie_groups(draw, spec.tie_rtol, spec.tie_atol)
                top = np.flatnonzero(contenders)[groups == groups.max()]
                best_share[top] += 1.0 / top.size
            for i, fs in enumerate(group):
                bias = table[i].mean() - full[i]
                low, high = np.percentile(table[i], [tail, 100 - tail]) - bias
                frame.loc[index[fs.model], [f"{column}_low", f"{column}_high", f"{column}_p_best"]] = (
                    low, high, best_share[i] / table.shape[1])
    frame.attrs.update(notes=list(dict.fromkeys(notes)), bootstrap={"resamples": n_boot, "seed": seed, "level": level, "exact": exact})
    return frame
