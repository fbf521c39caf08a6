"""Class prototypes: the task summary Model Spider's task tokens are built from.

A task is summarised by the mean feature of each class (C, D). With one general encoder's features for every
task this gives ``Records.task_prototypes``; with each zoo model's own features on a task it gives
``Records.model_task_prototypes`` (the re-ranking stage).
"""

from __future__ import annotations

import numpy as np

from ..features import FeatureSet
from ..metrics._checks import as_class_labels, as_features
from ..metrics._linalg import class_means


def class_prototypes(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(C, D) mean feature of each class, classes in sorted label order: μ_c = (1/N_c) Σ_{i: y_i = c} f_i."""
    x = as_features(features, upcast=False)
    codes, n_classes = as_class_labels(labels, x.shape[0])
    return class_means(x, codes, n_classes)[0].astype(np.float32)


def prototypes_of(feature_set: FeatureSet) -> np.ndarray:
    """Class prototypes of a classification FeatureSet (e.g. from ``modelrank.extract.load_features``)."""
    return class_prototypes(feature_set.features, feature_set.labels)
