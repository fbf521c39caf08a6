"""PARC: Pairwise Annotation Representation Comparison (Bolya et al., NeurIPS 2021)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, as_targets, require_memory
from ._linalg import pca_project, seeded_subsample, unit_scaled
from .base import register_metric

#: The paper scores every model on fixed probe sets of 500 target images; PARC costs O(n^2) time and memory.
DEFAULT_MAX_SAMPLES = 500
DEFAULT_PCA_DIM = 32
#: Peak bytes per pair of samples (traced at n = 1000-3000): the two RDMs, their upper triangles and the indices;
#: a real-valued target side adds scipy's Spearman ranks.
BYTES_PER_PAIR = {"classification": 40, "regression": 104}


def fix_component_signs(x: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """Flip each principal component so that its largest-magnitude loading is positive (sklearn's convention).

    PARC is NOT invariant to these signs: correlations between samples are taken across the components, so
    flipping one changes every row mean. Fixing the convention makes the score deterministic. It equals the
    reference code's score only where that code's PCA is exact (it uses randomized PCA with one power iteration,
    whose axes differ slightly) and its scikit-learn (>= 1.5) applies this same sign rule to the loadings.
    """
    # Each column of (X - 1 m^T)^T P is proportional to a principal axis; X^T P - m (1^T P) is the same product
    # without a centred copy of X.
    loadings = x.T @ projected - np.outer(x.mean(axis=0, dtype=np.float64), projected.sum(axis=0))
    biggest = loadings[np.argmax(np.abs(loadings), axis=0), np.arange(loadings.shape[1])]
    return projected * np.where(biggest < 0, -1.0, 1.0)


#: RDM entries are rounded to this many decimals (the reference's label side does the same): 1 - r is exactly 0
#: for duplicated rows and exactly 0 or 2 for rows of two entries, and the rounding noise of ``np.corrcoef``
#: (~1e-16) would break those ties at random, moving PARC by up to 1.6 (of 100) under a permutation of the samples.
RDM_DECIMALS = 12


def dissimilarity_matrix(rows: np.ndarray, what: str = "features") -> np.ndarray:
    """RDM = 1 - corrcoef(rows): (n, n) one minus the Pearson correlation between samples, to ``RDM_DECIMALS``.
    ``what`` the rows are ("features" or "targets") names the culprit when a correlation is undefined."""
    constant = 0 if rows.shape[1] < 2 else int((rows.std(axis=1) == 0).sum())
    if what == "targets" and constant:  # a row of equal values, e.g. (0.3, 0.3), has no correlation
        raise InvalidInputError(f"PARC correlates the target rows, so each needs values that are not all equal; "
                                f"{constant} of {rows.shape[0]} rows are constant")
    if rows.shape[1] < 2 or constant:
        raise InvalidInputError("PARC needs rows with >= 2 non-constant entries (constant features?)")
    rdm = 1.0 - np.corrcoef(rows)
    return np.round(rdm, RDM_DECIMALS, out=rdm)


def rank_correlation_with_indicator(values: np.ndarray, indicator: np.ndarray) -> float:
    """Spearman's rho between ``values`` and a two-valued variable, given as a boolean ``indicator`` (True for
    its larger value); NaN when either side is constant.

    The two-valued side's average ranks are an increasing affine function of the indicator, so rho is the
    Pearson correlation r(R, b) of the values' average ranks R (ties share their mean rank, as
    ``scipy.stats.rankdata``) with b. With M values, k of them in the smaller group G:
    cov(R, b) = +-(sum_G R - k (M + 1) / 2) / M, var(R) = (M^2 - 1) / 12 - sum_ties (t^3 - t) / (12 M) and
    var(b) = k (M - k) / M^2. One sort of the values; the ranks of G alone are looked up in it (a value's average
    rank is (#smaller + #smaller-or-equal + 1) / 2), so no argsort of all M values is needed.
    """
    m = values.size
    positives = int(np.count_nonzero(indicator))
    smaller_is_positive = positives <= m - positives
    group = values[indicator] if smaller_is_positive else values[~indicator]
    k = group.size
    ordered = np.sort(values)
    twice_rank_sum = int(np.searchsorted(ordered, group, "left").sum()) + int(
        np.searchsorted(ordered, group, "right").sum()) + k  # fmt: skip
    twice_covariance = twice_rank_sum - k * (m + 1)  # 2 M cov(R, b) up to the sign, an exact integer
    if not smaller_is_positive:
        twice_covariance = -twice_covariance
    tie_starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ties = np.diff(np.append(tie_starts, m)).astype(np.float64)
    rank_variance = (m * m - 1.0) / 12.0 - float((ties**3 - ties).sum()) / (12.0 * m)
    indicator_variance = k * (m - k) / (float(m) * m)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant side: NaN, for the caller to refuse
        return float(np.float64(twice_covariance) / (2.0 * m) / np.sqrt(rank_variance * indicator_variance))


@register_metric(
    "parc",
    needs=("features", "labels", "task"),
    tasks=("classification", "regression"),
    reference="Bolya et al., Scalable Diverse Model Selection for Accessible Transfer Learning, NeurIPS 2021",
    # a sample's correlation across one component is undefined; one sample holds one class
    ranges={"pca_dim": "[2, inf)", "max_samples": "[2, inf)"},
)
def parc(features: np.ndarray, labels: np.ndarray, task: str = "classification", *, pca_dim: int = DEFAULT_PCA_DIM,
         max_samples: int | None = DEFAULT_MAX_SAMPLES, seed: int = 0) -> float:
    """PARC = 100 * Spearman( triu(RDM_f), triu(RDM_y) ).

    f: the features projected on their top ``pca_dim`` principal axes (exact PCA; the reference uses randomized
    PCA with one power iteration; signs as sklearn's, see ``fix_component_signs``), then standardised per
    dimension; RDM_f = 1 - corrcoef(f) over samples.
    ``task="classification"``: RDM_y = 1 - corrcoef(one-hot labels) (evaluated exactly); ``task="regression"``:
    1 - corrcoef(target rows) for vector targets (N, K) and |y_i - y_j| for scalar targets (N,) (the reference
    code cannot handle scalar targets). The task is the one given, never guessed: integer-valued regression
    targets are targets, not classes. Higher is better.

    PARC is O(n^2) in time and memory, so at most ``max_samples`` samples (default 500, the paper's probe-set
    size) are drawn uniformly without replacement with ``seed``; ``max_samples=None`` uses every sample.
    """
    x = as_features(features, upcast=False)  # float32 stays float32 until the subsample is drawn
    n = x.shape[0]
    if task not in ("classification", "regression"):
        raise InvalidInputError(f"PARC supports classification and regression, not {task!r}")
    regression = task == "regression"
    y = as_targets(labels, n) if regression else as_class_labels(labels, n)[0]
    keep = seeded_subsample(n, max_samples, seed)
    if keep is not None:
        x, y = x[keep], y[keep]
    require_memory(BYTES_PER_PAIR[task] * float(len(y)) ** 2, f"PARC on {len(y)} samples (O(n^2))",
                   f"lower parc.max_samples (default {DEFAULT_MAX_SAMPLES})")
    x = unit_scaled(np.asarray(x, dtype=np.float64))  # scale-invariant: only the drawn rows are rescaled
    if regression:
        rdm_y = np.abs(y - y.T) if y.shape[1] == 1 else dissimilarity_matrix(y, "targets")
    else:
        classes, y = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InvalidInputError("the PARC subsample holds a single class; raise max_samples")
        # 1 - corrcoef of one-hot rows is exactly 0 (same class) or C/(C-1); computing it in floating point
        # breaks these ties at random and so changes the Spearman ranks. Spearman's rho against this two-valued
        # RDM is that of the different-class indicator (``rank_correlation_with_indicator``).
        rdm_y = None
        different_class = y[:, None] != y[None, :]
    projected = fix_component_signs(x, pca_project(x, n_dims=pca_dim))
    std = projected.std(axis=0)
    if projected.shape[1] == 1 and std[0] > 0:  # a sample's correlation across one component is undefined
        raise InvalidInputError(f"PARC needs features that vary along at least 2 principal axes; these vary along 1 "
                                f"({x.shape[0]} samples, {x.shape[1]} dimensions)")
    standardised = (projected - projected.mean(axis=0)) / np.where(std > 0, std, 1.0)
    rdm_f = dissimilarity_matrix(standardised)
    upper = np.triu_indices(len(y), k=1)
    if rdm_y is None:
        rho = rank_correlation_with_indicator(rdm_f[upper], different_class[upper])
    else:
        from scipy.stats import spearmanr  # scipy.stats takes about a second to import: only when it is needed

        pairs_f, pairs_y = rdm_f[upper], rdm_y[upper]
        # A constant side has no rank correlation: refused below, without scipy's ConstantInputWarning first.
        constant = pairs_f.min() == pairs_f.max() or pairs_y.min() == pairs_y.max()
        rho = np.nan if constant else spearmanr(pairs_f, pairs_y).statistic
    if not np.isfinite(rho):
        raise InvalidInputError("PARC is undefined: one of the dissimilarity matrices is constant")
    return float(100.0 * rho)
