"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., ECCV 2022)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from scipy.special import softmax

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._lda import lda_log_proba, require_within_class_scatter, shrink, warn_if_singular_scatter, within_scatter
from ._linalg import (ROW_BLOCK, RowMap, class_means, class_sums, float64_row_blocks, has_distinct_rows,
                      unit_scaling)
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


def _lda_proba(x: np.ndarray, y: np.ndarray, means: np.ndarray, counts: np.ndarray, shrinkage: float | None,
               row_map: RowMap | None = None, exponent: int = 0) -> tuple[np.ndarray, float]:
    """Fit the regularised Fisher LDA on (x, y) with the given class means and counts (of the rows after
    ``row_map``, when given); return (p(c|x), the shrinkage used). ``exponent``: x is the features / 2**exponent."""
    sw = within_scatter(x, y, means, row_map)
    if shrinkage is None:
        shrinkage = adaptive_shrinkage(sw, exponent)
    proba = np.exp(lda_log_proba(x, means, counts / x.shape[0], shrink(sw, shrinkage), row_map))
    return proba, shrinkage


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
    proba, shrinkage = _lda_proba(x, y, means, counts, shrinkage, exponent=exponent)
    softened = softmax(proba, axis=1)[np.arange(n), y]
    other_means = (means.sum(axis=0) - means) / (n_classes - 1)
    pull = confmix_strength * (1.0 - softened)

    other_rows = np.empty((min(n, ROW_BLOCK), x.shape[1]))

    def confmix(block: np.ndarray, rows: slice, out: np.ndarray) -> None:
        """The mixed rows x_i + p_i (o_c - x_i), rebuilt from x one block at a time in each pass."""
        out[...] = block
        pulled = np.take(other_means, y[rows], axis=0, out=other_rows[: out.shape[0]], mode="clip")
        pulled -= out
        pulled *= pull[rows, None]
        out += pulled

    # Summed from the mixed rows themselves: on features with a large offset the LDA is sensitive to the last
    # bits of the means, and these are the sums a stored mixed array would give.
    mixed_means = sum(class_sums(block, y[rows], n_classes) for rows, block in float64_row_blocks(x, confmix))
    mixed_means /= counts[:, None]
    proba, _ = _lda_proba(x, y, mixed_means, counts, shrinkage, confmix)
    return float(proba[np.arange(n), y].mean())
