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
    Distances are computed in square blocks of at most 4M entries, each pair of row blocks once (the distance is
    symmetric: a block serves both its rows' and its columns' neighbour lists, half the O(N^2 D) products), so
    memory is O(N k) beyond the input. Higher is better.
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
    nearest = _nearest_others(x, k)
    votes_by_rank = 1.0 + (k - np.arange(k)) / (k * (k + 1.0))  # rank 0 (nearest) weighs most
    votes = np.zeros((n, n_classes))
    np.add.at(votes, (np.arange(n)[:, None], y[nearest]), votes_by_rank[None, :])
    return float((votes.argmax(axis=1) == y).mean())


def _nearest_others(x: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k nearest other rows by Euclidean distance, nearest first."""
    n = x.shape[0]
    sq_norms = (x * x).sum(axis=1)
    best = np.full((n, k), np.inf)  # running k smallest distances of each row, and their columns
    where = np.zeros((n, k), dtype=np.int64)

    def merge(rows: slice, dist: np.ndarray, offset: int) -> None:
        keep = min(k, dist.shape[1])
        candidates = np.argpartition(dist, keep - 1, axis=1)[:, :keep] if keep < dist.shape[1] else \
            np.broadcast_to(np.arange(dist.shape[1]), dist.shape)  # fmt: skip
        pooled = np.concatenate([best[rows], np.take_along_axis(dist, candidates, axis=1)], axis=1)
        columns = np.concatenate([where[rows], candidates + offset], axis=1)
        chosen = np.argpartition(pooled, k - 1, axis=1)[:, :k]
        best[rows] = np.take_along_axis(pooled, chosen, axis=1)
        where[rows] = np.take_along_axis(columns, chosen, axis=1)

    block = max(1, int(np.sqrt(KNN_BLOCK_ENTRIES)))
    starts = range(0, n, block)
    for a in starts:
        rows = slice(a, min(a + block, n))
        for b in starts[a // block:]:
            cols = slice(b, min(b + block, n))
            dist = sq_norms[rows, None] + sq_norms[None, cols] - 2.0 * (x[rows] @ x[cols].T)
            if a == b:
                np.fill_diagonal(dist, np.inf)  # leave the sample itself out
            merge(rows, dist, b)
            if a != b:
                merge(cols, dist.T, a)
    return np.take_along_axis(where, np.argsort(best, axis=1), axis=1)


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
