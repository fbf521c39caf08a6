"""OTCE (Tan et al. 2021): optimal-transport domain difference + conditional entropy of the label coupling."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, checked_probs, require_memory
from ._linalg import one_hot_sparse, seeded_subsample, unit_scaled
from .base import register_metric


#: Peak bytes per (source, target) pair, measured (RSS, 3000 x 3000): the float64 costs for the assignment of equal
#: sizes; the costs, POT's network simplex and its dense coupling otherwise.
ASSIGNMENT_BYTES_PER_PAIR = 10
EMD_BYTES_PER_PAIR = 42


def _coupling_terms(
    source_x: np.ndarray, source_codes: np.ndarray, target_x: np.ndarray, target_codes: np.ndarray
) -> tuple[float, float]:
    """(W, CE) from the exact optimal coupling between two uniform empirical measures (O(n_s n_t) memory, refused
    beyond what the machine has available).

    With as many source as target samples, the transport polytope's vertices are the permutation matrices / n
    (Birkhoff), so an optimal coupling is an optimal assignment: scipy's ``linear_sum_assignment`` finds one
    exactly (and without importing POT, which imports torch). Each column's minimum is subtracted first: every
    assignment takes one entry per column, so this shifts all their costs by the same constant and keeps the
    optimum, and scipy's shortest augmenting paths then start from zero-cost entries (2000 x 2000: 0.31 s instead
    of 0.68 s; the network simplex takes 1.2 s). Other sizes go to POT's exact ``ot.emd``. Where several couplings
    are optimal (duplicated samples), W is the same for all of them but CE may depend on which one the solver
    returns."""
    n_source, n_target = int(source_codes.max()) + 1, int(target_codes.max()) + 1
    equal = source_x.shape[0] == target_x.shape[0]
    require_memory((ASSIGNMENT_BYTES_PER_PAIR if equal else EMD_BYTES_PER_PAIR) * float(source_x.shape[0])
                   * target_x.shape[0], f"OTCE's exact coupling of {source_x.shape[0]} x {target_x.shape[0]} samples",
                   "lower max_samples (default: 2000 per side for otce, 4000 in all for otce_sf)")
    # float64 distances: float32 rounding of the costs would change which of two near-optimal couplings wins.
    # Both sides are measured from the source mean (distances do not change): ||a||^2 + ||b||^2 - 2 a.b of features
    # with a large common offset cancelled to rounding noise (source-free OTCE lost 8% of its value at an offset of
    # 1e8, all of it at 1e10).
    shift = np.asarray(source_x, dtype=np.float64).mean(axis=0)
    cost = squared_distances(np.asarray(source_x, dtype=np.float64) - shift,
                             np.asarray(target_x, dtype=np.float64) - shift)
    if equal:
        from scipy.optimize import linear_sum_assignment

        column_minima = cost.min(axis=0)
        cost -= column_minima  # in place: the n x n matrix is the memory bound; W adds the minima back
        rows, columns = linear_sum_assignment(cost)
        n = rows.shape[0]
        wasserstein = float((cost[rows, columns].sum() + column_minima.sum()) / n)
        pairs = source_codes[rows] * n_target + target_codes[columns]
        joint = np.bincount(pairs, minlength=n_source * n_target).reshape(n_source, n_target) / n
    else:
        import ot  # POT imports torch when present: seconds, so only when needed

        # Model Spider caps the network simplex at 1e5 iterations, which can stop before the optimum on a few
        # thousand samples (POT then warns); the exact coupling is the paper's definition, so the cap is far higher.
        coupling = ot.emd(ot.unif(source_x.shape[0]), ot.unif(target_x.shape[0]), cost, numItermax=10_000_000)
        wasserstein = float((coupling * cost).sum())
        # Joint label distribution P(y_s, y_t) = sum of coupling mass between the two classes: Zs^T P Zt.
        joint = one_hot_sparse(source_codes, n_source) @ (one_hot_sparse(target_codes, n_target) @ coupling.T).T
    marginal = joint.sum(axis=1, keepdims=True)
    cells = joint > 0
    conditional_entropy = float(-(joint[cells] * np.log((joint / marginal)[cells])).sum())
    return wasserstein, conditional_entropy


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b) squared Euclidean distances ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j (as ``ot.dist``), clipped at 0."""
    cost = a @ b.T
    cost *= -2.0
    cost += np.einsum("ij,ij->i", a, a)[:, None]
    cost += np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(cost, 0.0, out=cost)


