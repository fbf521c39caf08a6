"""Strong simple baselines: leave-one-out kNN accuracy and cross-validated linear-probe accuracy.

They estimate transferability by directly measuring how well a cheap classifier does on the frozen features,
which is what many "transferability metrics" approximate; any metric should be compared against them.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from .base import register_metric

#: Upper bound on the number of entries of one (chunk, N) distance block.
KNN_BLOCK_ENTRIES = 1 << 22


@register_metric("knn", reference="leave-one-out k-nearest-neighbour accuracy on the frozen features (baseline)")
def knn(features: np.ndarray, labels: np.ndarray, *, k: int = 5, metric: str = "cosine") -> float:
    """Leave-one-out kNN accuracy: (1/N) sum_i 1[ majority label of the k nearest other samples == y_i ].

    ``metric``: "cosine" (features L2-normalised first) or "euclidean". Vote ties go to the class whose
    members rank closer (each neighbour adds 1 + a tie-break bonus below 1/k that decreases with its rank).
    Distances are computed in row blocks of at most 4M entries, so memory is O(N) beyond the input.
    Higher is better.
    """
    if metric not in ("cosine", "euclidean"):
        raise InvalidInputError(f"knn metric must be 'cosine' or 'euclidean', not {metric!r}")
    x = as_features(features)
    y, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    if not 1 <= k < n:
        raise InvalidInputError(f"k must be between 1 and N-1 = {n - 1}, got {k}")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InvalidInputError("cosine kNN is undefined for all-zero feature rows; use metric='euclidean'")
        x = x / norms
    sq_norms = (x * x).sum(axis=1)
    votes_by_rank = 1.0 + (k - np.arange(k)) / (k * (k + 1.0))  # rank 0 (nearest) weighs most
    block = max(1, KNN_BLOCK_ENTRIES // n)
    correct = 0
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        dist = sq_norms[rows, None] + sq_norms[None, :] - 2.0 * (x[rows] @ x.T)
        local = np.arange(dist.shape[0])
        dist[local, local + start] = np.inf  # leave the sample itself out
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(dist, nearest, axis=1), axis=1), axis=1)
        votes = np.zeros((dist.shape[0], n_classes))
        np.add.at(votes, (local[:, None], y[nearest]), votes_by_rank[None, :])
        correct += int((votes.argmax(axis=1) == y[rows]).sum())
    return correct / n


@register_metric(
    "linear_probe",
    reference="cross-validated multinomial logistic regression accuracy on standardised frozen features (baseline)",
)
def linear_probe(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, c: float = 1.0,
                 max_iter: int = 200, seed: int = 0) -> float:
    """Mean held-out accuracy of an L2 multinomial logistic regression over stratified k-fold splits.

    Each fold standardises with the training part's mean/std only (no leakage), then fits
    ``LogisticRegression(C=c, lbfgs)``; folds are shuffled with ``seed``. ``folds`` is lowered to the smallest
    class size when needed (>= 2). Higher is better.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = as_features(features)
    y, _ = as_class_labels(labels, x.shape[0], min_per_class=2)
    folds = min(folds, int(np.bincount(y).min()))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y)
    accuracies = []
    for train, test in splits:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a capped probe is still a fair comparison
            probe.fit(x[train], y[train])
        accuracies.append(float((probe.predict(x[test]) == y[test]).mean()))
    return float(np.mean(accuracies))
