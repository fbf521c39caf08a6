"""LEEP (Nguyen et al. 2020), NCE (Tran et al. 2019) and N-LEEP (Li et al. 2021)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_array, as_class_labels, as_features, as_probs, checked_probs, small_integer_codes
from ._linalg import (class_blocks, class_pieces, largest_magnitude, one_blas_thread_if_small, pca_project,
                      seeded_subsample)
from .base import NotConvergedWarning, SaturationWarning, caller_stacklevel, named_preset, register_metric


def class_codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """``as_class_labels`` of labels that set the number of samples themselves."""
    y = as_array(labels, "labels")
    return as_class_labels(y, y.shape[0] if y.ndim else 0)


def probs_and_codes(source_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated (N, Z) source probabilities, 0..C-1 label codes and C."""
    y = as_array(labels, "labels")
    probs = as_probs(source_probs, y.shape[0] if y.ndim else 0)
    codes, n_classes = as_class_labels(y, probs.shape[0])
    return probs, codes, n_classes


def leep_from_probs(probs: np.ndarray, codes: np.ndarray, n_classes: int, name: str = "source_probs") -> float:
    """LEEP on (N, Z) probabilities (checked here, as ``as_probs`` does, and renormalised inside the sums) and
    0..C-1 label codes (shared by LEEP and N-LEEP).

    Two passes over the probabilities. The checks' pass (``checked_probs``) also sums P(z) = 1/N sum_i theta_z(x_i)
    over its row blocks. The second goes class by class: each class's rows are gathered once (``class_pieces``) for
    P(y | z) = P(y, z) / P(z) and for the class's EEP_i = sum_z P(y_i | z) theta_z(x_i), a row-wise dot with one
    row of P(y | z): O(N Z) in all (the full (N, Z) x (Z, C) product would cost C times more). Every row enters as
    theta(x_i) / (its sum), the renormalisation of ``as_probs``."""
    block_marginals = []  # N P(z) of each row block

    def add_to_marginal(rows: slice, block: np.ndarray, row_sums: np.ndarray) -> None:
        block_marginals.append((1 / row_sums) @ block)

    probs, sums, _ = checked_probs(probs, codes.shape[0], name, also=add_to_marginal)
    n_sources, marginal = probs.shape[1], np.sum(block_marginals, axis=0)
    # A source class z that never receives probability mass contributes 0 to every sum: keep P(y|z) = 0.
    inverse_marginal = np.divide(1.0, marginal, out=np.zeros(n_sources), where=marginal > 0)
    eep = np.empty(codes.shape[0])
    for pieces in class_pieces(codes, n_classes, n_sources):
        blocks, weights = class_blocks(probs, pieces), [1 / sums[rows] for rows in pieces]
        conditional = sum(w @ block for w, block in zip(weights, blocks())) * inverse_marginal  # P(y | z)
        for rows, w, block in zip(pieces, weights, blocks()):
            eep[rows] = (block @ conditional) * w
    return float(np.log(np.maximum(eep, np.finfo(np.float64).tiny)).mean())


#: LEEP and N-LEEP are <= 0 and reach 0 when the (source or mixture) posteriors predict the labels perfectly; there
#: each log EEP_i is rounding noise of a few 1e-16 (N-LEEP even comes out at +2e-17), and the same posteriors with
#: their columns or rows reordered scored -4.8e-16 and -3.8e-16: scores within 1e-12 are ties, not a ranking.
TIE_ATOL = 1e-12


@register_metric(
    "leep",
    needs=("source_probs", "labels"),
    tie_atol=TIE_ATOL,
    reference="Nguyen et al., LEEP: A New Measure to Evaluate Transferability of Learned Representations, ICML 2020",
)
def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Log Expected Empirical Prediction.

    P(y, z) = 1/N sum_i theta(x_i)_z [y_i = y];  P(y | z) = P(y, z) / P(z);
    LEEP = 1/N sum_i log sum_z P(y_i | z) theta(x_i)_z.

    Inputs: source_probs (N, Z): softmax of the model's own source head; class labels (N,).
    Higher (closer to 0) is better. No epsilon is added (Model Spider adds 1e-10): every EEP_i is > 0 when
    theta(x_i) is a distribution, since sample i's own mass enters P(y_i, z).
    """
    codes, n_classes = class_codes(labels)
    return leep_from_probs(source_probs, codes, n_classes)


@register_metric(
    "nce",
    needs=("source_probs", "labels"),
    reference="Tran et al., Transferability and Hardness of Supervised Classification Tasks, ICCV 2019",
)
def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Negative Conditional Entropy of the target labels given the source model's hard predictions.

    z_i = argmax_z theta(x_i)_z;  P(y, z) = 1/N #{i: y_i = y, z_i = z};
    NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) ), over the (y, z) pairs that occur
    (source classes never predicted are masked, as are empty cells: 0 log 0 = 0).

    Inputs: source_probs (N, Z) (only the argmax is used; it is checked like LEEP's); class labels (N,). Higher
    (closer to 0) is better. ``nce_from_source_labels`` takes the argmax itself, when it was computed elsewhere.
    """
    codes, n_classes = class_codes(labels)
    predicted = np.empty(codes.shape[0], dtype=np.intp)

    def take_argmax(rows: slice, block: np.ndarray, row_sums: np.ndarray) -> None:
        block.argmax(axis=1, out=predicted[rows])

    checked_probs(source_probs, codes.shape[0], also=take_argmax)
    return _nce_of_predictions(predicted, codes, n_classes)