def otce_terms(
    source_features: np.ndarray,
    source_labels: np.ndarray,
    target_features: np.ndarray,
    target_labels: np.ndarray,
    max_samples: int | None = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The two OTCE terms (W, CE); see ``otce``. Each side is subsampled to ``max_samples`` with ``seed``."""
    # float32 stays float32 until the subsamples are drawn: only they are upcast (in ``_coupling_terms``)
    xs = as_features(source_features, "source_features", upcast=False)
    xt = as_features(target_features, "target_features", upcast=False)
    if xs.shape[1] != xt.shape[1]:
        raise InvalidInputError(f"source and target features differ in dimension ({xs.shape[1]} vs {xt.shape[1]})")
    ys, _ = as_class_labels(source_labels, xs.shape[0])
    yt, _ = as_class_labels(target_labels, xt.shape[0])
    keep_s = seeded_subsample(xs.shape[0], max_samples, seed)
    keep_t = seeded_subsample(xt.shape[0], max_samples, seed + 1)
    if keep_s is not None:
        xs, ys = xs[keep_s], ys[keep_s]
    if keep_t is not None:
        xt, yt = xt[keep_t], yt[keep_t]
    # Subsampling may drop a class; re-encode so the joint table has no empty rows or columns.
    ys = np.unique(ys, return_inverse=True)[1]
    yt = np.unique(yt, return_inverse=True)[1]
    return _coupling_terms(xs, ys, xt, yt)


def otce(
    source_features: np.ndarray,
    source_labels: np.ndarray,
    target_features: np.ndarray,
    target_labels: np.ndarray,
    w_weight: float = 1.0,
    ce_weight: float = 1.0,
    max_samples: int | None = 2000,
    seed: int = 0,
) -> float:
    """OTCE with source-domain data: -(w_weight * W + ce_weight * CE), higher = more transferable.

    P* = argmin_P <P, M>, M_ij = ||x^s_i - x^t_j||^2, over couplings of the uniform measures on the source
    samples (x^s, y^s) and the target samples (x^t, y^t) (exact: an assignment when n_s = n_t, else ``ot.emd``);
    W = <P*, M>;  P(y_s, y_t) = sum_{i: y^s_i = y_s, j: y^t_j = y_t} P*_ij;
    CE = H(Y_t | Y_s) = -sum P(y_s, y_t) log( P(y_s, y_t) / P(y_s) ).
    The paper scores lambda1 * W + lambda2 * CE + b with negative lambdas fitted on auxiliary tasks; Model
    Spider returns the raw W + CE (lower = better). We return the negated weighted sum (default weights 1,
    i.e. -(W + CE)), so higher = better like every modelrank score. W depends on the feature scale, so
    comparing models of different feature scales is confounded (a known limitation of OTCE).

    Inputs: SOURCE features (n_s, D) + labels, TARGET features (n_t, D) + labels, same D (same model).
    Exact EMD is O(n^3) time and O(n_s n_t) memory, so each side is subsampled to ``max_samples``
    (default 2000, ~1 s) with ``seed``; ``None`` keeps all samples.
    """
    wasserstein, conditional_entropy = otce_terms(
        source_features, source_labels, target_features, target_labels, max_samples, seed
    )
    return -(w_weight * wasserstein + ce_weight * conditional_entropy)


@register_metric(
    "otce_sf",
    needs=("features", "labels", "source_probs"),
    reference="Tan et al., OTCE: A Transferability Metric for Cross-Domain Cross-Task Representations, CVPR 2021 "
    "(source-free variant, modelrank)",
    ranges={"max_samples": "[4, inf)"},
)
def otce_source_free(
    features: np.ndarray,
    labels: np.ndarray,
    source_probs: np.ndarray,
    max_samples: int | None = 4000,
    seed: int = 0,
) -> float:
    """Source-free OTCE: -CE of the target labels given the source model's labels of OT-matched samples.

    OTCE needs labelled SOURCE-domain samples (e.g. ImageNet features of the same model); we only have the
    target set. We let the source model label the target images itself: z_i = argmax source_probs_i.
    A seeded random split of (at most ``max_samples``) target samples gives two disjoint halves:
    A plays the source domain (features, source labels z) and B the target domain (features, labels y).
    Exact OT between A and B (squared Euclidean cost, as in ``otce``) matches each B sample to feature-space
    neighbours in A, and CE = H(Y_B | Z_A) under the coupling measures how well the source model's
    categories of nearby samples predict the target label.
    Score = -CE (higher = better). The W term is dropped: both halves come from the same (target)
    distribution, so W measures only feature scale and sampling noise, not a domain difference.
    (Without the split, the coupling would be the identity and -CE would collapse to NCE.)

    Inputs: features (N, D), class labels (N,), source_probs (N, Z). Cost: one EMD of size
    ``max_samples``/2 (default 2000 x 2000, ~1 s); deterministic given ``seed`` and the order of the samples (the
    split draws positions: reordered samples give another split, as another seed does).
    """
    # Only the drawn rows are upcast (in ``_coupling_terms``). The coupling, hence CE, does not change when the costs
    # are scaled, but below ~1e-154 the squared distances underflow to 0 and any coupling looked optimal (features
    # at 1e-160 scored as constant ones): an exact power-of-two rescaling keeps them in range.
    x = unit_scaled(as_features(features, upcast=False))
    codes, _ = as_class_labels(labels, x.shape[0])
    probs, row_sums, off_one = checked_probs(source_probs, x.shape[0])  # float32 stays: only argmaxes are read
    if x.shape[0] < 4:  # max_samples >= 4 is checked with the other parameters
        raise InvalidInputError(f"source-free OTCE needs at least 4 samples, got {x.shape[0]}")
    rows = seeded_subsample(x.shape[0], max_samples, seed)
    rows = np.arange(x.shape[0]) if rows is None else rows
    rows = np.random.default_rng(seed).permutation(rows)
    half = rows.shape[0] // 2
    source_half, target_half = rows[:half], rows[half : 2 * half]
    drawn = probs[source_half].astype(np.float64)
    if off_one:  # the rows as_probs would renormalise: the same argmax, rounding ties included
        drawn /= row_sums[source_half, None]
    pseudo = np.unique(drawn.argmax(axis=1), return_inverse=True)[1]
    target = np.unique(codes[target_half], return_inverse=True)[1]
    _, conditional_entropy = _coupling_terms(x[source_half], pseudo, x[target_half], target)
    return -conditional_entropy
