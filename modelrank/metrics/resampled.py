"""Metric scores of many bootstrap resamples at once, where a metric's structure allows it.

A bootstrap resample of the N samples is a vector of counts c (sample i drawn c_i times, sum c = N); a metric
on the resample is the metric on the rows repeated by c. Redoing the whole metric B times costs B scores; the
functions here reuse what the full data computed instead. ``RESAMPLED`` maps a metric name to its function
``f(features, labels, counts, **inputs) -> (B,) scores`` for a (B, N) count matrix.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, as_targets
from ._linalg import float32_gram_and_cross, gram_and_cross, one_hot_cross, rank_cutoff, row_blocks
from .logme import fixed_point_rule, max_evidence


def logme_resampled(features: np.ndarray, labels: np.ndarray, counts: np.ndarray, task: str = "classification",
                    max_iter: int | None = 11, tol: float = 1e-3, preset: str | None = None) -> np.ndarray:
    """LogME of each resample to first order in the counts (the infinitesimal jackknife).

    Give sample i the weight w_i (w = 1: the data; w = c: a resample). At the fitted alpha, beta and m the
    evidence is stationary in all three, so its derivative in w_i is the partial one:
      dE_k/dw_i = 1/2 log beta_k - 1/2 log 2 pi - beta_k/2 f_i^T A_k^-1 f_i - beta_k/2 (y_ik - f_i^T m_k)^2,
    A_k = alpha_k I + beta_k F^T F, and the score E_k / N (N = sum w) has derivative (dE_k/dw_i - E_k/N) / N.
    A resample's LogME is then LogME + sum_i (c_i - 1) g_i with g_i the mean of those over the targets k.
    This is the linear part of the resampling; it leaves out the resamples' bias (repeated rows make the fit
    look better), which ``bootstrap_scores`` removes from its intervals anyway, and the curvature of the score
    in the weights, which grows with D / N: measured against exact resampling (``benchmarks/bench_bootstrap.py``)
    its spread is 0.97x the exact one at 2000 x 256 and 0.67x at 10000 x 2048 (correlation 0.85 and 0.83), so
    at D / N ~ 0.2 its intervals are about a third too narrow; ``bootstrap_scores(exact=True)`` recomputes.

    Everything comes from the eigendecomposition F^T F = V diag(s) V^T (with Z = F V, leverage
    f_i^T A^-1 f_i = sum_j z_ij^2 / (alpha + beta s_j) and f_i^T m = z_i . m~): one O(N D^2) Gram pass, one
    D x D eigendecomposition with vectors and one O(N D^2) pass for Z, about two to three LogME scores in
    all, plus O(B N) for the B resamples. Needs N > D (below that, LogME works from F F^T).
    """
    x = as_features(features, upcast=False)
    n, d = x.shape
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != n:
        raise InvalidInputError(f"counts must be (B, {n}), got shape {counts.shape}")
    if n <= d:
        raise InvalidInputError(f"resampled LogME needs more samples than dimensions (N = {n}, D = {d})")
    if task == "regression":
        y = as_targets(labels, n)

        def cross(m: np.ndarray, rows: slice) -> np.ndarray:
            return m.T @ y[rows]

        def targets(rows: slice) -> np.ndarray:
            return y[rows]

    elif task == "classification":
        codes, n_classes = as_class_labels(labels, n)
        cross = one_hot_cross(codes, n_classes)

        def targets(rows: slice) -> np.ndarray:
            return np.eye(n_classes)[codes[rows]]

    else:
        raise InvalidInputError(f"LogME supports classification and regression, not {task!r}")
    y_norm2 = sum((targets(rows) ** 2).sum(axis=0) for rows in row_blocks(n))
    products = float32_gram_and_cross if x.dtype == np.float32 else gram_and_cross
    gram, cross_sum = products(x, cross)
    sigma, basis = scipy.linalg.eigh(gram, lower=True, overwrite_a=True, check_finite=False)
    keep = sigma > rank_cutoff(sigma, n)
    sigma, basis = sigma[keep], basis[:, keep]
    rotated = basis.T @ cross_sum  # V^T F^T Y
    rule = fixed_point_rule(max_iter, tol, preset)
    prior_dims = x.shape[1] if rule.prior_dims_from_features else None
    evidence, _, alpha, beta = max_evidence(sigma, rotated / np.sqrt(sigma)[:, None], y_norm2, n, rule,
                                            prior_dims=prior_dims, with_precisions=True)
    if not (np.isfinite(alpha).all() and np.isfinite(beta).all()):
        raise InvalidInputError("LogME is degenerate on these features (F interpolates a target)")
    posterior_mean = beta * rotated / (alpha + beta * sigma[:, None])  # m~ = V^T m, (r, K)
    inverse_diagonal = 1.0 / (alpha + beta * sigma[:, None])  # of A in the eigenbasis, (r, K)
    gradient = np.empty(n)
    for rows in row_blocks(n):
        z = np.asarray(x[rows], dtype=np.float64) @ basis
        leverage = z**2 @ inverse_diagonal
        residual = targets(rows) - z @ posterior_mean
        d_evidence = 0.5 * np.log(beta / (2 * np.pi)) - beta / 2 * (leverage + residual**2)
        gradient[rows] = ((d_evidence - evidence) / n).mean(axis=1)  # evidence is already E / N
    return float(evidence.mean()) + (counts - 1.0) @ gradient


#: metric name -> f(features, labels, counts, **the metric's other inputs and parameters) -> (B,) scores
RESAMPLED: dict[str, Callable[..., np.ndarray]] = {"logme": logme_resampled}
