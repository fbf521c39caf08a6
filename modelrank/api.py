"""The top-level functions a notebook user reaches for first: ``modelrank.score`` and ``modelrank.rank``.

Both take the models' features in any of the forms the command line takes (``FeatureSet`` objects, ``.npz`` /
``.parquet`` feature files, or a dataset and model names whose features are loaded from the cache, extracted when
missing) and return pandas tables. ``modelrank.evaluate`` (scores against fine-tune ground truth) is
``modelrank.evaluate.evaluate``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import pandas as pd

from .errors import InvalidInputError
from .features import FeatureSet

FeatureSource = Union[FeatureSet, str, Path]


def _feature_sets(features: FeatureSource | Sequence[FeatureSource] | None, dataset: str | None,
                  models: str | Sequence[str] | None, task: str | None, extraction: dict[str, Any]) -> list[FeatureSet]:
    """What to score: the given FeatureSets and feature files, or the cached features of ``models`` on ``dataset``."""
    if (features is None) == (models is None):
        raise InvalidInputError("give either features (FeatureSets or feature files) or dataset= and models=")
    if models is not None:
        if dataset is None:
            raise InvalidInputError("models= goes with dataset=")
        from .extraction import load_feature_pairs

        names = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
        loaded = load_feature_pairs([(m, dataset) for m in names], **extraction)
        return [loaded[m, dataset] for m in names]
    from .scoring import load_feature_file

    # As the command line refuses --limit without -d: features are scored as given, and limit=10 was ignored
    defaults = inspect.signature(score).parameters
    ignored = [name for name, value in extraction.items() if value != defaults[name].default]
    if ignored:
        raise InvalidInputError(f"{', '.join(f'{name}=' for name in ignored)} go{'es' if len(ignored) == 1 else ''} "
                                "with dataset= and models= (features are scored as given)")
    single = isinstance(features, (FeatureSet, str, Path)) or not isinstance(features, Iterable)
    items = [features] if single else list(features)
    wrong = next((type(item).__name__ for item in items if not isinstance(item, (FeatureSet, str, Path))), None)
    if wrong:  # arrays, most likely: numpy rows read as file paths raised a TypeError from pathlib
        raise InvalidInputError(f"features must be FeatureSets or feature file paths, not {wrong}; "
                                "wrap arrays as modelrank.FeatureSet(features, labels)")
    if all(isinstance(item, FeatureSet) for item in items) and (dataset, task) != (None, None):
        # they name the dataset and task of feature files: silently ignored, task="regression" scored classes
        raise InvalidInputError("dataset= and task= go with feature files or models=; a FeatureSet carries its own "
                                "(FeatureSet(features, labels, dataset=..., task=...))")
    return [item if isinstance(item, FeatureSet) else load_feature_file(item, dataset_name=dataset or "custom", task=task)
            for item in items]


def score(
    features: FeatureSource | Sequence[FeatureSource] | None = None,
    metrics: str | Sequence[str] = "all",
    *,
    dataset: str | None = None,
    models: str | Sequence[str] | None = None,
    task: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    **params: dict[str, Any],
) -> pd.DataFrame:
    """Score models with transferability metrics: one row per (dataset, model), one column per metric.

    ``features``: FeatureSet(s) or feature file path(s) (``.npz`` / ``.parquet``, see
    ``modelrank.scoring.FEATURE_FILE_HELP``); files get dataset name ``dataset`` (default "custom") and ``task``
    (default: inferred from the labels). Or, instead of ``features``: ``dataset`` (a registered dataset,
    ``folder:PATH`` or ``csv:PATH``) and ``models`` (names, a list or "a,b"), whose features come from the cache
    and are extracted when missing (``split``, ``limit``, ``per_class``, ``seed``, ``cache_dir``, ``data_root``,
    ``device`` as in ``modelrank extract``). ``metrics``: names (a list or "logme,leep") or "all". ``params``:
    per-metric parameters, e.g. ``nleep={"seed": 1}``.

    Returns ``modelrank.scoring.score_feature_sets``'s table (with ``<metric>_seconds`` columns and
    ``attrs["notes"]``, ``attrs["failures"]``, ``attrs["higher_is_better"]``).
    """
    from .scoring import score_feature_sets

    extraction = dict(split=split, limit=limit, per_class=per_class, seed=seed, device=device,
                      cache_dir=str(cache_dir) if cache_dir else None, data_root=str(data_root) if data_root else None)
    return score_feature_sets(_feature_sets(features, dataset, models, task, extraction), metrics, **params)


def rank(
    features: FeatureSource | Sequence[FeatureSource] | None = None,
    metrics: str | Sequence[str] = "logme",
    **options: Any,
) -> pd.DataFrame:
    """Models best first per dataset: ``Dataset, Model, rank, <metric>_rank..., <metric>...``.

    Takes the arguments of ``score`` (default metric: LogME). Each metric ranks the models of a dataset by its
    direction (1 = best; equal scores share the average of their ranks; a model the metric could not score has
    no rank); ``rank`` is the mean of a model's ranks over the metrics, the order of the rows.
    """
    return rank_scores(score(features, metrics, **options))


def rank_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """``rank``'s table from a ``score`` table, ranked by ``modelrank.scoring.rank_scores`` (each metric's
    direction and tie rule; a metric whose scores are all tied on a dataset ranks nothing there)."""
    from .scoring import rank_scores as metric_ranks

    ranked = metric_ranks(frame)
    directions: dict[str, bool] = frame.attrs["higher_is_better"]
    rank_columns = [f"{name}_rank" for name in directions]
    table = pd.concat([ranked[["Dataset", "Model"]], pd.Series(ranked.attrs["mean_rank"], index=ranked.index, name="rank"),
                       ranked[rank_columns], ranked[list(directions)]], axis=1)
    order = {dataset: i for i, dataset in enumerate(dict.fromkeys(frame["Dataset"]))}
    table = table.sort_values(["Dataset", "rank"], key=lambda c: c.map(order) if c.name == "Dataset" else c,
                              kind="stable", na_position="last")
    table.attrs = dict(ranked.attrs)
    return table.reset_index(drop=True)
