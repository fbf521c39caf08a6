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
from .logme import max_evidence


def logme_resampled(features: np.ndarray, labels: np.ndarray, counts: np.ndarray, task: str = "classification",
                    max_iter: int = 11, tol: float = 1e-3) -> np.ndarray:
    """LogME of each resample, in the full data's eigenbasis (first order in the resampling).

    With F^T F = V diag(s) V^T on the full data and Z = F V, the resample weighted by counts c has
    F^T C F = Z^T C Z in that basis. Its diagonal, s*_k = sum_i c_i z_ik^2, stands in for the resample's
    eigenvalues (exact to first order in C - I: the eigenvalue perturbation is v_k^T (F^T (C - I) F) v_k), and
    the projections are taken in the same basis, V^T F^T C y = Z^T C y; ``max_evidence`` then runs per
    resample. With c = 1 this is exactly ``logme``. The off-diagonal part of Z^T C Z is ignored: by
    Hadamard's inequality it can only raise log det(alpha + beta F^T C F), i.e. the resample's evidence is
    at most slightly overestimated; ``benchmarks/bench_bootstrap.py`` measures the difference from exact
    resampling.

    Cost: one D x D eigendecomposition (with vectors) and one pass Z = F V over row blocks, O(N D^2) like
    one LogME score, plus O(B N D) for the B resamples, instead of B full scores.
    Needs N > D (below that, LogME's spectrum comes from F F^T, which a resample changes entirely).
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

        def weighted_cross(z: np.ndarray, rows: slice) -> np.ndarray:  # (B, D, K): sum_i c_bi z_i y_i^T
            return np.einsum("bn,nd,nk->bdk", counts[:, rows], z, y[rows], optimize=True)

        y_norm2 = counts @ y**2
    elif task == "classification":
        codes, n_classes = as_class_labels(labels, n)
        cross = one_hot_cross(codes, n_classes)
        one_hot = np.eye(n_classes)[codes]

        def weighted_cross(z: np.ndarray, rows: slice) -> np.ndarray:
            out = np.empty((counts.shape[0], z.shape[1], n_classes))
            block_codes = codes[rows]
            for c in range(n_classes):  # classes, not samples: each product is (B, n_c) @ (n_c, D)
                members = block_codes == c
                out[:, :, c] = counts[:, rows][:, members] @ z[members]
            return out

        y_norm2 = counts @ one_hot
    else:
        raise InvalidInputError(f"LogME supports classification and regression, not {task!r}")
    products = float32_gram_and_cross if x.dtype == np.float32 else gram_and_cross
    gram, _ = products(x, cross)
    sigma, basis = scipy.linalg.eigh(gram, lower=True, overwrite_a=True, check_finite=False)
    keep = sigma > rank_cutoff(sigma, n)
    basis = basis[:, keep]
    spectra = np.zeros((counts.shape[0], basis.shape[1]))
    projections = 0.0
    for rows in row_blocks(n):
        z = np.asarray(x[rows], dtype=np.float64) @ basis
        spectra += counts[:, rows] @ z**2
        projections = projections + weighted_cross(z, rows)
    scores = np.empty(counts.shape[0])
    for b in range(counts.shape[0]):  # B resamples, each O(D K) per fixed-point step
        spectrum = spectra[b]
        positive = spectrum > rank_cutoff(spectrum, n)
        projected = projections[b][positive] / np.sqrt(spectrum[positive])[:, None]
        scores[b] = max_evidence(spectrum[positive], projected, y_norm2[b], n, max_iter, tol).mean()
    return scores


#: metric name -> f(features, labels, counts, **the metric's other inputs and parameters) -> (B,) scores
RESAMPLED: dict[str, Callable[..., np.ndarray]] = {"logme": logme_resampled}
