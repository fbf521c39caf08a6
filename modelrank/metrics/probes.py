"""Strong simple baselines: leave-one-out kNN accuracy and cross-validated linear-probe accuracy.

They estimate transferability by directly measuring how well a cheap classifier does on the frozen features,
which is what many "transferability metrics" approximate; any metric should be compared against them.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._linalg import SMALL_FIT_SIZE, one_blas_thread_if_small, row_blocks, unit_scaled
from .base import register_metric

#: Upper bound on the number of entries of one (chunk, N) distance block.
KNN_BLOCK_ENTRIES = 1 << 22


#: kNN's distances: cosine (L2-normalised features) or Euclidean.
KNN_DISTANCES = ("cosine", "euclidean")


@register_metric("knn", reference="leave-one-out k-nearest-neighbour accuracy on the frozen features (baseline)",
                 choices={"metric": KNN_DISTANCES})
def knn(features: np.ndarray, labels: np.ndarray, *, k: int = 5, metric: str = "cosine") -> float:
    """Leave-one-out kNN accuracy: (1/N) sum_i 1[ majority label of the k nearest other samples == y_i ].

    ``metric``: "cosine" (features L2-normalised first) or "euclidean". Vote ties go to the class whose
    members rank closer (each neighbour adds 1 + a tie-break bonus below 1/k that decreases with its rank);
    classes still tied share the credit (a sample tied between its class and t - 1 others counts 1/t, the expected
    accuracy of a random pick), so the score does not depend on the names of the classes either. Distances equal
    within rounding are ties: tied neighbours share their ranks' bonuses,
    and the neighbours tied at the k-th distance share the votes of the ranks they fill (``_tie_aware_votes``),
    so the score does not depend on the order of the samples (binary, quantised or duplicated features).
    Distances are screened in float32 and decided in float64 (the neighbours are those of float64 distances;
    see ``_nearest_others``), in square blocks of at most 4M entries, each pair of row blocks once (a block
    serves both its rows' and its columns' neighbour lists, half the O(N^2 D) products); memory is one float64
    and one float32 copy of the features plus O(N k). Higher is better.
    """
    x = unit_scaled(as_features(features))
    y, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    if not 1 <= k < n:
        raise InvalidInputError(f"k must be between 1 and N-1 = {n - 1}, got {k}")
    if metric == "cosine":
        # By row blocks: np.linalg.norm of the whole x squares it into an (N, D) temporary first.
        norms = np.concatenate([np.linalg.norm(x[rows], axis=1) for rows in row_blocks(n)])[:, None]
        if (norms == 0).any():
            raise InvalidInputError("cosine kNN is undefined for all-zero feature rows; use metric='euclidean'")
        # In place on a private float64 copy (of float32 features): a second (N, D) float64 array doubled the peak.
        x = x / norms if np.may_share_memory(x, features) else np.divide(x, norms, out=x)
        x -= x.mean(axis=0)
    elif np.may_share_memory(x, features):
        x = x - x.mean(axis=0)
    else:  # a private float64 copy already (e.g. of float32 features): no second one
        x -= x.mean(axis=0)
    # Centred (distances do not change): ||a||^2 + ||b||^2 - 2 a.b would lose a common offset's last bits.
    listed = min(k + 1, n - 1)  # one beyond the k-th: a tie there makes "the k nearest" ambiguous
    sq_norms = np.einsum("ij,ij->i", x, x)
    nearest, dist = _nearest_others(x, sq_norms, listed)
    tolerance = _tie_tolerance(x.shape[1], sq_norms)
    weights, open_ended = _tie_aware_votes(dist, tolerance, k)
    votes = np.zeros((n, n_classes))
    np.add.at(votes, (np.arange(n)[:, None], y[nearest]), weights)
    # Rows whose k-th distance is tied with the last one listed: the tie may run further, so all N distances.
    unsure = np.flatnonzero(open_ended) if listed < n - 1 else np.zeros(0, dtype=np.int64)
    for chunk in _row_chunks(unsure.shape[0], n):
        own = unsure[chunk]
        full = _distances_to_all(x, sq_norms, own)
        order = np.argsort(full, axis=1, kind="stable")
        weights, _ = _tie_aware_votes(np.take_along_axis(full, order, axis=1), tolerance[own], k)
        row_votes = np.zeros((own.shape[0], n_classes))
        np.add.at(row_votes, (np.arange(own.shape[0])[:, None], y[order]), weights)
        votes[own] = row_votes
    # Equal votes within their rounding (sums of at most N weights; distinct ones differ by >= 1/(k (k + 1) N)),
    # e.g. ranks {0, 3} against {1, 2}: argmax gave them to the first class, so renaming the classes moved kNN.
    top = votes.max(axis=1, keepdims=True)
    tied = votes >= top * (1.0 - n * np.finfo(np.float64).eps)
    return float((tied[np.arange(n), y] / tied.sum(axis=1)).mean())


def _tie_tolerance(dim: int, sq_norms: np.ndarray) -> np.ndarray:
    """Per row, the rounding error bound of ||a||^2 + ||b||^2 - 2 a.b in float64 (a dot product of ``dim`` terms
    and two sums), doubled: squared distances closer than this are ties."""
    return 2.0 * (dim + 4) * np.finfo(np.float64).eps * (sq_norms + sq_norms.max())


def _tie_aware_votes(dist: np.ndarray, tolerance: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Votes of each row's neighbours, given their squared distances sorted ascending (rows, m >= k), and whether
    each row's k-th distance is tied with its last listed one (the tie may then continue past the list).

    Neighbours at rank r get 1 + (k - r) / (k (k + 1)) (the nearer, the more: vote ties go to the class that ranks
    closer). Distances equal within ``tolerance`` form one group whose members share the mean of the group's
    ranks' votes, so the votes do not depend on the order of the samples: a group inside the k nearest averages
    its members' rank bonuses, and the group holding the k-th rank shares the votes of the ranks it fills (ranks
    s..k-1 among its t members: (k - s) / t of a vote each, plus the bonuses).
    """
    rows, m = dist.shape
    positions = np.broadcast_to(np.arange(m), (rows, m))
    starts = np.ones((rows, m), dtype=bool)
    starts[:, 1:] = np.diff(dist, axis=1) > tolerance[:, None]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)  # each position's group start
    ends = np.ones((rows, m), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    last = np.minimum.accumulate(np.where(ends, positions, m - 1)[:, ::-1], axis=1)[:, ::-1]  # its group end
    bonus = 1.0 / (k * (k + 1.0))
    weights = 1.0 + (k - (first + last) / 2.0) * bonus  # groups wholly inside the k nearest: mean rank
    boundary_start, boundary_end = first[:, k - 1], last[:, k - 1]
    filled = k - boundary_start  # ranks s..k-1 go to the group holding rank k-1
    shared = (filled + filled * (filled + 1) / 2.0 * bonus) / (boundary_end - boundary_start + 1)
    in_boundary = (positions >= boundary_start[:, None]) & (positions <= boundary_end[:, None])
    weights = np.where(in_boundary, shared[:, None], np.where(positions < boundary_start[:, None], weights, 0.0))
    return weights, boundary_end == m - 1


def _nearest_others(x: np.ndarray, sq_norms: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) indices of each row's k nearest other rows by (float64) Euclidean distance, nearest first, and their
    float64 squared distances; ``sq_norms`` are the rows' squared norms.

    Screened in float32, decided in float64: the O(N^2 D) pass runs in float32 (twice the BLAS rate, half the
    memory traffic) and keeps ``KNN_SCREEN_MARGIN`` more candidates than needed per row; the candidates' float64
    distances then pick the k nearest. That choice is certain when the k-th float64 distance lies below the
    row's largest kept float32 distance minus the float32 error bound (``_screening_error``): every other row is
    at least that far. Rows where it is not (near-ties at the margin) are recomputed in float64 against all rows,
    so the neighbours are those of the float64 computation. On 10k x 2048 features every row was certain.
    Below ``KNN_SCREEN_MIN_ROWS`` samples the same blocked pass runs in float64 directly.
    """
    n = x.shape[0]
    keep = k + KNN_SCREEN_MARGIN
    if n < KNN_SCREEN_MIN_ROWS or keep >= n - 1:  # screening would not pay: the float64 pass alone
        where, best = _smallest_distances(x, k)
        order = np.argsort(best, axis=1, kind="stable")
        return np.take_along_axis(where, order, axis=1), np.take_along_axis(best, order, axis=1)
    largest = float(np.sqrt(sq_norms.max()))
    # An exact power of two puts every entry in [-1, 1]: no float32 overflow, and scaled distances keep their order.
    scale = np.ldexp(1.0, -int(np.frexp(largest)[1])) if largest > 0 else 1.0
    scaled = np.multiply(x, scale, out=np.empty(x.shape, dtype=np.float32), casting="same_kind")
    candidates, screened = _smallest_distances(scaled, keep)
    exact = np.empty(candidates.shape)
    for rows in _row_chunks(n, keep * x.shape[1]):
        exact[rows] = sq_norms[rows, None] + sq_norms[candidates[rows]] - 2.0 * np.einsum(
            "rd,rkd->rk", x[rows], x[candidates[rows]])
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    nearest, nearest_dist = np.take_along_axis(candidates, order, axis=1), np.take_along_axis(exact, order, axis=1)
    kth = nearest_dist[:, -1]
    norms = np.sqrt(sq_norms) * scale
    floor = (screened.max(axis=1) - _screening_error(x.shape[1]) * (norms + norms.max()) ** 2) / scale**2
    unsure = np.flatnonzero(~(kth < floor))
    if unsure.size:
        nearest[unsure], nearest_dist[unsure] = _exact_nearest(x, sq_norms, unsure, k)
    return nearest, nearest_dist


#: Candidates beyond k kept per row by kNN's float32 screening pass (see ``_nearest_others``).
KNN_SCREEN_MARGIN = 8
#: Fewer samples than this skip the screening: the candidates' float64 refinement (gathering N (k + margin) rows)
#: costs more than the float32 products save (2048-d, one thread: 1k samples 0.078 s screened vs 0.041 s in
#: float64, 2k 0.17 vs 0.15, 4k 0.51 vs 0.56, 8k 1.7 vs 2.3).
KNN_SCREEN_MIN_ROWS = 3000


def _screening_error(dim: int) -> float:
    """Bound on |float32 - exact| squared distance, per (||a|| + ||b||)^2: rounding the rows to float32 (2u), the
    float32 dot product and squared norms (gamma_D = D u for any summation order, FMA or not) and the final sums
    (3u), with u = 2^-24; doubled for the float64 side's own rounding and as a safety margin."""
    return 2.0 * (dim + 8) * 2.0**-24


def _row_chunks(n: int, entries_per_row: int) -> Iterator[slice]:
    """Consecutive row slices whose (rows, entries_per_row) temporaries hold at most ``KNN_BLOCK_ENTRIES``."""
    step = max(1, KNN_BLOCK_ENTRIES // max(1, entries_per_row))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _exact_nearest(x: np.ndarray, sq_norms: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(rows), k) float64 nearest other rows of the given rows, against all N rows (nearest first), and their
    squared distances; ``sq_norms`` are the rows' squared norms and k < N."""
    out = np.empty((rows.shape[0], k), dtype=np.int64)
    out_dist = np.empty((rows.shape[0], k))
    for chunk in _row_chunks(rows.shape[0], x.shape[0]):
        dist = _distances_to_all(x, sq_norms, rows[chunk])
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        out[chunk], out_dist[chunk] = np.take_along_axis(part, order, axis=1), np.take_along_axis(part_dist, order, axis=1)
    return out, out_dist


def _distances_to_all(x: np.ndarray, sq_norms: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(len(own), N) float64 squared distances of the rows ``own`` to every row, inf to themselves."""
    dist = sq_norms[own, None] + sq_norms[None, :] - 2.0 * (x[own] @ x.T)
    dist[np.arange(own.shape[0]), own] = np.inf  # leave the sample itself out
    return dist


def _smallest_distances(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) indices of each row's k nearest other rows (in x's precision) and their squared distances, in no
    particular order. Square blocks of at most ``KNN_BLOCK_ENTRIES``, each pair of row blocks once: a block
    serves both its rows' and its columns' lists (the distance is symmetric), half the O(N^2 D) products."""
    n = x.shape[0]
    sq_norms = np.einsum("ij,ij->i", x, x)
    best = np.full((n, k), np.inf, dtype=x.dtype)  # running k smallest distances of each row, and their columns
    where = np.zeros((n, k), dtype=np.int64)

    def merge_all(targets: np.ndarray, dist: np.ndarray, offset: int) -> None:
        """Pool each target row's list with its row of ``dist`` (all of it: the list is not full yet)."""
        keep = min(k, dist.shape[1])
        candidates = np.argpartition(dist, keep - 1, axis=1)[:, :keep] if keep < dist.shape[1] else \
            np.broadcast_to(np.arange(dist.shape[1]), dist.shape)  # fmt: skip
        pooled = np.concatenate([best[targets], np.take_along_axis(dist, candidates, axis=1)], axis=1)
        columns = np.concatenate([where[targets], candidates + offset], axis=1)
        keep_best(targets, pooled, columns)

    def keep_best(targets: np.ndarray, pooled: np.ndarray, columns: np.ndarray) -> None:
        chosen = np.argpartition(pooled, k - 1, axis=1)[:, :k]
        best[targets] = np.take_along_axis(pooled, chosen, axis=1)
        where[targets] = np.take_along_axis(columns, chosen, axis=1)

    def merge(targets: slice, dist: np.ndarray, offset: int, transposed: bool) -> None:
        """Merge a block's distances into the lists of its rows (``transposed``: of its columns, ``dist.T``).

        Only entries below a row's current k-th smallest can enter its list: once the lists are full, a compare
        and ``nonzero`` find those few (about k of each new block's columns on unsorted data) instead of an
        ``argpartition`` of every block row, which took 40% of the pass. Rows whose list is not full yet
        (their first block) pool all of their row."""
        own_rows = np.arange(targets.start, targets.stop)
        threshold = best[targets].max(axis=1)
        not_full = ~(threshold < np.inf)
        if not_full.any():
            merge_all(own_rows[not_full], (dist.T if transposed else dist)[not_full], offset)
            threshold[not_full] = -np.inf  # merged already
        below = dist < threshold[None, :] if transposed else dist < threshold[:, None]
        i, j = np.nonzero(below)
        if i.size == 0:
            return
        values = dist[i, j]
        own, other = (j, i) if transposed else (i, j)
        if transposed:  # nonzero lists by block row; group by column
            order = np.argsort(own, kind="stable")
            own, other, values = own[order], other[order], values[order]
        counts = np.bincount(own, minlength=own_rows.size)
        touched = np.flatnonzero(counts)
        per_row = counts[touched]
        slot = np.repeat(np.arange(touched.size), per_row)
        position = k + np.arange(own.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        pooled = np.full((touched.size, k + int(per_row.max())), np.inf, dtype=best.dtype)
        columns = np.zeros(pooled.shape, dtype=np.int64)
        pooled[:, :k], columns[:, :k] = best[own_rows[touched]], where[own_rows[touched]]
        pooled[slot, position], columns[slot, position] = values, other + offset
        keep_best(own_rows[touched], pooled, columns)

    block = max(1, int(np.sqrt(KNN_BLOCK_ENTRIES)))
    starts = range(0, n, block)
    for a in starts:
        rows = slice(a, min(a + block, n))
        for b in starts[a // block:]:
            cols = slice(b, min(b + block, n))
            dist = x[rows] @ x[cols].T  # numpy runs a block against itself as one symmetric product (syrk)
            dist *= -2
            dist += sq_norms[rows, None]
            dist += sq_norms[None, cols]
            if a == b:
                np.fill_diagonal(dist, np.inf)  # leave the sample itself out
            merge(rows, dist, b, transposed=False)
            if a != b:
                merge(cols, dist, a, transposed=True)
    return where, best


#: Bytes of fold copies of the features that ``linear_probe`` holds at once (its folds run side by side).
FOLD_COPIES_BYTES = 2**30


@register_metric(
    "linear_probe",
    reference="cross-validated multinomial logistic regression accuracy on standardised frozen features (baseline)",
    ranges={"folds": "[2, inf)", "c": "(0, inf)"},
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

    x = unit_scaled(as_features(features))  # StandardScaler takes a std below 1e-15 for zero
    y, _ = as_class_labels(labels, x.shape[0], min_per_class=2)
    folds = min(folds, int(np.bincount(y).min()))
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y))

    def held_out_accuracy(split: tuple[np.ndarray, np.ndarray]) -> float:
        train, test = split
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        probe.fit(x[train], y[train])
        return float((probe.predict(x[test]) == y[test]).mean())

    # Small probes run their folds side by side, each on one BLAS thread: lbfgs's vector bookkeeping on threaded
    # BLAS cost 5x the time (1.32 s vs 0.24 s for 200 x 1280 features, 10 classes, 2 busy cores; 1.8x at 5000 x
    # 2048, 100 classes). Each fold copies its rows: at most FOLD_COPIES_BYTES of them at once. The warning
    # filter is process-wide, so it is set here, around the threads (a capped probe is still a fair comparison).
    size = x.size * int(y.max() + 1)
    side_by_side = min(len(splits), os.cpu_count() or 1, FOLD_COPIES_BYTES // x.nbytes) if size <= SMALL_FIT_SIZE else 1
    with warnings.catch_warnings(), one_blas_thread_if_small(size), ThreadPoolExecutor(max(1, side_by_side)) as pool:
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracies = list(pool.map(held_out_accuracy, splits))
    return float(np.mean(accuracies))
