"""The metric registry: each transferability metric is a plain function registered with what it needs.

A metric is ``f(features, labels, ...) -> float`` (the ``tllib.ranking`` style); the decorator records
which named inputs it takes (``needs``), which task types it supports, whether a higher score means a
better model, and the paper it implements. I/O, caching and printing live elsewhere.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np

from ..errors import MAX_SEED, InvalidInputError
from ..features import TASK_TYPES, FeatureSet, as_array
from ..registry import Registry
from ._checks import check_magnitudes

#: Tie rule of a score (``modelrank.evaluate.ties``): relative tolerance of a float64 closed form, and no
#: absolute tolerance unless the metric declares one.
DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 0.0

#: Named inputs a metric may declare. ``source_probs`` is the softmax of the model's own pre-training head;
#: ``task`` ("classification" | "regression") lets a metric that supports both read labels the right way.
INPUT_NAMES = ("features", "labels", "source_probs", "class_names", "task")


class MetricFlagWarning(UserWarning):
    """A warning that qualifies a score without invalidating it; ``flag`` is its short name in score tables.

    Metrics ``warnings.warn`` a subclass; ``scoring.score_feature_sets`` records every one raised while a
    metric runs in ``frame.attrs["flags"]`` (and still lets it through to the user)."""

    flag = "flagged"


class NotConvergedWarning(MetricFlagWarning):
    """An iterative metric stopped at its iteration cap before meeting its tolerance."""

    flag = "not_converged"


class SaturationWarning(MetricFlagWarning):
    """A metric's score has saturated (or hit a clamp) on this data: it no longer tells models apart, e.g.
    H-Score at C - 1 when N <= D + 1. ``modelrank.scoring.rank_scores`` gives no ranking for a metric saturated
    on every model of a dataset."""

    flag = "saturated"


def caller_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised in ``modelrank.metrics`` that makes it point at the first caller
    outside the package (a notebook's call of a metric, or modelrank's scoring code), not at the registry's wrapper
    or a helper: with a fixed level, warnings of directly called metrics named a line of ``base.py``."""
    level, frame = 1, sys._getframe(1)  # level 1: the function that warns
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(__package__):
        frame, level = frame.f_back, level + 1
    return level


Preset = TypeVar("Preset")


