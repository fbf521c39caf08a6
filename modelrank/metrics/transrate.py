"""TransRate: transferability as a coding-rate difference (Huang et al., ICML 2022)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, as_targets
from ._linalg import class_members, gram_and_cross, no_cross
from .base import register_metric

DEFAULT_EPS = 1e-4
#: Equal-count bins per regression target (the number EMMS's ``Transrate_multi`` uses).
DEFAULT_REGRESSION_BINS = 50
#: How the per-class rates are averaged: equally, or weighted by the class frequencies.
CLASS_WEIGHTINGS = ("uniform", "prior")


def coding_rate(x: np.ndarray, mean: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """R(Z, eps) = 1/2 logdet(I_D + Z^T Z / (n eps)) for Z = x - mean, x of shape (n, D) (float32 or float64).

    Computed on the smaller Gram matrix: logdet(I_D + Z^T Z / c) = logdet(I_n + Z Z^T / c) (Sylvester), so the
    cost is O(n D min(n, D)) and the D x D matrix is never formed when n < D; for n > D, Z^T Z is accumulated
    over row blocks (``gram_and_cross``), so Z (a float64 copy of x) is never built. The log-determinant of the
    positive definite I + Z^T Z / c comes from its Cholesky factor.
    """
    n, dim = x.shape
    if dim < n:
        gram, _ = gram_and_cross(x, no_cross, mean)
    else:
        z = np.subtract(x, mean, dtype=np.float64)
        gram = z @ z.T  # numpy runs Z Z^T as one symmetric rank-k update (syrk)
    gram /= n * eps
    gram.flat[:: gram.shape[0] + 1] += 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        factor, info = sla.lapack.dpotrf(gram, lower=1, clean=0, overwrite_a=1)
    diagonal = factor.diagonal()
    if info != 0 or not np.isfinite(diagonal).all():  # I + PSD is positive definite; anything else is overflow
        raise InvalidInputError("coding rate overflowed: features are too large for this eps")
    return float(np.log(diagonal).sum())


def equal_count_bins(target: np.ndarray, bins: int) -> np.ndarray:
    """Bin index (0..bins-1) of each value of a real target, with edges at its quantiles (equal counts).

    Tied values always share a bin, so the binning does not depend on the sample order.
    """
    edges = np.quantile(target, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.searchsorted(edges, target, side="right")


@register_metric(
    "transrate",
    needs=("features", "labels", "task"),
    tasks=("classification", "regression"),
    reference="Huang et al., Frustratingly Easy Transferability Estimation, ICML 2022",
    choices={"class_weighting": CLASS_WEIGHTINGS},
    ranges={"eps": "(0, inf)", "regression_bins": "[2, inf)"},
)
def transrate(features: np.ndarray, labels: np.ndarray, task: str = "classification", *, eps: float = DEFAULT_EPS,
              class_weighting: str = "uniform", regression_bins: int = DEFAULT_REGRESSION_BINS) -> float:
    """TrR = R(Z, eps) - sum_c w_c R(Z_c, eps), Z the globally centred features, Z_c the rows of class c.

    R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps)) with n the number of rows of Z (see ``coding_rate``).
    ``class_weighting="uniform"`` (w_c = 1/C) is what the reference code (TLlib, EMMS) does and is the default;
    ``"prior"`` (w_c = n_c/N) is the paper's R(Z|Y). The paper writes the rate with D/(n eps^2); the code's
    1/(n eps) is followed, so its eps (default 1e-4) is the code's. Higher is better. The score depends on the
    feature dimension and scale, so compare models through their ranking on one dataset only.
    Constant features give exactly 0 (no information).
    Regression (``task="regression"``, targets (N,) or (N, K)): each target is cut into ``regression_bins``
    equal-count bins by its quantiles, the bins act as classes, and the K scores are averaged. EMMS's
    ``Transrate_multi`` means to do this but never sorts the targets, so its bins follow the sample order and
    ignore the target values, and it does not centre the features; the binning here is the correct one.
    """
    x = as_features(features, upcast=False)  # float32 stays float32: centred one block (or class) at a time
    if task == "regression":
        if regression_bins < 2:
            raise InvalidInputError(f"regression_bins must be >= 2, got {regression_bins}")
        targets = as_targets(labels, x.shape[0])
        if (np.ptp(targets, axis=0) == 0).any():
            raise InvalidInputError("a regression target is constant: TransRate has no bins to compare")
        label_sets = [equal_count_bins(column, regression_bins) for column in targets.T]
    elif task == "classification":
        label_sets = [labels]
    else:
        raise InvalidInputError(f"TransRate supports classification and regression, not {task!r}")
    mean = x.mean(axis=0, dtype=np.float64)  # Z and every Z_c are centred by the GLOBAL mean
    total_rate = coding_rate(x, mean, eps)
    scores = []
    for set_labels in label_sets:
        y, n_classes = as_class_labels(set_labels, x.shape[0])
        counts = np.bincount(y, minlength=n_classes)
        class_rates = np.array([coding_rate(x[rows], mean, eps) for rows in class_members(y, n_classes)])
        weights = counts / counts.sum() if class_weighting == "prior" else np.full(n_classes, 1.0 / n_classes)
        scores.append(total_rate - float(weights @ class_rates))
    return float(np.mean(scores))
