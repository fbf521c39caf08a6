"""GBC (Pándy et al. 2022): Gaussian Bhattacharyya coefficient between per-class feature distributions."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logsumexp

from ._checks import as_class_labels, as_features, as_float_matrix
from ._linalg import class_members, pca_project
from .base import SaturationWarning, caller_stacklevel, register_metric

REFERENCE = "Pándy et al., Transferability Estimation using Bhattacharyya Class Separability, CVPR 2022"
#: GBC = -sum of Bhattacharyya coefficients, each in [0, 1]: below 1e-12 the classes are separated to machine
#: precision (e.g. -6e-90 vs -2e-70 when N <= D), which is a tie, not a ranking.
TIE_ATOL = 1e-12

#: The class Gaussians' covariance forms (stable_transfer's two).
GAUSSIAN_TYPES = ("diagonal", "spherical")
#: Class pairs per step of ``_log_bc_diagonal``: its (pairs, D) float64 temporaries (~256 KB) stay in cache.
_PAIR_ELEMENTS = 32_768
#: Rows x D of one piece of ``_class_gaussians`` (1 MB in float64): 64 rows of 2048-d features stay in L2 for the
#: piece's three passes (32-256 rows measured: 64 fastest at 10k and 50k x 2048).
_PIECE_ELEMENTS = 131_072
#: Most pairwise variance sums multiplied together before one log (``_log_group_size``).
_MAX_LOG_GROUP = 32


def _class_gaussians(x: np.ndarray, codes: np.ndarray, n_classes: int, floor: float):
    """Per-class means (C, D) and per-dimension variances (C, D) (1/n_c, floored at ``floor``), in float64.

    One pass over each class's rows, gathered in float64 pieces of ``_PIECE_ELEMENTS`` (a float32 ``x`` is never
    copied whole): each piece's mean and squared deviations from it while it is in cache (no E[x^2] - mean^2
    cancellation), merged into the class's by Chan et al.'s pairwise update M2 = M2_a + M2_b + delta^2 n_a n_b / n
    (as stable as two passes; the earlier two passes over 8 MB pieces were 1.7x slower at 50k x 2048). The means
    double as the finiteness check of ``x``: a NaN or inf makes its class's sum non-finite, and only then (or on
    overflow) does the exact check of ``as_features`` run."""
    dim = x.shape[1]
    means, squares = np.zeros((n_classes, dim)), np.zeros((n_classes, dim))
    piece_rows = max(1, _PIECE_ELEMENTS // dim)
    buffer, ones = np.empty((piece_rows, dim)), np.ones(piece_rows)
    piece_mean, delta = np.empty(dim), np.empty(dim)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: x is refused below
        for c, rows in enumerate(class_members(codes, n_classes)):
            for start in range(0, len(rows), piece_rows):
                block = buffer[: len(rows[start : start + piece_rows])]
                block[...] = x[rows[start : start + piece_rows]]
                np.dot(ones[: len(block)], block, out=piece_mean)
                piece_mean /= len(block)
                block -= piece_mean
                piece_squares = np.einsum("nd,nd->d", block, block)
                if start == 0:
                    means[c], squares[c] = piece_mean, piece_squares
                    continue
                total = start + len(block)  # rows merged so far: start before this piece
                np.subtract(piece_mean, means[c], out=delta)
                means[c] += delta * (len(block) / total)
                squares[c] += piece_squares
                squares[c] += delta * delta * (start * len(block) / total)
            squares[c] /= len(rows)
    if not np.isfinite(means).all():
        as_features(x)  # raises for NaN or inf
    return means, np.maximum(squares, floor)


def _log_group_size(variances: np.ndarray) -> int:
    """How many pairwise variance sums v_i + v_j (each in [2 min v, 2 max v]) can be multiplied together with the
    product a normal float64 (|log| <= 700 < 708): at most ``_MAX_LOG_GROUP``, and 1 (plain logs) when the
    variances span too much of float64's range for any product."""
    widest = max(abs(np.log(2 * variances.min())), abs(np.log(2 * variances.max())), 1.0)
    return int(max(1, min(_MAX_LOG_GROUP, 700 // widest)))


def _sum_of_logs(values: np.ndarray, group: int) -> np.ndarray:
    """Row sums of log(values) for positive (rows, D) ``values``, with one log per ``group`` entries: the log of
    the product of ``group`` columns (D / group apart), then the remaining columns' own logs. Each product rounds
    group - 1 times, a relative error of at most ~(group - 1) ulp, i.e. an absolute error of the same size in its
    log: the precision of the plain sum of logs, at 1/group of the logs (the dearest operation here)."""
    width = values.shape[1] // group
    product = np.multiply.reduce(values[:, : group * width].reshape(len(values), group, width), axis=1)
    return np.log(product).sum(axis=1) + np.log(values[:, group * width :]).sum(axis=1)


def _log_bc_diagonal(means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """(C, C) log Bhattacharyya coefficients -D_B for diagonal Gaussians (0 on the diagonal, which GBC skips).

    With s = v_i + v_j = 2 Sigma: D_B = 1/4 sum_d (mu_i - mu_j)^2 / s + 1/2 (sum_d log s - D log 2
    - 1/2 (sum_d log v_i + sum_d log v_j)). Each class i against the later classes j > i, a few at a time so the
    temporaries stay in cache (D_B is symmetric: each pair once, mirrored)."""
    n_classes, dim = means.shape
    half_log_dets = 0.5 * np.log(variances).sum(axis=1)
    group = _log_group_size(variances)
    step = max(1, _PAIR_ELEMENTS // dim)
    out = np.zeros((n_classes, n_classes))
    summed_buffer, delta_buffer = np.empty((step, dim)), np.empty((step, dim))  # reused: in place, in cache
    for i in range(n_classes - 1):
        for start in range(i + 1, n_classes, step):
            later = slice(start, min(start + step, n_classes))
            summed = np.add(variances[i], variances[later], out=summed_buffer[: later.stop - start])
            delta = np.subtract(means[i], means[later], out=delta_buffer[: later.stop - start])
            delta *= delta
            delta /= summed
            mahalanobis = delta.sum(axis=1)  # 1/2 (mu_i - mu_j)^T Sigma^-1 (mu_i - mu_j)
            log_det_ratio = _sum_of_logs(summed, group) - dim * np.log(2) - half_log_dets[i] - half_log_dets[later]
            out[i, later] = -(mahalanobis / 4 + log_det_ratio / 2)
    upper = np.triu_indices(n_classes, k=1)
    out[upper[::-1]] = out[upper]
    return out


def _log_bc_spherical(means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """(C, C) log Bhattacharyya coefficients for spherical Gaussians N(mu_c, s_c^2 I), s_c^2 = mean variance.

    ||mu_i - mu_j||^2 comes from the Gram matrix of the class means, centred first: with a common offset in the
    features, ||mu_i||^2 + ||mu_j||^2 - 2 mu_i . mu_j of the raw means cancels (6e-6 of GBC lost at an offset
    1e5 times the spread)."""
    dim = means.shape[1]
    s2 = variances.mean(axis=1)
    centred = means - means.mean(axis=0)
    sq_norms = (centred**2).sum(axis=1)
    dist2 = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * centred @ centred.T, 0.0)
    avg = 0.5 * (s2[:, None] + s2[None, :])
    return -(dist2 / (8 * avg) + dim / 2 * (np.log(avg) - 0.5 * (np.log(s2)[:, None] + np.log(s2)[None, :])))


@register_metric("gbc", reference=REFERENCE, tie_atol=TIE_ATOL, choices={"gaussian_type": GAUSSIAN_TYPES},
                 ranges={"variance_floor": "(0, inf)"})
def gbc(
    features: np.ndarray,
    labels: np.ndarray,
    gaussian_type: str = "diagonal",
    pca_dims: int | None = None,
    variance_floor: float = 1e-4,
) -> float:
    """GBC = -sum_{i != j} BC(c_i, c_j), BC = exp(-D_B), over ordered class pairs (so always <= 0).

    Each class c is a Gaussian N(mu_c, Sigma_c) fitted to its features; with Sigma = (Sigma_i + Sigma_j) / 2,
    D_B = 1/8 (mu_i - mu_j)^T Sigma^-1 (mu_i - mu_j) + 1/2 ln( det Sigma / sqrt(det Sigma_i det Sigma_j) ).
    ``gaussian_type``: "diagonal" (per-dimension variances) or "spherical" (Sigma_c = mean variance * I),
    the two forms of the google stable_transfer code. The diagonal form equals stable_transfer's (to 1e-15 on the
    anchors' reference scores); the spherical form does NOT: stable_transfer's log-determinant term is
    1/2 ln(s^2 / sqrt(s_i^2 s_j^2)) without the factor D (``reduce_sum`` of a scalar), while the Bhattacharyya
    distance of N(mu, s^2 I_D) needs D/2 ln(...), which modelrank uses; that moved GBC by 0.5% (C = 10, D = 256)
    and 4.6% (C = 50, D = 512) on the anchors' cases, and it weighs the variance ratio D times more than
    stable_transfer does. That code's docstring defaults to spherical; "diagonal" is
    the default here because it keeps per-dimension spread (spherical, the coarser model, stays available as
    ``gbc_spherical``, so both columns appear in ``--metric all``). The log-determinants are sums of logs, so nothing
    under/overflows in high dimension (Model Spider's full-covariance ``det`` in 64-d does). Variances use
    1/n_c and are floored at ``variance_floor`` (1e-4, as stable_transfer), which also makes a class with a
    single sample usable. The sum of BCs is taken in log space (logsumexp).
    The floor is absolute, so GBC depends on the features' scale: L2-normalised D-dimensional features have
    per-dimension variances near 1/D (5e-4 at D = 2048), where the floor already weighs; compare models on
    features of one scale, or lower ``variance_floor`` with them.
    ``pca_dims``: optionally project on that many principal axes first (Model Spider uses 64).

    Inputs: features (N, D), class labels (N,). Higher (closer to 0) is better. O(C^2 D) time.
    """
    # float32 stays float32: the class statistics convert row blocks, and check finiteness on the way
    x = as_float_matrix(features, "features", upcast=False)
    codes, n_classes = as_class_labels(labels, x.shape[0])
    if pca_dims is not None:
        x = pca_project(as_features(x, upcast=False), n_dims=pca_dims)
    means, variances = _class_gaussians(x, codes, n_classes, variance_floor)
    log_bc = (_log_bc_diagonal if gaussian_type == "diagonal" else _log_bc_spherical)(means, variances)
    off_diagonal = ~np.eye(n_classes, dtype=bool)
    score = float(-np.exp(logsumexp(log_bc[off_diagonal])))
    if -score < TIE_ATOL:
        warnings.warn(f"GBC = {score:.3g}: every class pair's Bhattacharyya coefficient is below {TIE_ATOL:g}, so the "
                      f"classes look perfectly separated ({x.shape[0]} samples, {x.shape[1]}-d Gaussians) and GBC "
                      "saturates at 0 for every such model", SaturationWarning, stacklevel=caller_stacklevel())
    return score


@register_metric("gbc_spherical", reference=REFERENCE, tie_atol=TIE_ATOL)
def gbc_spherical(features: np.ndarray, labels: np.ndarray, pca_dims: int | None = None) -> float:
    """GBC with spherical per-class Gaussians (``gbc(..., gaussian_type="spherical")``)."""
    return gbc(features, labels, gaussian_type="spherical", pca_dims=pca_dims)
