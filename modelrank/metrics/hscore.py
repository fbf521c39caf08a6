"""H-Score (Bao et al. 2019) and its shrinkage-regularised form (Ibrahim et al. 2022)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._linalg import (
    class_offsets_in_eigenbasis,
    class_scatter,
    has_distinct_rows,
    lower_triangle,
    principal_class_offsets,
    rank_cutoff,
    row_blocks,
    safe_cholesky,
    unit_scaled,
)
from .base import SaturationWarning, caller_stacklevel, register_metric


@register_metric(
    "hscore",
    tie_rtol=1e-6,  # the pseudo-inverse amplifies rounding in the scatter's small eigenvalues: closer scores tie
    ranges={"rcond": "[0, 1)"},
    reference="Bao et al., An Information-Theoretic Approach to Transferability in Task Transfer Learning, ICIP 2019",
)
def hscore(features: np.ndarray, labels: np.ndarray, rcond: float | None = None) -> float:
    """H-Score: how well the class-conditional means of the features separate relative to their spread.

    H(f) = tr( cov(f)^+ cov(g) ),  g_i = E[f | y = y_i] (the class mean of sample i's class),
    with both covariances normalised by 1/(N-1) (``np.cov``), and ``^+`` the pseudo-inverse.

    When cov(f) is safely invertible (every eigenvalue well above the cutoff below, ``safe_cholesky``) the
    pseudo-inverse is the inverse and H = sum_c n_c m_c^T S^-1 m_c (S = (N-1) cov(f), m_c = mu_c - mu) comes
    from a Cholesky factor of S: two triangular solves instead of an eigendecomposition. Otherwise it is
    computed in the eigenbasis of cov(f) = V diag(l) V^T:
    H = sum_c n_c/(N-1) * sum_k (v_k^T (mu_c - mu))^2 / l_k over the eigenvalues l_k above the cutoff,
    from a D x D or an N x N eigendecomposition, whichever is smaller (see ``principal_class_offsets``).

    ``rcond``: eigenvalues <= rcond * max(l) count as zero. Default ``None`` uses numpy's rank rule
    (D * machine eps), not the 1e-15 of Model Spider / TLlib's ``pinv``: with 1e-15 rounding noise in the
    null space of a singular cov(f) (N < D, duplicated or constant features) survives and blows the score
    up by orders of magnitude. On full-rank features both choices give the same value.

    float32 features (as extracted) are converted one row block at a time and the scatter matrix is multiplied in
    float64, as LogME's: float32 products, twice as fast, scored 22.5 instead of 6.4 on float32 features whose
    spectrum spans six decades (the pseudo-inverse amplifies the rounding of the smallest eigenvalues).

    Inputs: features (N, D), class labels (N,). Higher is better. Not invariant to the feature scale's
    shape (only to invertible linear maps of full-rank features).
    """
    x = unit_scaled(as_features(features, upcast=False))  # float32 stays float32: converted block by block
    codes, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    if n < 2:
        raise InvalidInputError("H-Score needs at least 2 samples")
    if not has_distinct_rows(x):  # centring identical rows leaves rounding noise, which scored ~1, not an error
        raise InvalidInputError("features are constant: H-Score is undefined")
    if n - 1 <= x.shape[1]:
        warnings.warn(
            f"H-Score with {n} samples and {x.shape[1]}-d features (N <= D + 1): the covariance is singular and the "
            f"score saturates at C - 1 = {n_classes - 1} for every model; use hscore_reg or more samples",
            SaturationWarning,
            stacklevel=caller_stacklevel(),
        )
    cutoff_ratio = rcond if rcond is not None else max(x.shape) * np.finfo(np.float64).eps
    if n >= x.shape[1]:
        scatter, means, counts = class_scatter(x, codes, n_classes)
        # cov(f) = S / (N-1), so H = sum_c n_c m_c^T S^-1 m_c when S is safely invertible.
        fast = weighted_mahalanobis(scatter, means, counts, cutoff_ratio)
        if fast is not None:
            return fast
        scatter_evals, offsets = class_offsets_in_eigenbasis(scatter, means)
    else:
        scatter_evals, offsets, counts = principal_class_offsets(x, codes, n_classes)
    evals = scatter_evals / (n - 1)  # of cov(f)
    if evals.max() <= 0:
        raise InvalidInputError("features are constant: H-Score is undefined")
    keep = evals > evals.max() * cutoff_ratio
    return float((counts[:, None] * offsets[:, keep] ** 2 / evals[keep]).sum() / (n - 1))


def weighted_mahalanobis(matrix: np.ndarray, means: np.ndarray, counts: np.ndarray, cutoff_ratio: float) -> float | None:
    """sum_c n_c m_c^T A^-1 m_c for the columns m_c of ``means`` (D, C), by a Cholesky factor A = L L^T
    (sum_c n_c ||L^-1 m_c||^2); None when A is not safely above ``cutoff_ratio`` (``safe_cholesky``), where the
    caller's pseudo-inverse with that cutoff differs from the inverse. Only the lower triangle of A is read."""
    factor = safe_cholesky(matrix, cutoff_ratio)
    if factor is None:
        return None
    whitened = sla.solve_triangular(factor, means, lower=True, check_finite=False)
    return float(counts @ (whitened**2).sum(axis=0))


def ledoit_wolf_shrinkage(x: np.ndarray, trace: float, frob2: float) -> tuple[float, float]:
    """Ledoit-Wolf (2004) optimal shrinkage of S = Xc^T Xc / N towards mu * I, from tr(S) and ||S||_F^2 (the
    sum of S's eigenvalues and of their squares).

    Returns ``(alpha, mu)``. mu = tr(S) / D; with r_i = ||x_i - mean||^2: delta = (||S||_F^2 - D mu^2) / D,
    beta = min(delta, (sum_i r_i^2 / N - ||S||_F^2) / (D N)), alpha = beta / delta. (sklearn computes the same
    quantity in D x D blocks.)
    """
    n, d = x.shape
    mu = trace / d
    if mu <= 0:
        raise InvalidInputError("features are constant: the shrinkage H-Score is undefined")
    mean = x.mean(axis=0, dtype=np.float64)
    sum_row_norms4 = sum(float((((x[rows] - mean) ** 2).sum(axis=1) ** 2).sum()) for rows in row_blocks(n))
    delta = (frob2 - d * mu**2) / d
    beta = min(delta, (sum_row_norms4 / n - frob2) / (d * n))
    return (0.0 if beta <= 0 else beta / delta), mu


@register_metric(
    "hscore_reg",
    tie_rtol=1e-6,  # as hscore
    reference="Ibrahim et al., Newer is not always better: Rethinking transferability metrics, NeurIPS 2021/2022",
)
def hscore_reg(features: np.ndarray, labels: np.ndarray) -> float:
    """Shrinkage-regularised H-Score: H-Score with the Ledoit-Wolf covariance estimate.

    H_alpha(f) = tr( ((1-alpha) S + alpha mu I)^-1 (1-alpha) cov(g) ),
    S = empirical covariance (1/N), mu = tr(S)/D, alpha = Ledoit-Wolf shrinkage, cov(g) as in ``hscore``
    (1/(N-1), the TLlib convention; the N/(N-1) factor is the same for every model of a dataset).
    The shrunk covariance is invertible whenever alpha > 0, so N < D and collinear features are fine.
    When Ledoit-Wolf shrinks fully (alpha = 1: the sample covariance carries no reliable structure beyond
    its trace, e.g. few noisy samples) the score is exactly 0.

    float32 features are multiplied in float64 as in ``hscore``; N >= D solves with a Cholesky factor of the shrunk
    covariance (positive definite whenever alpha > 0), N < D works in the N x N eigenbasis.

    Inputs: features (N, D), class labels (N,). Higher is better. Invariant to a global rescaling of the
    features and to rotations of the feature space.
    """
    x = unit_scaled(as_features(features, upcast=False))  # float32 stays float32: converted block by block
    codes, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    if n < 2:
        raise InvalidInputError("the shrinkage H-Score needs at least 2 samples")
    if not has_distinct_rows(x):  # as in hscore: rounding noise of the centring was scored
        raise InvalidInputError("features are constant: the shrinkage H-Score is undefined")
    cutoff_ratio = max(x.shape) * np.finfo(np.float64).eps
    if n >= x.shape[1]:
        scatter, means, counts = class_scatter(x, codes, n_classes)
        lower = lower_triangle(scatter) / n  # S
        frob2 = 2.0 * float((lower**2).sum()) - float((np.diag(lower) ** 2).sum())
        alpha, mu = ledoit_wolf_shrinkage(x, float(np.trace(lower)), frob2)
        shrunk_matrix = (1 - alpha) * lower
        shrunk_matrix[np.diag_indices_from(shrunk_matrix)] += alpha * mu
        fast = weighted_mahalanobis(shrunk_matrix, means, counts, cutoff_ratio)
        if fast is not None:
            return (1 - alpha) * fast / (n - 1)
        scatter_evals, offsets = class_offsets_in_eigenbasis(scatter, means)
    else:
        scatter_evals, offsets, counts = principal_class_offsets(x, codes, n_classes)
    evals = scatter_evals / n  # of S; the D - r directions outside the row space hold no class offset
    alpha, mu = ledoit_wolf_shrinkage(x, float(evals.sum()), float((evals**2).sum()))
    shrunk = (1 - alpha) * evals + alpha * mu
    keep = shrunk > rank_cutoff(shrunk, max(x.shape))
    return float((1 - alpha) * (counts[:, None] * offsets[:, keep] ** 2 / shrunk[keep]).sum() / (n - 1))
