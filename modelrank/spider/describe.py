"""Describe a new dataset the way a learner's training tasks were described, from the zoo's own features.

A learner trained on ``modelrank benchmark`` records (``load_benchmark``) read, about each training task:
task metadata (base dataset, domain shift, #classes, #samples), a text embedding of "domain base: class
names", the class prototypes of one general encoder's features (Model Spider's task tokens) and
transferability scores of every zoo model. For a dataset it has never seen, ``describe_task`` builds the same
description from feature sets (cached zoo features, or files brought with ``--features``), computing only
what the learner reads (``Learner.reads``): the encoder's features for prototypes, every zoo model's features
only when it reads scores. ``rerank_by_metric`` is the second stage of Model Spider: the top-k models of the
learned ranking are re-ordered by a transferability metric on their OWN features.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..features import FeatureSet
from .base import PREDICTION_ATOL, PREDICTION_RTOL, Learner
from .records import TaskInfo

#: the text a ``load_benchmark`` task embedding encodes (``records.info["task_text"]``)
BENCHMARK_TASK_TEXT = "{domain} {base}: {class_names}"
#: where each input comes from on the command line (what an error names when an input is missing)
SUPPLIED_BY = {
    "metadata": "--meta COLUMN=VALUE (or -d DATASET, which fills base, domain, classes and samples)",
    "embedding": "-d DATASET or --features (the learner's training records must define the task text)",
    "prototypes": "-d DATASET or --features with the encoder's features",
    "scores": "-d DATASET or --features for the zoo models",
}


def needed_models(learner: Learner) -> list[str]:
    """The zoo models whose features on the new dataset the description needs (encoder first)."""
    reads = learner.reads
    encoder = learner.recipe.get("encoder")
    if "prototypes" in reads and encoder is None:
        raise InvalidInputError("this learner reads class prototypes but does not say which encoder made them; "
                                "retrain it on `benchmark:FOLDER` records")
    models = [encoder] if "prototypes" in reads else []
    if "scores" in reads:
        models += [m for m in learner.models if m != encoder]
    return models


def describe_task(learner: Learner, name: str, features: Mapping[str, FeatureSet], meta: Mapping[str, object] | None = None,
                  progress: Callable[[str, str, str], None] | None = None) -> TaskInfo:
    """A ``TaskInfo`` for dataset ``name`` with what ``learner`` reads, from ``features`` {model: FeatureSet}.

    ``meta``: metadata values that override (or add to) those read off the features (base = the dataset name,
    domain = "none", classes, samples). Raises naming the command-line option that supplies what is missing.
    """
    from .prototypes import prototypes_of

    reads = learner.reads
    lacking = [m for m in needed_models(learner) if m not in features]
    if lacking and ("prototypes" in reads and learner.recipe["encoder"] in lacking):
        raise InvalidInputError(f"{learner.name} reads the class prototypes of {learner.recipe['encoder']}'s features; "
                                f"supply them with {SUPPLIED_BY['prototypes']}")
    any_set = next(iter(features.values()), None)
    info = TaskInfo(name)
    if "metadata" in reads or "embedding" in reads:
        facts: dict[str, object] = {"base": name, "domain": "none"}
        if any_set is not None:
            facts.update(classes=int(np.unique(any_set.labels).size), samples=any_set.n_samples)
        facts.update(meta or {})
        if "metadata" in reads:
            encoder = learner.featurizer.task_encoder
            columns = [*encoder.numeric, *encoder.categorical]
            missing = [c for c in columns if c not in facts]
            if missing:
                raise InvalidInputError(f"{learner.name} reads task metadata column(s) {missing}; supply them with "
                                        f"{SUPPLIED_BY['metadata']}")
            info.meta = {c: facts[c] for c in columns}
        if "embedding" in reads:
            info.embedding = _task_embedding(learner, facts, any_set)
    if "prototypes" in reads:
        info.prototypes = prototypes_of(features[learner.recipe["encoder"]])
    if "scores" in reads:
        info.scores = _scores(learner, name, features, progress)
    return info


def _task_embedding(learner: Learner, facts: Mapping[str, object], feature_set: FeatureSet | None) -> np.ndarray:
    template = learner.recipe.get("task_text")
    if template is None:
        raise InvalidInputError(f"{learner.name} reads a task embedding its training records brought along, which "
                                "cannot be computed for a new dataset; train on `benchmark:FOLDER` records or without "
                                "task embeddings")
    if feature_set is None or not feature_set.class_names:
        raise InvalidInputError(f"{learner.name} reads a text embedding of the class names; supply them with "
                                f"{SUPPLIED_BY['embedding']}")
    from ..text import encode_texts

    text = template.format(**{**facts, "class_names": ", ".join(feature_set.class_names)})
    return encode_texts([text])[0]


def _scores(learner: Learner, name: str, features: Mapping[str, FeatureSet], progress) -> pd.DataFrame:
    """The learner's score columns for every zoo model with features (NaN for the others, which the learners
    treat as unknown); columns that are not registered metrics cannot be computed and are left NaN."""
    from ..metrics import METRICS
    from ..scoring import score_feature_sets

    computable = [c for c in learner.score_columns if c in METRICS]
    if not computable:
        raise InvalidInputError(f"{learner.name} reads score column(s) {learner.score_columns}, which are not "
                                "modelrank metrics; it can rank only the tasks of its records")
    sets = [features[m] for m in learner.models if m in features]
    if not sets:
        raise InvalidInputError(f"{learner.name} reads transferability scores; supply features with {SUPPLIED_BY['scores']}")
    frame = score_feature_sets([_renamed(fs, name) for fs in sets], computable, progress=progress)
    table = frame.set_index("Model")[computable].reindex(learner.models)
    return table.reindex(columns=learner.score_columns)


def _renamed(feature_set: FeatureSet, dataset: str) -> FeatureSet:
    from dataclasses import replace

    return replace(feature_set, dataset=dataset)


def top_models(scores: pd.Series, k: int) -> list[str]:
    """The ``k`` best models of ``scores``, and every model tied with the k-th (a tie is not a ranking; ties are
    scores equal within precision, ``modelrank.evaluate.ties``)."""
    from ..evaluate.ties import tie_groups

    if k < 1:
        return []
    ordered = scores.sort_values(ascending=False, kind="stable")
    groups = tie_groups(ordered.to_numpy(), PREDICTION_RTOL, PREDICTION_ATOL)
    return list(ordered.index[groups >= groups[min(k, len(ordered)) - 1]])


def prediction_ranks(scores: pd.Series) -> tuple[np.ndarray, str | None]:
    """(rank of each score, 1 = best, None) or (NaN ranks, why) when the scores rank nothing.

    The tie rule of `score`, `evaluate` and `spider eval` (``modelrank.evaluate.ties``): scores equal within
    precision share the best rank of their group, and a learner that gives every model the same score (one with
    nothing to go on, e.g. a single training task) gives no ranking; exact comparison ordered such models by
    their last bits, or printed rank 1 for all."""
    from scipy import stats

    from ..evaluate.ties import no_ranking, tie_groups

    values = scores.to_numpy(dtype=float)
    reason = no_ranking(values, PREDICTION_RTOL, PREDICTION_ATOL)
    if reason:
        return np.full(values.size, np.nan), reason
    return stats.rankdata(-tie_groups(values, PREDICTION_RTOL, PREDICTION_ATOL), method="min"), None


def rerank_by_metric(scores: pd.Series, k: int, features: Mapping[str, FeatureSet], metric: str) -> pd.Series:
    """Model Spider's second stage: the top-``k`` models of ``scores`` (``top_models``: ties with the k-th
    included) re-ordered by ``metric`` on their own features; the same score values are handed out in the new
    order, so the rest of the ranking is unchanged.

    Only what the metric ranks moves, by the rule of `score` (``scoring.rank_scores``): models tied on the metric
    within its precision keep their first-stage order, and a saturated or failed score keeps its model's place
    (the others move among the remaining places). A metric that ranks fewer than two of them leaves the first
    stage as it is, with a warning: argsort of H-Scores saturated at C - 1 for every model had re-ordered them by
    their last bits, and a saturated score beat every model the metric could still tell apart."""
    import warnings

    from ..scoring import rank_scores, score_feature_sets

    top = pd.Index(top_models(scores, k))
    lacking = [m for m in top if m not in features]
    if lacking:
        raise InvalidInputError(f"re-ranking needs the features of {lacking[:5]} on the dataset")
    frame = rank_scores(score_feature_sets([features[m] for m in top], [metric]))
    ranks = frame.set_index("Model")[f"{metric}_rank"].reindex(top).to_numpy(dtype=float)
    places = np.flatnonzero(np.isfinite(ranks))  # where the models the metric ranks stand in the first stage
    if places.size < 2:
        why = "; ".join(reason for _, _, reason in frame.attrs["no_ranking"]) or "it scored fewer than 2 of them"
        warnings.warn(f"re-ranking: {metric} ranks none of the top {len(top)} models ({why}); their order is the "
                      "first stage's", stacklevel=2)
        return scores.copy()
    order = np.arange(len(top))
    order[places] = places[np.argsort(ranks[places], kind="stable")]  # rank 1 = best, in the metric's direction
    out = scores.copy()
    out.loc[top[order]] = np.sort(scores.loc[top].to_numpy())[::-1]
    return out
