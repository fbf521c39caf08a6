"""LFC (Deshpande et al. 2021): label-feature correlation of the linearised fine-tuning kernel."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._linalg import class_sums
from .base import register_metric


@register_metric(
    "lfc",
    reference="Deshpande et al., A linearized framework and a new benchmark for model selection for fine-tuning, 2021",
)
def lfc(features: np.ndarray, labels: np.ndarray) -> float:
    """LFC = <K~, Y~>_F / (||K~||_F ||Y~||_F), exact and without the N x N matrices.

    K = F F^T (N x N Gram), Y_ij = +1 if y_i = y_j else -1, and K~ = K - mean(K), Y~ = Y - mean(Y) (centred
    by their global mean, as Model Spider). With s = sum_i f_i, S_c = class sums of the features and n_c the
    class counts:
      sum(K) = ||s||^2,  <K, Y> = 2 sum_c ||S_c||^2 - ||s||^2,  ||K||_F^2 = ||F^T F||_F^2 (or ||F F^T||_F^2),
      sum(Y) = 2 sum_c n_c^2 - N^2,  ||Y||_F^2 = N^2,
      <K~, Y~> = <K, Y> - sum(K) sum(Y) / N^2,  ||K~||^2 = ||K||^2 - sum(K)^2 / N^2,  ||Y~||^2 = N^2 - sum(Y)^2 / N^2.
    O(N D min(N, D)) time, min(N, D)^2 memory; no subsampling (Model Spider subsamples 45k, unseeded).

    Inputs: features (N, D), class labels (N,). Higher is better. Invariant to a global feature scale.
    """
    x = as_features(features)
    codes, n_classes = as_class_labels(labels, x.shape[0])
    n = x.shape[0]
    total = x.sum(axis=0)
    sum_k = float(total @ total)
    inner_ky = 2 * float((class_sums(x, codes, n_classes) ** 2).sum()) - sum_k
    small_gram = x.T @ x if x.shape[1] <= n else x @ x.T
    gram_norm2 = float((small_gram**2).sum())
    norm_k2 = gram_norm2 - sum_k**2 / n**2
    sum_y = 2 * float((np.bincount(codes).astype(np.float64) ** 2).sum()) - n**2
    norm_y2 = n**2 - sum_y**2 / n**2
    # Relative test: for a constant Gram matrix the difference above is pure rounding noise.
    if norm_k2 <= 1e-12 * gram_norm2:
        raise InvalidInputError("the feature Gram matrix is constant (e.g. all-zero features): LFC is undefined")
    return float((inner_ky - sum_k * sum_y / n**2) / np.sqrt(norm_k2 * norm_y2))
