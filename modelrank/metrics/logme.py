"""LogME (You et al. 2021): the maximum evidence of a Bayesian linear head on the features."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, as_targets
from ._linalg import (
    CrossProduct,
    eigh_projections,
    float32_gram_and_cross,
    gram_and_cross,
    has_distinct_rows,
    one_hot_cross,
    rank_cutoff,
    sample_spectrum,
)
from .base import SaturationWarning, register_metric


#: Lower bound of ||m||^2 and ||y - Fm||^2 (relative to ||y||^2) and of N - gamma (relative to N) in the
#: fixed point; see ``max_evidence``.
DEGENERATE_FLOOR = 1e-12


def feature_spectrum(x: np.ndarray, cross: CrossProduct) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values s_i^2 of F (numerical zeros dropped) and the projections U^T Y, shape (r, K).

    ``cross(M, rows)`` returns M^T Y[rows] for a (len(rows), k) matrix M (class sums when Y is one-hot).
    N > D: eigendecomposition of F^T F = V S^2 V^T, with F^T F and F^T Y accumulated in one blocked pass
    (``gram_and_cross``; float32 products for float32 F, ``float32_gram_and_cross``), then
    U^T Y = S^-1 V^T F^T Y (the truncated SVD) without forming V (``eigh_projections``); N <= D:
    eigendecomposition of F F^T = U S^2 U^T. Cost O(N D min(N, D)), memory min(N, D)^2 plus one row block.
    """
    n, d = x.shape
    if n > d:
        products = float32_gram_and_cross if x.dtype == np.float32 else gram_and_cross
        sigma, rotated = eigh_projections(*products(x, cross))
        keep = sigma > rank_cutoff(sigma, max(n, d))
        sigma = sigma[keep]
        projected = rotated[keep] / np.sqrt(sigma)[:, None]
    else:
        sigma, u = sample_spectrum(x.astype(np.float64, copy=False))
        projected = cross(u, slice(None))
    return sigma, projected