def nce_from_source_labels(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE given the source model's hard predictions z_i (``nce`` of probabilities whose argmax they are).

    Inputs: source_labels (N,): integer source classes, e.g. the argmax of the source head computed elsewhere (the
    input of tllib's ``nce``); class labels (N,). O(N): no (N, Z) array is read. Not a registered metric: feature
    sets carry the source probabilities, which ``nce`` takes.
    """
    z = as_array(source_labels, "source_labels")
    if z.ndim != 1 or z.dtype.kind not in "iu":
        raise InvalidInputError(f"source_labels must be a 1-D array of integer source classes (the argmax of the "
                                f"source head), got shape {z.shape} and dtype {z.dtype}")
    y = as_array(labels, "labels")
    if y.shape[:1] != z.shape:
        raise InvalidInputError(f"{z.shape[0]} source_labels for {y.shape[0] if y.ndim else 0} labels")
    codes, n_classes = as_class_labels(y, z.shape[0])
    return _nce_of_predictions(z, codes, n_classes)


def _nce_of_predictions(source_labels: np.ndarray, codes: np.ndarray, n_classes: int) -> float:
    """NCE of (N,) source predictions (any integers) and 0..C-1 label codes, from the counts of the (z, y) pairs:
    sum_{z, y} n_zy / N log(n_zy / n_z) = 1/N sum_i log(n_{z_i y_i} / n_{z_i}), a mean over the samples (gathers of
    N counts cost less than finding the pairs that occur among the Z C cells)."""
    _, predicted = small_integer_codes(source_labels) or np.unique(source_labels, return_inverse=True)
    pairs = predicted * n_classes + codes  # only the predicted source classes: at most N C cells
    return float(np.log(np.bincount(pairs)[pairs] / np.bincount(predicted)[predicted]).mean())


@dataclass(frozen=True)
class NleepSettings:
    """One public N-LEEP implementation's choices (``nleep(..., preset=...)``); ``components(N, C)`` is its
    number of mixture components."""

    pca_variance: float | None
    components: Callable[[int, int], int]
    seed: int

    def parameters(self, n: int, n_classes: int) -> dict[str, object]:
        """The ``nleep`` keyword arguments this preset amounts to on N samples of C classes."""
        return {"pca_variance": self.pca_variance, "max_pca_dims": None, "n_components": self.components(n, n_classes),
                "covariance_type": "full", "max_fit_samples": None, "seed": self.seed}  # fmt: skip


#: "model_spider": Model Spider ``mptms/LEEP.py::NLEEP`` (the pactran_metrics / EMMS lineage): PCA keeping 80% of
#: the variance, K = max(min(C, 0.2 N), 0.1 N) full-covariance components, ``np.random.seed(0)``;
#: "stable_transfer": google stable_transfer ``nleep.py``: no PCA, K = 5 C full-covariance components,
#: random_state 123. Both fit on every sample with sklearn's defaults (100 EM steps).
NLEEP_PRESETS = {
    "model_spider": NleepSettings(0.8, lambda n, c: int(max(min(c, 0.2 * n), 0.1 * n)), 0),
    "stable_transfer": NleepSettings(None, lambda n, c: 5 * c, 123),
}


#: sklearn GaussianMixture's covariance types
COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")


@register_metric(
    "nleep",
    tie_atol=TIE_ATOL,
    reference="Li et al., Ranking Neural Checkpoints, CVPR 2021",
    choices={"covariance_type": COVARIANCE_TYPES, "preset": NLEEP_PRESETS},
    ranges={"pca_variance": "(0, 1]", "max_fit_samples": "[2, inf)"},
)
def nleep(
    features: np.ndarray,
    labels: np.ndarray,
    pca_variance: float | None = 0.8,
    max_pca_dims: int | None = 128,
    components_per_class: int = 5,
    n_components: int | None = None,
    covariance_type: str = "diag",
    max_fit_samples: int | None = 10_000,
    max_iter: int = 100,
    seed: int = 0,
    preset: str | None = None,
) -> float:
    """N-LEEP: LEEP with the source head replaced by the posteriors of a Gaussian mixture on the features.

    1. PCA keeping ``pca_variance`` of the variance (at most ``max_pca_dims`` axes).
    2. Fit a GaussianMixture with K components (``covariance_type``, ``random_state=seed``) on at most
       ``max_fit_samples`` samples drawn with ``seed``; K = ``n_components`` if given, else
       ``components_per_class * C``, capped at (fit samples) / 10 so each component sees ~10 samples.
    3. theta(x_i) = GMM posterior p(k | x_i) for ALL N samples; N-LEEP = LEEP(theta, y).

    The default is OUR choice and matches no published number: the paper's / google stable_transfer's 5·C
    components with SFDA's PCA-80% step, and, so that N = 50k finishes, diagonal covariances (the references use
    sklearn's "full"), <= 128 PCA axes and a seeded fit subsample. The public codes disagree with each other
    (SFDA/PED/NCTI/ETran: 5·C, 1·C for food and pets, and drop the log; Model Spider / pactran_metrics:
    K = max(min(C, 0.2 N), 0.1 N), i.e. 0.1·N for large N; google: no PCA). ``preset="model_spider"`` or
    ``"stable_transfer"`` reproduces those codes' numbers (see ``NLEEP_PRESETS``; full covariances on all samples,
    so slow beyond a few thousand samples); a preset replaces the PCA, component, covariance, subsample and seed
    parameters.

    Inputs: features (N, D), class labels (N,). Higher (closer to 0) is better. Deterministic given ``seed``
    and the order of the samples (the mixture's initialisation and fit subsample draw positions).
    """
    x = as_features(features)
    codes, n_classes = as_class_labels(labels, x.shape[0])
    if preset is not None:
        settings = named_preset("nleep", preset, NLEEP_PRESETS, {
            "pca_variance": pca_variance != 0.8, "max_pca_dims": max_pca_dims != 128,
            "components_per_class": components_per_class != 5, "n_components": n_components is not None,
            "covariance_type": covariance_type != "diag", "max_fit_samples": max_fit_samples != 10_000,
            "seed": seed != 0,
        })  # fmt: skip
        chosen = settings.parameters(x.shape[0], n_classes)
        pca_variance, max_pca_dims, n_components = chosen["pca_variance"], chosen["max_pca_dims"], chosen["n_components"]
        covariance_type, max_fit_samples, seed = chosen["covariance_type"], chosen["max_fit_samples"], chosen["seed"]
    reduced = x if pca_variance is None and max_pca_dims is None else pca_project(x, pca_variance, max_pca_dims)
    fit_rows = seeded_subsample(reduced.shape[0], max_fit_samples, seed)
    fit_set = reduced if fit_rows is None else reduced[fit_rows]
    k = n_components if n_components is not None else components_per_class * n_classes
    k = max(1, min(k, fit_set.shape[0] // 10 if n_components is None else fit_set.shape[0]))
    # EM's steps are many small operations: on threaded BLAS they took 22x longer on 2 busy cores (200 x 1280
    # features, 10 classes: 2.46 s vs 0.11 s; 1.8x at 5000 x 2048, 50 classes), with the same posteriors.
    with one_blas_thread_if_small(reduced.shape[0] * reduced.shape[1] * k):
        gmm = _fit_mixture(fit_set, k, covariance_type, max_iter, seed)
        posteriors = gmm.predict_proba(reduced)
    score = leep_from_probs(posteriors, codes, n_classes, name="mixture posteriors")
    if -score < TIE_ATOL:  # e.g. n_components near the number of samples: a component per sample, on noise too
        warnings.warn(f"N-LEEP = {score:.3g}: the {gmm.n_components} mixture components (for {fit_set.shape[0]} fit "
                      "samples) each hold samples of one class only, so N-LEEP saturates at 0, its maximum, whatever "
                      "the features; use fewer components", SaturationWarning, stacklevel=caller_stacklevel())
    return score


def _fit_mixture(fit_set: np.ndarray, k: int, covariance_type: str, max_iter: int, seed: int):
    """The fitted GaussianMixture. sklearn's ConvergenceWarnings become modelrank's: with fewer distinct rows than
    components (repeated samples) the mixture is refitted with one component per distinct row (the surplus ones
    only duplicated others, splitting their posteriors); EM stopped at ``max_iter`` is a ``NotConvergedWarning``,
    which flags the score."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture  # seconds to import: only when N-LEEP runs

    def fit(components: int) -> tuple[GaussianMixture, bool]:  # and whether sklearn warned of convergence
        gmm = GaussianMixture(n_components=components, covariance_type=covariance_type, max_iter=max_iter,
                              random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                gmm.fit(fit_set)
            except ValueError as err:
                # sklearn's "ill-defined empirical covariance": at large magnitudes (sparse features beyond ~1e6) its
                # variances lose reg_covar (1e-6) to rounding and a component's covariance is not positive definite.
                # It escaped as a crash (exit 1) of the command.
                reason = str(err).split(". ")[0]
                raise InvalidInputError(f"N-LEEP: the Gaussian mixture could not be fitted ({reason}); the features "
                                        f"reach {largest_magnitude(fit_set):.3g}: standardise them") from None
        for other in (w for w in caught if not issubclass(w.category, ConvergenceWarning)):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        return gmm, any(issubclass(w.category, ConvergenceWarning) for w in caught)

    gmm, warned = fit(k)
    if warned:
        distinct = len(np.unique(fit_set, axis=0))
        if distinct < k:
            gmm, _ = fit(distinct)
    if not gmm.converged_:
        warnings.warn(f"N-LEEP: the Gaussian mixture's EM had not converged after max_iter={max_iter} steps "
                      f"(tolerance {gmm.tol:g})", NotConvergedWarning, stacklevel=caller_stacklevel())
    return gmm