@dataclass(frozen=True)
class Interval:
    """The values a numeric parameter takes, written as in mathematics: ``Interval.parse("[0, 1)")``,
    ``"(0, inf)"``, ``"[1, 10000]"``. Declared with ``register_metric(ranges=...)`` where the metric refuses values
    the generic rule (>= 1 for counts, >= 0 otherwise) lets through, so ``--set`` is checked before any work and
    ``modelrank list parameters`` says what the metric really takes."""

    low: float
    high: float
    closed_low: bool = True
    closed_high: bool = False

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = re.fullmatch(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])", text.strip())
        if match is None:
            raise ValueError(f"not an interval: {text!r} (write e.g. '[0, 1)' or '(0, inf)')")
        return cls(float(match[2]), float(match[3]), match[1] == "[", match[4] == "]")

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.closed_low else value > self.low
        below = value <= self.high if self.closed_high else value < self.high
        return bool(math.isfinite(value) and above and below)

    def __str__(self) -> str:
        """">= 1", "> 0" for a half-line, else "in [0, 1)"."""
        if math.isinf(self.high):
            return f"{'>=' if self.closed_low else '>'} {_plain(self.low)}"
        return (f"in {'[' if self.closed_low else '('}{_plain(self.low)}, {_plain(self.high)}"
                f"{']' if self.closed_high else ')'}")


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def named_preset(metric: str, preset: str, presets: Mapping[str, Preset], overridden: Mapping[str, bool]) -> Preset:
    """The settings named ``preset`` of ``metric`` (a reproduction of one public implementation).

    ``overridden`` maps the parameters the preset sets to whether the caller also changed them from their
    defaults: a preset and an explicit setting of the same parameter contradict each other, so that is an error
    rather than one of them being silently ignored."""
    if preset not in presets:
        raise InvalidInputError(f"{metric} has no preset {preset!r} (its presets: {', '.join(presets)})")
    clashing = [name for name, changed in overridden.items() if changed]
    if clashing:
        raise InvalidInputError(f"{metric}: preset {preset!r} sets {', '.join(clashing)}; give one or the other")
    return presets[preset]


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
    #: The values a text parameter takes ({parameter: names}), checked with the other parameters before any work.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    #: The range of a numeric parameter where it is not the generic one (``Interval``).
    ranges: Mapping[str, Interval] = field(default_factory=dict, hash=False)

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
    choices: Mapping[str, Iterable[str]] | None = None,
    ranges: Mapping[str, str | Interval] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` under ``name``; returns it as a plain function that checks its parameters as
    ``compute_metric`` does (``check_parameters``) and returns its score as a finite Python float.

    ``tie_rtol`` / ``tie_atol``: the metric's numerical precision, below which two scores are ties (looser for
    iterative or float32 computations, ``tie_atol`` for scores that saturate at 0); see ``modelrank.evaluate.ties``.
    ``choices``: the names a text parameter (a preset, a solver type) takes, so that ``--set`` values are checked
    before features are extracted. ``ranges``: the interval of a numeric parameter (``"(0, inf)"``, ``"[1, 10000]"``,
    see ``Interval``) where the metric refuses values the generic rule (``_least``) allows.
    """
    unknown = set(needs) - set(INPUT_NAMES)
    if unknown:
        raise ValueError(f"metric {name!r} needs unknown inputs {sorted(unknown)}")
    bad_tasks = set(tasks) - set(TASK_TYPES)
    if bad_tasks:
        raise ValueError(f"metric {name!r} declares unknown tasks {sorted(bad_tasks)}")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        intervals = {key: Interval.parse(value) if isinstance(value, str) else value
                     for key, value in (ranges or {}).items()}
        misnamed = set(intervals) - set(inspect.signature(fn).parameters)
        if misnamed:
            raise ValueError(f"metric {name!r} declares ranges of unknown parameters {sorted(misnamed)}")
        signature = inspect.signature(fn)

        # A notebook user calls the function itself, not compute_metric: a parameter out of range (k=0, a NaN
        # weight, a negative seed) or features beyond float64's second moments raised deep inside numpy, LAPACK or
        # scikit-learn, or gave NaN or -inf as a score.
        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            settable = _settable(spec, signature)
            bound.arguments.update(check_parameters(spec, {k: v for k, v in bound.arguments.items() if k in settable}))
            if zoo_level:  # score_zoo checks every model's features
                return fn(*bound.args, **bound.kwargs)
            # labels are class codes or regression targets, which ``as_targets`` checks under their own name, and
            # source probabilities are checked to lie in [0, 1] (``checked_probs``): a pass of their own would
            # cost LEEP and NCE, whose work is one or two passes over them, a third of their time.
            unchecked = ("labels", "source_probs")
            check_magnitudes(name, {k: v for k, v in bound.arguments.items() if k in spec.needs and k not in unchecked})
            return _finite(name, fn(*bound.args, **bound.kwargs))

        spec = MetricSpec(name, checked, tuple(needs), tuple(tasks), higher_is_better, reference, zoo_level, tie_rtol,
                          tie_atol, {key: tuple(names) for key, names in (choices or {}).items()}, intervals)
        METRICS.add(name, spec)
        return checked

    return decorator


def missing_inputs(spec: MetricSpec, data: FeatureSet) -> list[str]:
    inputs = data.inputs()
    missing = [k for k in spec.needs if inputs.get(k) is None]
    if "class_names" in missing and _labels_are_text(data.labels):
        missing.remove("class_names")  # text labels are their classes' names (what EMMS embeds)
    return missing


def _labels_are_text(labels: Any) -> bool:
    """Whether labels are strings or bytes (a Parquet text column arrives as Python objects: its distinct values
    are checked, not every sample)."""
    labels = as_array(labels, "labels")
    if labels.dtype.kind == "O":
        import pandas as pd

        try:
            values = pd.unique(labels.ravel())
        except TypeError:  # unhashable labels (lists): no text, and refused by the metric's own checks
            return False
        return all(isinstance(v, (str, bytes)) for v in values)
    return labels.dtype.kind in "US"


def check_applicable(spec: MetricSpec, data: FeatureSet, subject: str | None = None) -> None:
    """Raise InvalidInputError when ``data`` has the wrong task type or lacks an input ``spec`` needs. ``subject``:
    who lacks it in the message (default "<model> on <dataset>"), for a message shared by several models."""
    if data.task not in spec.tasks:
        raise InvalidInputError(f"metric {spec.name!r} supports {', '.join(spec.tasks)} tasks, not {data.task}")
    missing = missing_inputs(spec, data)
    if missing:
        raise InvalidInputError(f"metric {spec.name!r} needs {', '.join(missing)}, which "
                                f"{subject or f'{data.model} on {data.dataset}'} does not have")


def score_zoo(name: str, feature_sets: list[FeatureSet], **params: Any) -> dict[str, float]:
    """Run a zoo-relative metric over every model's FeatureSet of ONE dataset: ``{model: score}``.

    A zoo-level ``fn`` receives ``{model: FeatureSet}`` (and ``params``) and returns ``{model: score}``.
    """
    spec = METRICS.get(name)
    if not spec.zoo_level:
        raise InvalidInputError(f"metric {name!r} scores one model at a time: use compute_metric")
    if not feature_sets:
        raise InvalidInputError(f"score_zoo got no models to score with {name}")
    wrong = next((type(fs).__name__ for fs in feature_sets if not isinstance(fs, FeatureSet)), None)
    if wrong:
        raise InvalidInputError(f"score_zoo takes a list of FeatureSets, not of {wrong}")
    datasets = {fs.dataset for fs in feature_sets}
    if len(datasets) != 1:
        raise InvalidInputError(f"score_zoo takes the models of one dataset, got datasets {sorted(datasets)}")
    for fs in feature_sets:
        check_applicable(spec, fs)
    params = check_parameters(spec, params)
    by_model = {fs.model: fs for fs in feature_sets}
    if len(by_model) != len(feature_sets):
        raise InvalidInputError("score_zoo got two feature sets with the same model name")
    arrays = {f"features of {fs.model}": fs.features for fs in feature_sets}
    check_magnitudes(name, arrays)
    return {model: _finite(name, v) for model, v in spec.fn(by_model, **params).items()}


def check_parameters(spec: MetricSpec, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as the metric takes them (integer parameters given as whole floats, e.g. 5.0, or numpy integers
    become ints, as sklearn, range() and numpy's seeding need; numbers become floats, flags bools);
    InvalidInputError when one is not a parameter of the metric or is of the wrong kind or out of range."""
    signature = inspect.signature(spec.fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return dict(params)
    allowed = list(_settable(spec, signature))
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInputError(f"metric {spec.name!r} has no parameter {', '.join(map(repr, unknown))} "
                                f"(its parameters: {', '.join(allowed) or 'none'})")
    checked = dict(params)
    for key, value in params.items():
        if key in spec.choices and value is not None and value not in spec.choices[key]:
            raise InvalidInputError(f"metric {spec.name!r}: parameter {key} takes one of "
                                    f"{', '.join(spec.choices[key])}, not {value!r}")
        parameter = signature.parameters[key]
        expected = _value_kind(parameter)
        if expected is None or (value is None and "None" in str(parameter.annotation)):
            continue
        if not _is_kind(value, expected):
            raise InvalidInputError(f"metric {spec.name!r}: parameter {key} takes {expected}, not {value!r}")
        if expected == "true or false":
            checked[key] = bool(value)
            continue
        value = checked[key] = int(value) if expected == "an integer" else float(value)
        interval = _interval(spec, parameter, expected)
        if value not in interval:
            what = f"be a finite number {interval}" if math.isinf(interval.high) else f"be {interval}"
            nullable = " or None" if "None" in str(parameter.annotation) else ""
            raise InvalidInputError(f"metric {spec.name!r}: parameter {key} must {what}{nullable}, not {value!r}")
        if key == "seed" and value >= MAX_SEED:
            raise InvalidInputError(f"metric {spec.name!r}: seed must be below 2**32, not {value!r}")
    return checked


def metric_parameters(spec: MetricSpec) -> list[tuple[str, Any, str]]:
    """(name, default, what it accepts) of each parameter ``--set`` / ``compute_metric`` may give ``spec``'s metric,
    in signature order; what ``check_parameters`` enforces, in words (``modelrank list parameters``)."""
    signature = inspect.signature(spec.fn)
    rows = []
    for name, parameter in _settable(spec, signature).items():
        kind, annotation = _value_kind(parameter), str(parameter.annotation)
        if name in spec.choices:
            accepts = f"one of {', '.join(spec.choices[name])}"
        elif kind is None:  # arrays and names: the annotation says it best
            accepts = annotation.removesuffix(" | None")
        elif kind == "true or false":
            accepts = kind
        else:
            accepts = f"{kind} {_interval(spec, parameter, kind)}" + (" (below 2**32)" if name == "seed" else "")
        if annotation.endswith("None"):
            accepts += ", or null"
        rows.append((name, parameter.default, accepts))
    return rows


def _settable(spec: MetricSpec, signature: inspect.Signature) -> dict[str, inspect.Parameter]:
    """The parameters of a metric's signature a caller may set: those with a default that are no named input."""
    return {name: p for name, p in signature.parameters.items()
            if name not in spec.needs and p.default is not inspect.Parameter.empty}


def _interval(spec: MetricSpec, parameter: inspect.Parameter, kind: str) -> Interval:
    """The range of a numeric parameter: the metric's declared one, else [``_least``, inf)."""
    return spec.ranges.get(parameter.name) or Interval(_least(parameter, kind), math.inf)


def _least(parameter: inspect.Parameter, kind: str) -> int:
    """Smallest value a numeric parameter takes. Counts, sizes and iteration caps (integers defaulting to None or
    >= 1) are >= 1; seeds (default 0) and every real parameter (weights, tolerances, step sizes, floors) are >= 0."""
    return 1 if kind == "an integer" and (parameter.default is None or parameter.default >= 1) else 0


#: Annotations of parameters whose default (None) does not tell what they take.
_OPTIONAL_KINDS = {"int | None": "an integer", "float | None": "a number"}


def _value_kind(parameter: inspect.Parameter) -> str | None:
    """What a parameter accepts, from its default (bool, int, float) or, for a None default, its annotation
    ("int | None", "float | None"); None when neither tells (strings, arrays, names)."""
    default = parameter.default
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if default is None:
        return _OPTIONAL_KINDS.get(str(parameter.annotation))
    return None


def _is_kind(value: Any, kind: str) -> bool:
    """Whether ``value`` is of ``kind`` (``_value_kind``); numpy scalars count as the Python ones they stand for
    (np.int64 from an array, np.float32 from a float32 computation, np.bool_ from a comparison)."""
    if kind == "true or false":
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    return kind == "a number" or float(value).is_integer()


def compute_metric(name: str, data: FeatureSet, **params: Any) -> float:
    """Run one registered metric on one FeatureSet, checking its declared needs, task type and parameters first."""
    spec = METRICS.get(name)
    if spec.zoo_level:
        raise InvalidInputError(f"metric {name!r} is zoo-relative: score it with score_zoo over several models")
    if not isinstance(data, FeatureSet):  # arrays: AttributeError on data.task
        raise InvalidInputError(f"compute_metric takes a FeatureSet, not {type(data).__name__}; for arrays call "
                                f"modelrank.metrics.{spec.name}({', '.join(spec.needs)})")
    check_applicable(spec, data)
    inputs = data.inputs()
    return spec.fn(**{k: inputs[k] for k in spec.needs}, **params)  # which checks the parameters and magnitudes


def _finite(name: str, value: Any) -> float:
    """A metric's value as a float; NaN or inf is an error, never a score."""
    value = float(value)
    if not np.isfinite(value):
        raise InvalidInputError(f"{name} gave a non-finite value ({value}) on these inputs")
    return value