@np.errstate(all="ignore")  # degenerate columns are detected below and redone with floors
def max_evidence(
    sigma: np.ndarray,
    projected: np.ndarray,
    y_norm2: np.ndarray,
    n: int,
    max_iter: int = 11,
    tol: float = 1e-3,
    floor: float = 0.0,
    with_precisions: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column maximum log evidence / N of y_k = F w + eps, w ~ N(0, 1/alpha I), eps ~ N(0, 1/beta).

    All K columns are solved together: alpha, beta are (K,) vectors and each column stops updating once its
    t = alpha / beta changes by less than ``tol`` (relative). With x = U^T y and t = alpha / beta:
      gamma = sum_i s_i^2 / (s_i^2 + t),            ||m||^2 = sum_i s_i^2 x_i^2 / (s_i^2 + t)^2,
      ||y - F m||^2 = sum_i x_i^2 t^2 / (s_i^2 + t)^2 + (||y||^2 - ||x||^2),
      alpha <- gamma / ||m||^2,  beta <- (N - gamma) / ||y - F m||^2   (MacKay's fixed point).
    The evidence is evaluated at the final (alpha, beta) with m at that t:
      log p(y|F) = r/2 log alpha + N/2 log beta - 1/2 sum_i log(alpha + beta s_i^2)
                   - beta/2 ||y - F m||^2 - alpha/2 ||m||^2 - N/2 log(2 pi),
    where r = rank(F): the D - r null directions of F cancel exactly (the LogME repo writes D/2 log alpha with
    min(N, D) singular values, which differs when N < D).
    ``with_precisions=True`` also returns the final alpha and beta, (K,) each (NaN for degenerate columns).
    """
    x2 = projected**2  # (r, K)
    outside = np.maximum(y_norm2 - x2.sum(axis=0), 0.0)  # part of y outside the column space of F
    k = x2.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    active = np.ones(k, dtype=bool)
    s = sigma[:, None]
    floors = floor * y_norm2

    def posterior_terms(t: np.ndarray):
        shrink = 1.0 / (s + t) ** 2
        m2 = np.maximum((s * x2 * shrink).sum(axis=0), floors)
        res2 = np.maximum((x2 * t**2 * shrink).sum(axis=0) + outside, floors)
        gamma = (s / (s + t)).sum(axis=0)
        return gamma, m2, res2

    for _ in range(max_iter):
        t = alpha / beta
        gamma, m2, res2 = posterior_terms(t)
        new_alpha, new_beta = gamma / m2, np.maximum(n - gamma, floor * n) / res2
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        active &= np.abs(alpha / beta - t) / t > tol
        if not active.any():
            break
    _, m2, res2 = posterior_terms(alpha / beta)
    evidence = (
        sigma.shape[0] / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * np.log(alpha + beta * s).sum(axis=0)
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    evidence = evidence / n
    bad = ~np.isfinite(evidence)
    if bad.any() and floor == 0.0:
        # F interpolates these targets (rank(F) close to N, e.g. N < D): ||y - Fm||^2 and N - gamma underflow
        # to 0 and beta becomes inf or 0. Redo just those columns with relative floors on the denominators (the
        # LogME repo adds 1e-5 to them everywhere, which would also shift every ordinary score).
        warnings.warn(f"LogME: the features interpolate {int(bad.sum())} of {bad.size} targets (rank close to N = {n}), "
                      "so their evidence rests on the degenerate floors and saturates; use more samples than dimensions",
                      SaturationWarning, stacklevel=2)
        evidence[bad] = max_evidence(sigma, projected[:, bad], y_norm2[bad], n, max_iter, tol, DEGENERATE_FLOOR)
        alpha[bad] = beta[bad] = np.nan
    if not np.isfinite(evidence).all():
        raise InvalidInputError("LogME evidence is not finite for these features (degenerate spectrum)")
    return (evidence, alpha, beta) if with_precisions else evidence


@register_metric(
    "logme",
    needs=("features", "labels", "task"),
    tasks=("classification", "regression"),
    # float32 features have F^T F summed in float32 blocks: within ~1e-6 of the float64 score
    tie_rtol=1e-6,
    tie_atol=1e-6,
    reference="You et al., LogME: Practical Assessment of Pre-trained Models for Transfer Learning, ICML 2021",
)
def logme(
    features: np.ndarray, labels: np.ndarray, task: str = "classification", max_iter: int = 11, tol: float = 1e-3
) -> float:
    """LogME: mean over targets of the maximised log evidence per sample of Bayesian linear regression.

    Classification: one target per class (its one-hot column); regression: each column of the (N,) or
    (N, K) real targets. For each target y, alpha and beta maximise
    log p(y | F) = r/2 log a + N/2 log b - 1/2 sum_i log(a + b s_i^2) - b/2 ||y - Fm||^2 - a/2 ||m||^2 - N/2 log 2pi
    by the fixed-point iteration of the JMLR version (at most ``max_iter`` steps, relative tolerance ``tol``
    on alpha/beta), over one (truncated) SVD of F shared by all targets; see ``max_evidence``.
    LogME = mean_k evidence_k / N. Arithmetic is float64, except that float32 (and float16) features, as
    extracted, have F^T F multiplied in float32 row blocks summed in float64: twice as fast, and within
    ~1e-6 of the float64 score (pass ``features.astype(np.float64)`` for the all-float64 path).

    Inputs: features (N, D); class labels (N,) or regression targets (N,) / (N, K); ``task``.
    Higher is better; only differences within one dataset are meaningful (often in the 4th decimal).
    """
    x = as_features(features, upcast=False)  # float32 stays float32 (see ``feature_spectrum``)
    if task == "regression":
        y = as_targets(labels, x.shape[0])
        y_norm2 = (y**2).sum(axis=0)
        if (y_norm2 == 0).any():
            raise InvalidInputError("a regression target is identically zero: LogME is undefined")

        def cross(m: np.ndarray, rows: slice) -> np.ndarray:
            return m.T @ y[rows]

    elif task == "classification":
        codes, n_classes = as_class_labels(labels, x.shape[0])
        y_norm2 = np.bincount(codes, minlength=n_classes).astype(np.float64)  # one-hot columns
        cross = one_hot_cross(codes, n_classes)

    else:
        raise InvalidInputError(f"LogME supports classification and regression, not {task!r}")
    if not has_distinct_rows(x):
        raise InvalidInputError("features are constant: LogME is undefined")
    sigma, projected = feature_spectrum(x, cross)
    return float(max_evidence(sigma, projected, y_norm2, x.shape[0], max_iter, tol).mean())
