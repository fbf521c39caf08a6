"""TransRate: transferability as a coding-rate difference (Huang et al., ICML 2022)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from .base import register_metric

DEFAULT_EPS = 1e-4


def coding_rate(z: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """R(Z, eps) = 1/2 logdet(I_D + Z^T Z / (n eps)) for Z of shape (n, D).

    Computed on the smaller Gram matrix: logdet(I_D + Z^T Z / c) = logdet(I_n + Z Z^T / c) (Sylvester), so the
    cost is O(n D min(n, D)) and the D x D matrix is never formed when n < D.
    """
    n, dim = z.shape
    gram = z.T @ z if dim <= n else z @ z.T
    gram /= n * eps
    gram.flat[:: gram.shape[0] + 1] += 1.0
    sign, logdet = np.linalg.slogdet(gram)
    if sign <= 0:  # I + PSD is positive definite; anything else is overflow
        raise InvalidInputError("coding rate overflowed: features are too large for this eps")
    return 0.5 * float(logdet)


@register_metric(
    "transrate",
    reference="Huang et al., Frustratingly Easy Transferability Estimation, ICML 2022",
)
def transrate(features: np.ndarray, labels: np.ndarray, *, eps: float = DEFAULT_EPS,
              class_weighting: str = "uniform") -> float:
    """TrR = R(Z, eps) - sum_c w_c R(Z_c, eps), Z the globally centred features, Z_c the rows of class c.

    R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps)) with n the number of rows of Z (see ``coding_rate``).
    ``class_weighting="uniform"`` (w_c = 1/C) is what the reference code (TLlib, EMMS) does and is the default;
    ``"prior"`` (w_c = n_c/N) is the paper's R(Z|Y). The paper writes the rate with D/(n eps^2); the code's
    1/(n eps) is followed, so its eps (default 1e-4) is the code's. Higher is better. The score depends on the
    feature dimension and scale, so compare models through their ranking on one dataset only.
    Constant features give exactly 0 (no information).
    """
    if class_weighting not in ("uniform", "prior"):
        raise InvalidInputError(f"class_weighting must be 'uniform' or 'prior', not {class_weighting!r}")
    if not eps > 0:
        raise InvalidInputError(f"eps must be > 0, got {eps}")
    x = as_features(features)
    y, n_classes = as_class_labels(labels, x.shape[0])
    z = x - x.mean(axis=0)
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=n_classes)
    class_rates = np.array([coding_rate(block, eps) for block in np.split(z[order], np.cumsum(counts)[:-1])])
    weights = counts / counts.sum() if class_weighting == "prior" else np.full(n_classes, 1.0 / n_classes)
    return coding_rate(z, eps) - float(weights @ class_rates)
