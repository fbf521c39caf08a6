"""The metric registry: each transferability metric is a plain function registered with what it needs.

A metric is ``f(features, labels, ...) -> float`` (the ``tllib.ranking`` style); the decorator records
which named inputs it takes (``needs``), which task types it supports, whether a higher score means a
better model, and the paper it implements. I/O, caching and printing live elsewhere.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidInputError
from ..evaluate.ties import DEFAULT_ATOL, DEFAULT_RTOL
from ..features import TASK_TYPES, FeatureSet
from ..registry import Registry

#: Named inputs a metric may declare. ``source_probs`` is the softmax of the model's own pre-training head;
#: ``task`` ("classification" | "regression") lets a metric that supports both read labels the right way.
INPUT_NAMES = ("features", "labels", "source_probs", "class_names", "task")


class SaturationWarning(UserWarning):
    """A metric says its score has saturated (or hit a clamp) on this data: it no longer tells models apart,
    e.g. H-Score at C - 1 when N <= D + 1. The metric stays a pure function returning a float and only warns
    with this category; ``score_feature_sets`` catches it and flags the cell (``<metric>_flags`` = "saturated")."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[..., float]
    needs: tuple[str, ...]
    tasks: tuple[str, ...]
    higher_is_better: bool
    reference: str
    #: Zoo-relative metrics (NCTI, ETran) normalise across models; ``fn`` then maps
    #: ``{model: FeatureSet}`` to ``{model: score}`` and is only run through ``score_zoo``.
    zoo_level: bool = False
    #: Scores within |a - b| <= tie_rtol * max(|a|, |b|) + tie_atol are ties (``modelrank.evaluate.ties``).
    tie_rtol: float = DEFAULT_RTOL
    tie_atol: float = DEFAULT_ATOL

    @property
    def summary(self) -> str:
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str,
    *,
    needs: tuple[str, ...] = ("features", "labels"),
    tasks: tuple[str, ...] = ("classification",),
    higher_is_better: bool = True,
    reference: str = "",
    zoo_level: bool = False,
    tie_rtol: float = DEFAULT_RTOL,
    tie_atol: float = DEFAULT_ATOL,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` under ``name``; returns ``fn`` unchanged so it stays importable as a plain function.

    ``tie_rtol`` / ``tie_atol``: the metric's numerical precision, below which two scores are ties (looser for
    iterative or float32 computations, ``tie_atol`` for scores that saturate at 0); see ``modelrank.evaluate.ties``.
    """
    unknown = set(needs) - set(INPUT_NAMES)
    if unknown:
        raise ValueError(f"metric {name!r} needs unknown inputs {sorted(unknown)}")
    bad_tasks = set(tasks) - set(TASK_TYPES)
    if bad_tasks:
        raise ValueError(f"metric {name!r} declares unknown tasks {sorted(bad_tasks)}")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        METRICS.add(name, MetricSpec(name, fn, tuple(needs), tuple(tasks), higher_is_better, reference, zoo_level,
                                     tie_rtol, tie_atol))
        return fn

    return decorator


def missing_inputs(spec: MetricSpec, data: FeatureSet) -> list[str]:
    inputs = data.inputs()
    return [k for k in spec.needs if inputs.get(k) is None]


def check_applicable(spec: MetricSpec, data: FeatureSet) -> None:
    """Raise InvalidInputError when ``data`` has the wrong task type or lacks an input ``spec`` needs."""
    if data.task not in spec.tasks:
        raise InvalidInputError(f"metric {spec.name!r} supports {', '.join(spec.tasks)} tasks, not {data.task}")
    missing = missing_inputs(spec, data)
    if missing:
        raise InvalidInputError(
            f"metric {spec.name!r} needs {', '.join(missing)}, which {data.model} on {data.dataset} does not have"
        )


def score_zoo(name: str, feature_sets: list[FeatureSet], **params: Any) -> dict[str, float]:
    """Run a zoo-relative metric over every model's FeatureSet of ONE dataset: ``{model: score}``.

    A zoo-level ``fn`` receives ``{model: FeatureSet}`` (and ``params``) and returns ``{model: score}``.
    """
    spec = METRICS.get(name)
    if not spec.zoo_level:
        raise InvalidInputError(f"metric {name!r} scores one model at a time: use compute_metric")
    datasets = {fs.dataset for fs in feature_sets}
    if len(datasets) != 1:
        raise InvalidInputError(f"score_zoo takes the models of one dataset, got datasets {sorted(datasets)}")
    for fs in feature_sets:
        check_applicable(spec, fs)
    check_parameters(spec, params)
    by_model = {fs.model: fs for fs in feature_sets}
    if len(by_model) != len(feature_sets):
        raise InvalidInputError("score_zoo got two feature sets with the same model name")
    return {model: float(v) for model, v in spec.fn(by_model, **params).items()}


def check_parameters(spec: MetricSpec, params: dict[str, Any]) -> None:
    """Raise InvalidInputError when ``params`` names something that is not a parameter of the metric."""
    signature = inspect.signature(spec.fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return
    allowed = [name for name, p in signature.parameters.items()
               if name not in spec.needs and p.default is not inspect.Parameter.empty]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInputError(f"metric {spec.name!r} has no parameter {', '.join(map(repr, unknown))} "
                                f"(its parameters: {', '.join(allowed) or 'none'})")


def compute_metric(name: str, data: FeatureSet, **params: Any) -> float:
    """Run one registered metric on one FeatureSet, checking its declared needs, task type and parameters first."""
    spec = METRICS.get(name)
    if spec.zoo_level:
        raise InvalidInputError(f"metric {name!r} is zoo-relative: score it with score_zoo over several models")
    check_applicable(spec, data)
    check_parameters(spec, params)
    inputs = data.inputs()
    return float(spec.fn(**{k: inputs[k] for k in spec.needs}, **params))
