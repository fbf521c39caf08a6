"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., ECCV 2022)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
from scipy.special import softmax

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._lda import (LinearDiscriminant, Mixing, require_within_class_scatter, residual_gram, shrink,
                   warn_if_singular_scatter, within_scatter)
from ._linalg import class_means, has_distinct_rows, symmetric_from_lower, unit_scaling
from .base import register_metric

#: lambda = max(exp(-ADAPTIVE_SHRINKAGE_RATE * sigma_max(S_w)), SHRINKAGE_FLOOR), as in the paper and its code.
ADAPTIVE_SHRINKAGE_RATE = 5.0
SHRINKAGE_FLOOR = 1e-10


def largest_eigenvalue(sym: np.ndarray) -> float:
    """Largest eigenvalue of a symmetric matrix to machine precision: Lanczos (O(D^2) per iteration) with a
    fixed start vector, falling back to a full O(D^3) solve for tiny matrices or when Lanczos fails."""
    dim = sym.shape[0]
    if dim > 2:
        try:
            return float(scipy.sparse.linalg.eigsh(sym, k=1, which="LA", v0=np.ones(dim), return_eigenvectors=False)[0])
        except scipy.sparse.linalg.ArpackError:  # no convergence, or S_w = 0 (constant features)
            pass
    return float(scipy.linalg.eigvalsh(sym, subset_by_index=[dim - 1, dim - 1])[0])


def adaptive_shrinkage(sw: np.ndarray, exponent: int = 0) -> float:
    """lambda = max(exp(-5 sigma), 1e-10) with sigma the largest eigenvalue of S_w (exact, as in the paper), of
    features 2**``exponent`` times those ``sw`` is the scatter of."""
    sigma = np.ldexp(largest_eigenvalue(sw), 2 * exponent)
    return max(float(np.exp(-ADAPTIVE_SHRINKAGE_RATE * sigma)), SHRINKAGE_FLOOR)


def challenged_scatter(x: np.ndarray, y: np.ndarray, means: np.ndarray, counts: np.ndarray, first: LinearDiscriminant,
                       strength: float, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray, Mixing]:
    """SFDA's ConfMix of the rows by the first LDA, ``first``, and the (S_w, class means) of the mixed rows, in one
    pass over x: (within-class scatter, mixed class means, the mixing).

    Row i is classified from its residual r_i = x_i - mu_c (c = y_i, mu_c the class mean) as the pass reaches it,
    giving its softened probability q_i and its weight a_i = 1 - strength (1 - q_i) in the mixed row
    x~_i = a_i x_i + (1 - a_i) o_c (o = ``anchors``). With abar_c the class mean of a, d_c = mu_c - o_c and
    s_c = 1/n_c sum_{i in c} a_i r_i: x~_i - m~_c = a_i r_i + (a_i - abar_c) d_c - s_c, with the mixed class mean
    m~_c = abar_c mu_c + (1 - abar_c) o_c + s_c. So
      N S~_w = sum_i a_i^2 r_i r_i^T + sum_c [alpha_c d_c d_c^T - n_c s_c s_c^T + t_c d_c^T + d_c t_c^T],
    alpha_c = sum_{i in c} (a_i - abar_c)^2 and t_c = sum_{i in c} a_i^2 r_i - abar_c n_c s_c: the Gram matrix of
    the scaled residuals a_i r_i and, from the same blocks, their class sums and a-weighted class sums. Classifying
    and mixing the rows in passes of their own took two more passes over x and a mixing step in three (50k x 2048
    features: 17.1 -> 14.0 CPU seconds of SFDA).
    """
    n_classes, dim = means.shape
    keep = np.empty(len(y))
    sums = np.zeros((2 * n_classes, dim))  # sum a_i r_i, then sum a_i^2 r_i, per class

    def challenge(rows: slice, residuals: np.ndarray) -> np.ndarray:
        codes = y[rows]
        proba = np.exp(first.log_proba_of_residuals(residuals, codes))
        softened = softmax(proba, axis=1)[np.arange(len(codes)), codes]
        keep[rows] = 1.0 - strength * (1.0 - softened)
        return keep[rows]

    def add_class_sums(rows: slice, scaled: np.ndarray) -> None:
        codes, size = y[rows], rows.stop - rows.start
        indicator = sp.csr_matrix((np.concatenate([np.ones(size), keep[rows]]),
                                   (np.concatenate([codes, codes + n_classes]), np.tile(np.arange(size), 2))),
                                  shape=(2 * n_classes, size))  # fmt: skip
        sums[...] += indicator @ scaled

    scatter = symmetric_from_lower(residual_gram(x, y, means, challenge, add_class_sums))
    mean_keep = np.bincount(y, weights=keep, minlength=n_classes) / counts
    alpha = np.bincount(y, weights=(keep - mean_keep[y]) ** 2, minlength=n_classes)
    offsets = means - anchors
    mean_shift = sums[:n_classes] / counts[:, None]
    weighted_sums = sums[n_classes:] - mean_keep[:, None] * sums[:n_classes]
    # A.T @ A products (BLAS syrk: exactly symmetric), and a cross term added with its transpose
    spread_offsets = offsets * np.sqrt(alpha)[:, None]
    counted_shift = mean_shift * np.sqrt(counts)[:, None]
    cross = weighted_sums.T @ offsets
    scatter += spread_offsets.T @ spread_offsets
    scatter -= counted_shift.T @ counted_shift
    scatter += cross
    scatter += cross.T
    scatter /= x.shape[0]
    mixed_means = mean_keep[:, None] * means + (1.0 - mean_keep)[:, None] * anchors + mean_shift
    return scatter, mixed_means, Mixing(keep, anchors, y)


