"""NCTI: Neural Collapse inspired Transferability Index (Wang et al., ICCV 2023)."""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from ..errors import InvalidInputError
from ..features import FeatureSet
from ._checks import as_class_labels, as_features
from ._lda import (
    discriminant_directions,
    lda_log_proba,
    require_within_class_scatter,
    shrink,
    total_scatter,
    warn_if_singular_scatter,
    within_scatter,
)
from ._linalg import class_means, class_members, pca_project, unit_scaling
from .base import DEFAULT_RTOL, SaturationWarning, caller_stacklevel, register_metric

DEFAULT_PCA_DIM = 64
#: The shrinkage is exp(-sum of the top SHRINKAGE_COMPONENTS explained variances), floored like SFDA's.
SHRINKAGE_COMPONENTS = 32
SHRINKAGE_FLOOR = 1e-10
MIN_ZOO_SIZE = 3


def _nuclear_norm(a: np.ndarray) -> float:
    """Sum of singular values, by LAPACK's SVD of ``a`` itself: square roots of the Gram matrix's eigenvalues lose
    half the digits of the small ones (each off by ~sqrt(eps) of the largest), which moved the terms by up to
    8e-10 (relative) when the samples were reordered, close to NCTI's 1e-9 tie tolerance."""
    return float(np.linalg.svd(a, compute_uv=False).sum())


def ncti_terms(features: np.ndarray, labels: np.ndarray, *, pca_dim: int = DEFAULT_PCA_DIM) -> tuple[float, float, float]:
    """The three raw NCTI terms (S_seli, S_ncc, S_vc) of one model; combine across a zoo with ``ncti``.

    Features are projected on their top ``pca_dim`` principal axes (exact PCA; float32 features get float32
    products in the scatter matrix and the projection, as LogME: the terms within ~1e-7 of the all-float64 ones),
    then a Fisher LDA is fitted with shrinkage a = max(exp(-sum of the top-32 explained variances), 1e-10)
    (S_w -> (1-a) S_w + a tr(S_w)/D I):
    * S_seli = ||Z - mean(Z)||_* with Z the projection on the top C-1 discriminant directions (within-class
      variability collapse seen through the class-separating subspace);
    * S_ncc = (1/N) sum_i p(y_i|x_i) of the LDA (nearest-centre classifier);
    * S_vc = log sum_c ||P_c||_*, P_c the LDA probability rows of class c (class-simplex compactness).
    When N - C is below the PCA dimension the LDA overfits (S_seli explodes, S_ncc saturates): a warning says so.
    The public code switches to sklearn's unshrunk ``svd`` LDA solver when a hits the floor; with scikit-learn >=
    1.2 that solver also normalises S_w by N (not N - C), so it fits the same LDA as the eigen solver with the
    1e-10 floor used here, except that it drops within-class directions below its rank tolerance (1e-4).
    """
    # float32 stays float32: pca_project converts row blocks. Features beyond 2**+-60 are scaled by a power of two
    # (the terms depend on the scale only through the shrinkage, given the exponent): from 1e-170 S_w underflowed.
    x, exponent = unit_scaling(as_features(features, upcast=False))
    y, n_classes = as_class_labels(labels, x.shape[0])
    require_within_class_scatter(x, y, n_classes)
    projected = pca_project(x, n_dims=pca_dim)
    warn_if_singular_scatter("NCTI", len(y), n_classes, projected.shape[1])
    explained_variances = np.ldexp(projected.var(axis=0, ddof=1), 2 * exponent)  # the PCA eigenvalues, decreasing
    shrinkage = max(float(np.exp(-explained_variances[:SHRINKAGE_COMPONENTS].sum())), SHRINKAGE_FLOOR)
    means, counts = class_means(projected, y, n_classes)
    sw = shrink(within_scatter(projected, y, means), shrinkage)
    log_proba = lda_log_proba(projected, means, counts / len(y), sw)
    sb = shrink(total_scatter(projected), shrinkage) - sw
    directions = discriminant_directions(sb, sw)[:, : min(n_classes - 1, projected.shape[1])]
    discriminant = projected @ directions
    seli = _nuclear_norm(discriminant - discriminant.mean(axis=0))
    proba = np.exp(log_proba)
    ncc = float(proba[np.arange(len(y)), y].mean())
    vc = float(np.log(sum(_nuclear_norm(proba[rows]) for rows in class_members(y, n_classes))))
    return seli, ncc, vc


