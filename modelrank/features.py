"""The in-memory unit every metric, probe and learner consumes: one model's outputs on one task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError

TASK_TYPES = ("classification", "regression")


@dataclass
class FeatureSet:
    """Penultimate features of one model on one dataset, with what the metrics may need.

    ``features``: (n, d) float array. ``labels``: (n,) int class ids for classification, (n,) or (n, k)
    float targets for regression. ``source_probs``: (n, k_s) softmax of the model's own (source) head,
    ``None`` for headless models. ``sample_ids``: (n,) int ids of the samples in the dataset.
    ``class_names``: label text for each class id (EMMS label embeddings), when known.
    """

    features: np.ndarray
    labels: np.ndarray
    model: str = "model"
    dataset: str = "custom"
    task: str = "classification"
    source_probs: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASK_TYPES:
            raise InvalidInputError(f"task must be one of {', '.join(TASK_TYPES)}, not {self.task!r}")
        # Lists, tuples and pandas objects become arrays once: resampling indexes rows (``features[rows]`` of a
        # DataFrame selects columns) and ``n_samples`` reads a shape.
        for name in ("features", "labels", "source_probs"):
            if getattr(self, name) is not None:
                setattr(self, name, as_array(getattr(self, name), name))

    @property
    def n_samples(self) -> int:
        return int(self.features.shape[0])

    def __repr__(self) -> str:
        # Shapes, not values: the arrays are thousands of numbers.
        parts = [f"model={self.model!r}", f"dataset={self.dataset!r}", f"task={self.task!r}",
                 f"features={_shape(self.features)}", f"labels={_shape(self.labels)}"]
        if self.task == "classification":
            parts.append(f"classes={len(np.unique(self.labels))}")
        if self.source_probs is not None:
            parts.append(f"source_probs={_shape(self.source_probs)}")
        if self.class_names is not None:
            parts.append(f"class_names={len(self.class_names)}")
        return f"FeatureSet({', '.join(parts)})"

    def inputs(self) -> dict[str, Any]:
        """The named inputs a metric may declare in ``needs``."""
        return {
            "features": self.features,
            "labels": self.labels,
            "source_probs": self.source_probs,
            "class_names": self.class_names,
            "task": self.task,
        }


def _shape(array: np.ndarray) -> str:
    return "x".join(map(str, np.shape(array)))


def as_array(values: object, name: str) -> np.ndarray:
    """``np.asarray(values)``, refusing nested lists whose rows differ in length (numpy's ValueError names its
    internal shapes, not the argument)."""
    try:
        return np.asarray(values)
    except ValueError:
        raise InvalidInputError(f"{name} must be a rectangular array: its rows differ in length") from None