@register_metric(
    "sfda",
    reference="Shao et al., Not All Models Are Equal: Predicting Model Transferability in a Self-challenging "
    "Fisher Space, ECCV 2022",
    ranges={"confmix_strength": "[0, 1]", "shrinkage": "[0, 1]"},
    # the nearly unregularised LDA amplifies rounding in S_w's smallest eigenvalues, and PED-SFDA (which shares
    # this tolerance) scores its moved features rounded to float32: within ~1e-7 of the float64 score
    tie_rtol=1e-7,
)
def sfda(features: np.ndarray, labels: np.ndarray, *, confmix_strength: float = 1.0,
         shrinkage: float | None = None) -> float:
    """SFDA: mean LDA probability of the true class after a self-challenging ConfMix step (no log).

    1. Regularised Fisher LDA: S_w shrunk to (1-l) S_w + l tr(S_w)/D I with adaptive
       l = max(exp(-5 sigma_max(S_w)), 1e-10); p(c|x) = softmax_c(x S_w^-1 mu_c - mu_c S_w^-1 mu_c / 2 + log pi_c).
    2. ConfMix: q_i = softmax(p_i)[y_i] (the "softened" probability) and
       x_i <- x_i + s (1 - q_i) (mu_bar_{-y_i} - x_i), mu_bar_{-c} = mean of the other classes' means;
       s = ``confmix_strength`` (1 = the paper: x_i <- q_i x_i + (1 - q_i) mu_bar; 0 = no challenge).
    3. Refit the LDA on the mixed features with the same l; score = (1/N) sum_i p(y_i | x_i). Higher is better.

    ``features``: (N, D); ``labels``: (N,) class labels (any values, >= 2 classes). The caller's array is never
    modified (the reference code mixes in place). ``shrinkage`` fixes l instead of the adaptive rule.
    l uses the exact largest eigenvalue of S_w (the paper); the public code estimates it with 3 power iterations.
    When N - C < D the (nearly unregularised) S_w is singular, the LDA separates the samples perfectly and the
    score saturates at 1.0 for every model: a warning says so.
    """
    # float32 stays: every pass converts one row block at a time. Features beyond 2**+-60 are scaled by a power of
    # two: only the adaptive shrinkage depends on their scale, and it is given the exponent. Tiny ones had S_w's
    # products underflow (float32: SFDA 1% off at 1e-22, refused as constant at 1e-25; float64 at 1e-170).
    x, exponent = unit_scaling(as_features(features, upcast=False))
    y, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    if not has_distinct_rows(x):  # centring identical rows leaves rounding noise: it scored 1/C, not an error
        raise InvalidInputError("features are constant: SFDA is undefined")
    warn_if_singular_scatter("SFDA", n, n_classes, x.shape[1])
    require_within_class_scatter(x, y, n_classes)
    means, counts = class_means(x, y, n_classes)
    priors = counts / n
    sw = within_scatter(x, y, means)
    if shrinkage is None:
        shrinkage = adaptive_shrinkage(sw, exponent)
    first = LinearDiscriminant.fit(means, priors, shrink(sw, shrinkage))
    other_means = (means.sum(axis=0) - means) / (n_classes - 1)
    mixed_sw, mixed_means, mixing = challenged_scatter(x, y, means, counts, first, confmix_strength, other_means)
    log_proba = LinearDiscriminant.fit(mixed_means, priors, shrink(mixed_sw, shrinkage)).log_proba(x, mixing)
    return float(np.exp(log_proba[np.arange(n), y]).mean())
