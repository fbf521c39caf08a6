"""Fisher linear discriminant pieces shared by SFDA and NCTI (vectorised, float64).

Conventions follow sklearn's ``LinearDiscriminantAnalysis(solver="eigen")`` that both reference codes build on:
scatter matrices are biased (divided by N), the within-class scatter is the prior-weighted mean of the class
covariances, and shrinkage moves a matrix towards its mean eigenvalue, ``(1-a) S + a tr(S)/D I``.
"""

from __future__ import annotations

import warnings
import numpy as np
import scipy.linalg

from ..errors import InvalidInputError
from ._linalg import ROW_BLOCK, RowMap, float64_row_blocks, has_distinct_rows, symmetric_from_lower
from .base import SaturationWarning, caller_stacklevel

def warn_if_singular_scatter(metric: str, n: int, n_classes: int, dim: int) -> None:
    """Warn when N - C < D: S_w is then singular, the (nearly unregularised) LDA separates the samples perfectly
    and its probabilities saturate at 1 for every model."""
    if n - n_classes < dim:
        warnings.warn(
            f"{metric} with {n} samples, {n_classes} classes and {dim}-d features (N - C < D): the within-class "
            f"scatter is singular, so {metric} scores saturate near 1.0 for every model; use more samples or "
            "reduce the feature dimension (e.g. PCA) first",
            SaturationWarning,
            stacklevel=caller_stacklevel(),
        )


def require_within_class_scatter(x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
    """Refuse features whose within-class scatter is exactly zero: every class's rows are the same (classes of one
    sample, constant features, or each class one row repeated). Their S_w is not always computed as 0: centring a
    repeated row that is not exactly representable leaves rounding noise, which the LDA scaled up to a score (SFDA
    1.0, NCTI's S_seli 7e16) instead of this error."""
    if has_distinct_rows(x, y):
        return
    cause = ("every class holds a single sample" if n_classes == x.shape[0]
             else "constant features, or each class's samples are identical")
    raise InvalidInputError(f"features have zero within-class scatter ({cause})")


def within_scatter(x: np.ndarray, y: np.ndarray, means: np.ndarray, row_map: RowMap | None = None) -> np.ndarray:
    """S_w = (1/N) sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T, i.e. sum_c prior_c * cov_c (biased covariances).

    Centring first avoids the cancellation of x^T x - N mu mu^T; it is done one row block at a time, in place,
    so the memory is O(D^2 + block) rather than another (N, D) copy, and BLAS ``syrk`` accumulates each block's
    product into one triangle of S_w (no D x D temporary per block), mirrored at the end. ``row_map`` (see
    ``RowMap``), when given, replaces the rows of x by a function of them before centring (SFDA's ConfMix), so
    the mapped features are never stored whole.

    The products are float64 for float32 features too. Unlike LogME's evidence, the nearly unregularised LDA
    solves with S_w's smallest eigenvalues, which float32 products (``add_float32_gram``) perturb: SFDA fell from 1.0
    to 0.0 or 0.33 on float32 features with N - C < D (most models of the demo benchmark), and moved by 3e-7 on
    nonsingular features whose spectrum spans six decades.
    """
    n, dim = x.shape
    lower = np.zeros((dim, dim), order="F")
    class_rows = np.empty((min(n, ROW_BLOCK), dim))
    for rows, block in float64_row_blocks(x, row_map):
        # mode="clip" (the codes are valid indices) writes straight into out; "raise" goes through a temporary.
        block -= np.take(means, y[rows], axis=0, out=class_rows[: block.shape[0]], mode="clip")
        # block is C-ordered (rows, D): block.T is the Fortran (D, rows) A with A A^T = block^T block.
        lower = scipy.linalg.blas.dsyrk(1.0, block.T, beta=1.0, c=lower, trans=0, lower=1, overwrite_c=1)
    scatter = symmetric_from_lower(lower)
    scatter /= n
    return scatter


def total_scatter(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    return centred.T @ centred / x.shape[0]


def shrink(scatter: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) S + alpha * tr(S)/D * I (sklearn ``shrunk_covariance``)."""
    dim = scatter.shape[0]
    out = (1.0 - alpha) * scatter
    out.flat[:: dim + 1] += alpha * np.trace(scatter) / dim
    return out


def lda_log_proba(x: np.ndarray, means: np.ndarray, priors: np.ndarray, sw: np.ndarray,
                  row_map: RowMap | None = None) -> np.ndarray:
    """(N, C) log p(c|x) of the LDA classifier: softmax_c( x S_w^-1 mu_c - mu_c S_w^-1 mu_c / 2 + log prior_c ).

    With all D discriminant directions V kept (V^T S_w V = I, so V V^T = S_w^-1) this equals the reference codes'
    ``coef = means @ V @ V.T``; solving with S_w directly skips the generalized eigenproblem. ``row_map`` as in
    ``within_scatter``: the classifier is applied to the mapped rows.
    """
    if not np.trace(sw) > 0:  # rows that differ (require_within_class_scatter) by less than float64 squares hold
        raise InvalidInputError("features have zero within-class scatter in float64 (each class's samples are "
                                "identical or differ by less than its squares resolve)")
    # Rows and means are measured from the mean of the means: a common shift m only adds the class-independent
    # -x S_w^-1 m + m S_w^-1 m / 2 to every score, but on features with a large offset the uncentred terms are
    # huge and cancel between classes (SFDA lost half its value at an offset of 1e8, 1e-5 of it at 1e6).
    shift = priors @ means
    means = means - shift
    try:
        sw_inv_means = scipy.linalg.cho_solve(scipy.linalg.cho_factor(sw), means.T)  # (D, C)
    except np.linalg.LinAlgError:
        # S_w singular even after shrinkage (shrinkage 0 and N - C < D): the minimum-norm solution.
        sw_inv_means = np.linalg.lstsq(sw, means.T, rcond=None)[0]
    offsets = -0.5 * np.einsum("cd,dc->c", means, sw_inv_means) + np.log(priors)
    scores = np.empty((x.shape[0], means.shape[0]))
    for rows, block in float64_row_blocks(x, row_map):
        block -= shift  # in place: the blocks are a reused float64 buffer
        np.add(block @ sw_inv_means, offsets, out=scores[rows])
    # log-softmax in place: 4x faster than scipy.special.log_softmax at 50k x 100 (same values)
    scores -= scores.max(axis=1, keepdims=True)
    scores -= np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return scores


def discriminant_directions(sb: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """Generalized eigenvectors of (S_b, S_w), columns sorted by decreasing eigenvalue, V^T S_w V = I."""
    evals, evecs = scipy.linalg.eigh(sb, sw)
    return evecs[:, np.argsort(evals)[::-1]]