#: Relative precision of the terms of float32 (or float16) features, whose PCA runs on float32 products (the same
#: features with their columns reordered give terms ~1e-8 apart): a smaller spread across the zoo is a tie.
FLOAT32_TERMS_RTOL = 1e-6


def min_max(values: np.ndarray, rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """(v - min) / (max - min) across the zoo; all zeros when every model has the same value within numerical
    precision (a spread of at most ``rtol`` times the largest magnitude): stretching rounding noise to [0, 1] would
    turn it into a ranking."""
    spread = values.max() - values.min()
    if spread <= rtol * np.abs(values).max():
        return np.zeros_like(values)
    return (values - values.min()) / spread


@register_metric(
    "ncti",
    zoo_level=True,
    reference="Wang et al., How Far Pre-trained Models Are from Neural Collapse on the Target Dataset Informs "
    "their Transferability, ICCV 2023",
)
def ncti(zoo: Mapping[str, FeatureSet], *, pca_dim: int = DEFAULT_PCA_DIM) -> dict[str, float]:
    """NCTI = minmax(S_ncc) + minmax(S_seli) - minmax(S_vc), min-max taken across the models of the zoo.

    ``zoo``: {model name: FeatureSet} of several models on the SAME target samples (labels must agree).
    Scores are zoo-relative: adding or removing a model changes every score. Needs >= 3 models (with 2 the
    min-max maps every term to {0, 1}). Higher is better; scores lie in [-1, 2]. A term that is the same for every
    model within numerical precision (1e-9 relative; 1e-6 when some model's features are float32, see
    ``ncti_terms``) adds 0 to every score (``min_max``); when all three are, every score is 0 and a
    ``SaturationWarning`` says so.
    """
    # a list of FeatureSets or {name: features array} raised a TypeError or AttributeError below
    if not isinstance(zoo, Mapping) or not all(isinstance(fs, FeatureSet) for fs in zoo.values()):
        raise InvalidInputError("NCTI takes a zoo {model name: FeatureSet}, e.g. {fs.model: fs for fs in feature_sets}")
    if len(zoo) < MIN_ZOO_SIZE:
        raise InvalidInputError(f"NCTI is zoo-relative and needs at least {MIN_ZOO_SIZE} models, got {len(zoo)}")
    names = list(zoo)
    first = np.asarray(zoo[names[0]].labels)
    for name in names[1:]:
        other = np.asarray(zoo[name].labels)
        if other.shape != first.shape or not np.array_equal(other, first):
            raise InvalidInputError(f"NCTI compares models on the same samples: labels of {name} differ from {names[0]}")
    terms = np.array([ncti_terms(zoo[name].features, zoo[name].labels, pca_dim=pca_dim) for name in names])
    single_precision = any(np.asarray(zoo[name].features).dtype in (np.float16, np.float32) for name in names)
    rtol = FLOAT32_TERMS_RTOL if single_precision else DEFAULT_RTOL
    seli, ncc, vc = (min_max(term, rtol) for term in terms.T)
    scores = ncc + seli - vc
    if not (ncc.any() or seli.any() or vc.any()):
        warnings.warn(f"NCTI: every term is the same for all {len(names)} models within numerical precision, so "
                      "every score is 0 and the zoo has no ranking", SaturationWarning, stacklevel=caller_stacklevel())
    return {name: float(score) for name, score in zip(names, scores)}
