"""LFC (Deshpande et al. 2021): label-feature correlation of the linearised fine-tuning kernel."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._linalg import OneHotCross, class_sums, gram_and_cross, has_distinct_rows, symmetric_from_lower, unit_scaled
from .base import register_metric


@register_metric(
    "lfc",
    reference="Deshpande et al., A linearized framework and a new benchmark for model selection for fine-tuning, 2021",
)
def lfc(features: np.ndarray, labels: np.ndarray) -> float:
    """LFC = <K~, Y~>_F / (||K~||_F ||Y~||_F), exact and without the N x N matrices.

    K = F F^T (N x N Gram), Y_ij = +1 if y_i = y_j else -1, and K~ = K - mean(K), Y~ = Y - mean(Y) (centred
    by their global mean, as Model Spider).

    Everything is computed from the CENTRED features Fc = F - 1 m^T (m the computed feature mean) and m, because
    the terms of the uncentred identities (||F^T F||_F^2 - sum(K)^2 / N^2, ...) are large and nearly equal when
    the features carry a common offset (float64 lost 1.7e-7 of LFC at an offset 1e4 times the spread, 6.5e-6 at
    1e5 times). With a = Fc m, s = Fc^T 1 (zero up to the rounding of m, kept so the identities are exact),
    G = Fc^T Fc, Sc_c the class sums of Fc and n_c the class counts,
    K = Fc Fc^T + a 1^T + 1 a^T + ||m||^2 1 1^T, so K~ = Fc Fc^T + a 1^T + 1 a^T - k 1 1^T, k = (||s||^2 + 2N s.m)/N^2:
      <K~, Y~> = <K~, Y> = 2 sum_c ||Sc_c||^2 - ||s||^2 + 4 sum_c n_c Sc_c.m - 2N s.m - k sum(Y),
      ||K~||_F^2 = ||G||_F^2 + 4 m^T G s + 2N m^T G m + 2 (s.m)^2 - k^2 N^2,
      ||Y~||_F^2 = N^2 - sum(Y)^2 / N^2,  sum(Y) = 2 sum_c n_c^2 - N^2   (exact integers).
    O(N D min(N, D)) time, min(N, D)^2 memory (one blocked pass for N > D); no subsampling (Model Spider
    subsamples 45k, unseeded).

    Inputs: features (N, D), class labels (N,). Higher is better. Invariant to a global feature scale.
    """
    x = unit_scaled(as_features(features, upcast=False))  # float32 stays float32: centred block by block
    codes, n_classes = as_class_labels(labels, x.shape[0])
    n, d = x.shape
    # K~ = 0 exactly when every row is the same (f_i . f_j = ||f_i||^2 for all i, j forces equal rows).
    if not has_distinct_rows(x):
        raise InvalidInputError("the feature Gram matrix is constant (e.g. all-zero features): LFC is undefined")
    mean = x.mean(axis=0, dtype=np.float64)
    if n > d:
        lower, sums_t = gram_and_cross(x, OneHotCross(codes, n_classes), shift=mean)
        scatter = symmetric_from_lower(lower)  # G = Fc^T Fc
        centred_sums = sums_t.T
    else:
        centred = x - mean
        scatter = centred.T @ centred if d <= n else None
        centred_sums = class_sums(centred, codes, n_classes)
    total = centred_sums.sum(axis=0)  # s
    if scatter is None:  # N < D: ||G||_F = ||Fc Fc^T||_F and the G products through Fc
        gram_norm2 = float(((centred @ centred.T) ** 2).sum())
        a = centred @ mean
        mean_g_total, mean_g_mean = float(a @ (centred @ total)), float(a @ a)
    else:
        gram_norm2 = float((scatter**2).sum())
        g_mean = scatter @ mean
        mean_g_total, mean_g_mean = float(g_mean @ total), float(g_mean @ mean)
    counts = np.bincount(codes, minlength=n_classes)
    sum_y = 2 * int((counts.astype(object) ** 2).sum()) - n * n
    total_mean, total2 = float(total @ mean), float(total @ total)
    kappa = (total2 + 2 * n * total_mean) / n**2
    inner_ky = (2 * float((centred_sums**2).sum()) - total2 + 4 * float(counts @ (centred_sums @ mean))
                - 2 * n * total_mean - kappa * sum_y)  # fmt: skip
    norm_k2 = gram_norm2 + 4 * mean_g_total + 2 * n * mean_g_mean + 2 * total_mean**2 - kappa**2 * n**2
    norm_y2 = (n**4 - sum_y**2) / n**2  # exact integers up to the one division
    return float(inner_ky / np.sqrt(norm_k2 * norm_y2))
