"""LogME (You et al. 2021): the maximum evidence of a Bayesian linear head on the features."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features, as_targets
from ._linalg import (
    CrossProduct,
    OneHotCross,
    eigh_projections,
    gram_and_cross,
    has_distinct_rows,
    rank_cutoff,
    sample_spectrum,
    unit_scaled,
)
from .base import (Interval, NotConvergedWarning, SaturationWarning, caller_stacklevel, named_preset,
                   register_metric)


#: Features beyond this magnitude (~1.8e72) are scaled down by a power of two first (``unit_scaled``, exact): from
#: ~1e76 the fixed point overflowed and returned a number far off (-14.2 for -0.508, flagged as interpolation).
#: Below it the evidence of N > D features does not depend on their scale (to ~1e-12), so nothing changes there.
#: Tiny features are raised only to this bound's inverse: from the reference's start alpha = beta = 1 they need
#: more than 11 iterations, which the not-converged warning reports, and score alike at every scale below ~1e-30;
#: left as they were, their squares underflowed from ~1e-170 ("evidence is not finite ... degenerate spectrum").
LOGME_SCALE_BOUND = 2.0**240

#: Lower bound of ||m||^2 and ||y - Fm||^2 (relative to ||y||^2) and of N - gamma (relative to N) in the
#: fixed point; see ``max_evidence``.
DEGENERATE_FLOOR = 1e-12


def feature_spectrum(x: np.ndarray, cross: CrossProduct) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values s_i^2 of F (numerical zeros dropped) and the projections U^T Y, shape (r, K).

    ``cross(M, rows)`` returns M^T Y[rows] for a (len(rows), k) matrix M (class sums when Y is one-hot).
    N > D: eigendecomposition of F^T F = V S^2 V^T, with F^T F and F^T Y accumulated in one blocked pass
    (``gram_and_cross``, float64 products also for float32 F), then
    U^T Y = S^-1 V^T F^T Y (the truncated SVD) without forming V (``eigh_projections``); N <= D:
    eigendecomposition of F F^T = U S^2 U^T. Cost O(N D min(N, D)), memory min(N, D)^2 plus one row block.
    Features dominated by a common offset (``OFFSET_DOMINANCE``) take the singular values of F instead, whose
    rounding is eps times the largest singular value, not its square (``offset_basis``; N <= D: an SVD of F).
    """
    n, d = x.shape
    if n > d:
        gram, cross_sum, mean = gram_cross_and_mean(x, cross)
        if not offset_dominated(np.diagonal(gram).sum(), n, mean):
            sigma, rotated = eigh_projections(gram, cross_sum)
            keep = sigma > rank_cutoff(sigma, max(n, d))
            sigma = sigma[keep]
            return sigma, rotated[keep] / np.sqrt(sigma)[:, None]
        sigma, basis_t, f_y = offset_basis(x, cross, mean)
        return sigma, (basis_t @ f_y) / np.sqrt(sigma)[:, None]
    x = x.astype(np.float64, copy=False)
    if not offset_dominated(np.einsum("ij,ij->", x, x), n, x.mean(axis=0)):
        sigma, u = sample_spectrum(x)
        return sigma, cross(u, slice(None))
    u, singular, _ = np.linalg.svd(x, full_matrices=False)
    keep = singular > rank_cutoff(singular, max(n, d))
    return singular[keep] ** 2, cross(u[:, keep], slice(None))


#: Features whose sum of squares is more than this many times their spread's (a common offset ~10 times the
#: spread) lose the spread's small eigenvalues in F^T F's rounding (LogME off by 2e-7 at 100 times, 2e-5 at 1000
#: times, 2000 x 256 features): ``feature_spectrum`` then takes the singular values of F.
OFFSET_DOMINANCE = 100.0


def summing(cross: CrossProduct, sums: np.ndarray) -> CrossProduct:
    """``cross`` that also adds the column sums of each row block it is given into ``sums``, while the block is in
    cache: the sums of F come from the pass that forms its Gram matrix, not from another pass over F."""

    def cross_and_sums(block: np.ndarray, rows: slice) -> np.ndarray:
        sums[:] += np.ones(block.shape[0]) @ block
        return cross(block, rows)

    return cross_and_sums


def gram_cross_and_mean(x: np.ndarray, cross: CrossProduct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gram_and_cross(x, cross)`` and the float64 column means of ``x``, from one pass over it."""
    sums = np.zeros(x.shape[1])
    gram, cross_sum = gram_and_cross(x, summing(cross, sums))
    return gram, cross_sum, sums / x.shape[0]


def offset_dominated(sum_of_squares: float, n: int, mean: np.ndarray) -> bool:
    """Whether the features' sum of squares is mostly their mean's: ||F||^2 = ||F - 1 m^T||^2 + N ||m||^2."""
    return bool(sum_of_squares - n * float(mean @ mean) < sum_of_squares / OFFSET_DOMINANCE)


def offset_basis(x: np.ndarray, cross: CrossProduct, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s_i^2, V^T, F^T Y) for N > D features dominated by a common offset m: the squared singular values of F
    (numerical zeros dropped), its right singular vectors as rows (r, D), and F^T Y (D, K). F^T F rounds the
    spread's eigenvalues away (eps * N ||m||^2 each: a 1e6 offset moved LogME by 2%, a 1e9 one left rank 1), so
    they come from an SVD of the (D + 1) x D matrix K with K^T K = F^T F built from the centred scatter.
    Fc = F - 1 m^T rounds only at the spread's scale and s = Fc^T 1 is the rounding of the mean, so
    F^T F = (Fc^T Fc - s s^T / N) + N m' m'^T with m' = m + s / N, and F^T Y = Fc^T Y + m 1^T Y."""
    n = x.shape[0]
    sums = np.zeros(x.shape[1])
    lower, centred_y = gram_and_cross(x, summing(cross, sums), shift=mean)
    spread, axes = np.linalg.eigh(lower - np.outer(sums, sums) / n)  # reads the lower triangle only
    k = np.vstack([np.sqrt(np.clip(spread, 0.0, None))[:, None] * axes.T, np.sqrt(n) * (mean + sums / n)])
    _, singular, vt = np.linalg.svd(k, full_matrices=False)
    keep = singular > rank_cutoff(singular, max(x.shape))
    f_y = centred_y + np.outer(mean, cross(np.ones((n, 1)), slice(None)))
    return singular[keep] ** 2, vt[keep], f_y


@dataclass(frozen=True)
class FixedPointRule:
    """How the MacKay fixed point is run and its evidence read off (see ``max_evidence``).

    ``max_iter``: iteration cap (None: iterate until ``tol``, at most ``CONVERGED_MAX_ITER`` steps);
    ``tol``: a target stops once t = alpha / beta changes by at most this (relative);
    ``denominator_eps``: added to ||m||^2 and ||y - Fm||^2 in the alpha / beta updates (the LogME repo's 1e-5);
    ``lagged_evidence``: evaluate the evidence with the m (and residual) of the t BEFORE the last update, as
    the public codes do, instead of the m of the final t;
    ``prior_dims_from_features``: D/2 log alpha with D the feature dimension (the LogME repo) instead of
    rank(F) (equal for full-rank F with N > D).
    """

    max_iter: int | None = 11
    tol: float = 1e-3
    denominator_eps: float = 0.0
    lagged_evidence: bool = False
    prior_dims_from_features: bool = False


#: Safety cap of the converged mode (``max_iter=None``); the MacKay iteration converges linearly, in tens to a few
#: hundred steps even for 3-sample classes.
CONVERGED_MAX_ITER = 10_000

#: Named reproductions of the public LogME codes (``logme(..., preset=...)``):
#: "converged": the paper's maximum evidence: iterate until t changes by < 1e-8 (no cap short of
#: ``CONVERGED_MAX_ITER``); "thuml": thuml/LogME ``LogME._fit_fixed_point`` (also Model Spider ``mptms/LogME.py``
#: and SFDA's ``LogME_Score``): 11 steps, tol 1e-3, 1e-5 added to both denominators, lagged evidence, D/2 log alpha;
#: "tllib": tllib ``ranking/logme.py`` (the ICML version): 11 steps, tol 1e-2, no epsilon, lagged evidence;
#: "stable_transfer": google stable_transfer ``logme.py``: the LogME repo's epsilon with the ICML tolerance 1e-2.
LOGME_PRESETS = {
    "converged": FixedPointRule(max_iter=None, tol=1e-8),
    "thuml": FixedPointRule(11, 1e-3, denominator_eps=1e-5, lagged_evidence=True, prior_dims_from_features=True),
    "tllib": FixedPointRule(11, 1e-2, lagged_evidence=True),
    "stable_transfer": FixedPointRule(11, 1e-2, denominator_eps=1e-5, lagged_evidence=True, prior_dims_from_features=True),
}


def fixed_point_rule(max_iter: int | None = 11, tol: float = 1e-3, preset: str | None = None) -> FixedPointRule:
    """The iteration ``logme(..., max_iter, tol, preset)`` runs (a preset replaces ``max_iter`` and ``tol``)."""
    if preset is not None:
        return named_preset("logme", preset, LOGME_PRESETS, {"max_iter": max_iter != 11, "tol": tol != 1e-3})
    # Above the converged mode's own cap an explicit one only lets an unreachable tol (below rounding, e.g. 1e-300
    # on N < D features whose evidence has no finite maximum) run for hours: 10**9 steps were 12 h on 30 samples.
    if max_iter is not None and not 1 <= max_iter <= CONVERGED_MAX_ITER:
        raise InvalidInputError(f"max_iter must be in [1, {CONVERGED_MAX_ITER}] or None (iterate until tol, at most "
                                f"{CONVERGED_MAX_ITER} steps), got {max_iter}")
    if not tol > 0:
        raise InvalidInputError(f"tol must be > 0, got {tol}")
    return FixedPointRule(max_iter, tol)


@np.errstate(all="ignore")  # degenerate columns are detected below and redone with floors
def max_evidence(
    sigma: np.ndarray,
    projected: np.ndarray,
    y_norm2: np.ndarray,
    n: int,
    rule: FixedPointRule = FixedPointRule(),
    floor: float = 0.0,
    prior_dims: int | None = None,
    with_precisions: bool = False,
) -> tuple[np.ndarray, ...]:
    """Per-column maximum log evidence / N of y_k = F w + eps, w ~ N(0, 1/alpha I), eps ~ N(0, 1/beta), and a
    (K,) mask of the columns that stopped at ``rule.max_iter`` before meeting ``rule.tol``.

    All K columns are solved together: alpha, beta are (K,) vectors and each column stops updating once its
    t = alpha / beta changes by at most ``rule.tol`` (relative). With x = U^T y and t = alpha / beta:
      gamma = sum_i s_i^2 / (s_i^2 + t),            ||m||^2 = sum_i s_i^2 x_i^2 / (s_i^2 + t)^2,
      ||y - F m||^2 = sum_i x_i^2 t^2 / (s_i^2 + t)^2 + (||y||^2 - ||x||^2),
      alpha <- gamma / ||m||^2,  beta <- (N - gamma) / ||y - F m||^2   (MacKay's fixed point).
    The evidence is evaluated at the final (alpha, beta) with m at that t:
      log p(y|F) = r/2 log alpha + N/2 log beta - 1/2 sum_i log(alpha + beta s_i^2)
                   - beta/2 ||y - F m||^2 - alpha/2 ||m||^2 - N/2 log(2 pi),
    where r = rank(F): the D - r null directions of F cancel exactly (the LogME repo writes D/2 log alpha with
    min(N, D) singular values, which differs when N < D; ``prior_dims`` replaces r when given).
    ``with_precisions=True`` also returns the final alpha and beta, (K,) each (NaN for degenerate columns).
    """
    x2 = projected**2  # (r, K)
    outside = np.maximum(y_norm2 - x2.sum(axis=0), 0.0)  # part of y outside the column space of F
    k = x2.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    active = np.ones(k, dtype=bool)
    s = sigma[:, None]
    floors = floor * y_norm2
    eps = rule.denominator_eps

    def posterior_terms(t: np.ndarray):
        shrink = 1.0 / (s + t) ** 2
        m2 = np.maximum((s * x2 * shrink).sum(axis=0), floors)
        res2 = np.maximum((x2 * t**2 * shrink).sum(axis=0) + outside, floors)
        gamma = (s / (s + t)).sum(axis=0)
        return gamma, m2, res2

    lagged_m2, lagged_res2 = np.zeros(k), np.zeros(k)
    converged_mode = rule.max_iter is None
    for _ in range(CONVERGED_MAX_ITER if converged_mode else rule.max_iter):
        t = alpha / beta
        gamma, m2, res2 = posterior_terms(t)
        new_alpha, new_beta = gamma / (m2 + eps), np.maximum(n - gamma, floor * n) / (res2 + eps)
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        lagged_m2 = np.where(active, m2, lagged_m2)
        lagged_res2 = np.where(active, res2, lagged_res2)
        new_t = alpha / beta
        active &= np.abs(new_t - t) / t > rule.tol
        if converged_mode:
            # t -> inf (alpha -> inf, w -> 0) never meets a relative tolerance: t grows geometrically. Once every
            # shrinkage factor s_i / (s_i + t) is below tol the target has reached that boundary; its evidence
            # is then the limit below.
            active &= new_t * rule.tol <= sigma.max(initial=0.0)
        if not active.any():
            break
    if rule.lagged_evidence:
        m2, res2 = lagged_m2, lagged_res2
    else:
        _, m2, res2 = posterior_terms(alpha / beta)
    evidence = (
        (sigma.shape[0] if prior_dims is None else prior_dims) / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * np.log(alpha + beta * s).sum(axis=0)
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    evidence = evidence / n
    if converged_mode:
        # The supremum over (alpha, beta) is the larger of the fixed point and the alpha -> inf boundary, where
        # y is pure noise: max_beta N/2 log beta - beta/2 ||y||^2 - N/2 log 2pi at beta = N / ||y||^2 (classes of
        # a few samples often end there).
        noise_only = 0.5 * (np.log(n / y_norm2) - 1.0 - np.log(2 * np.pi))
        evidence = np.fmax(evidence, noise_only)
    bad = ~np.isfinite(evidence)
    if bad.any() and floor == 0.0:
        # F interpolates these targets (rank(F) close to N, e.g. N < D): ||y - Fm||^2 and N - gamma underflow
        # to 0 and beta becomes inf or 0. Redo just those columns with relative floors on the denominators (the
        # LogME repo adds 1e-5 to them everywhere, which would also shift every ordinary score).
        warnings.warn(f"LogME: the features interpolate {int(bad.sum())} of {bad.size} targets (rank close to N = "
                      f"{n}), so their evidence rests on the degenerate floors and saturates; use more samples than "
                      "dimensions", SaturationWarning, stacklevel=caller_stacklevel())
        evidence[bad], active[bad] = max_evidence(sigma, projected[:, bad], y_norm2[bad], n, rule,
                                                  DEGENERATE_FLOOR, prior_dims)
        alpha[bad] = beta[bad] = np.nan
    if not np.isfinite(evidence).all():
        raise InvalidInputError("LogME evidence is not finite for these features (degenerate spectrum)")
    return (evidence, active, alpha, beta) if with_precisions else (evidence, active)


@register_metric(
    "logme",
    needs=("features", "labels", "task"),
    tasks=("classification", "regression"),
    # the evidence's fixed point stops at a relative tolerance (1e-3 by default, as the references): closer
    # scores are ties
    tie_rtol=1e-6,
    tie_atol=1e-6,
    choices={"preset": LOGME_PRESETS},
    ranges={"max_iter": Interval(1, CONVERGED_MAX_ITER, closed_high=True), "tol": "(0, inf)"},
    reference="You et al., LogME: Practical Assessment of Pre-trained Models for Transfer Learning, ICML 2021",
)
def logme(
    features: np.ndarray,
    labels: np.ndarray,
    task: str = "classification",
    max_iter: int | None = 11,
    tol: float = 1e-3,
    preset: str | None = None,
) -> float:
    """LogME: mean over targets of the maximised log evidence per sample of Bayesian linear regression.

    Classification: one target per class (its one-hot column); regression: each column of the (N,) or
    (N, K) real targets. For each target y, alpha and beta maximise
    log p(y | F) = r/2 log a + N/2 log b - 1/2 sum_i log(a + b s_i^2) - b/2 ||y - Fm||^2 - a/2 ||m||^2 - N/2 log 2pi
    by the fixed-point iteration of the JMLR version, over one (truncated) SVD of F shared by all targets; see
    ``max_evidence``. LogME = mean_k evidence_k / N.

    Convergence: by default at most ``max_iter`` = 11 steps with relative tolerance ``tol`` = 1e-3 on alpha/beta,
    the cap of every public LogME code, so scores stay comparable with published ones; targets that need more
    (classes of a few samples: 3-sample classes are still ~1e-3 from the maximum after 11 steps) raise a
    ``NotConvergedWarning`` (flag "not_converged" in score tables). ``max_iter=None`` iterates until ``tol``
    is met (either way at most ``CONVERGED_MAX_ITER`` = 10,000 steps); ``preset="converged"`` does so with tol
    1e-8, the paper's maximum evidence (the iteration costs O(K min(N, D)) per step, nothing next to the SVD).
    ``preset="thuml"`` / ``"tllib"`` reproduce those codes' numbers exactly, ``"stable_transfer"`` that TensorFlow
    code's up to its float32 arithmetic (their epsilon, tolerance and lagged evidence, see ``LOGME_PRESETS``); a
    preset replaces ``max_iter`` and ``tol``.

    Arithmetic is float64; float32 (and float16) features, as extracted, are converted one row block at a time.
    F^T F is multiplied in float64 for them too: float32 products perturb its small eigenvalues by ~1e-7 of the
    largest, which moved LogME by 4e-5 (H-Score by 2e-5) on features whose spectrum spans three decades and by
    3e-3 (H-Score by 250%) at six.

    Inputs: features (N, D); class labels (N,) or regression targets (N,) / (N, K); ``task``.
    Higher is better; only differences within one dataset are meaningful (often in the 4th decimal).
    """
    rule = fixed_point_rule(max_iter, tol, preset)
    x = unit_scaled(as_features(features, upcast=False), LOGME_SCALE_BOUND, tiny_to_bound=True)  # float32 stays
    if task == "regression":
        y = as_targets(labels, x.shape[0])
        y_norm2 = (y**2).sum(axis=0)
        if (y_norm2 == 0).any():
            raise InvalidInputError("a regression target is identically zero (or so small that its squares "
                                    "underflow to 0): LogME is undefined")

        def cross(m: np.ndarray, rows: slice) -> np.ndarray:
            return m.T @ y[rows]

    elif task == "classification":
        codes, n_classes = as_class_labels(labels, x.shape[0])
        y_norm2 = np.bincount(codes, minlength=n_classes).astype(np.float64)  # one-hot columns
        cross = OneHotCross(codes, n_classes)

    else:
        raise InvalidInputError(f"LogME supports classification and regression, not {task!r}")
    if not has_distinct_rows(x):
        raise InvalidInputError("features are constant: LogME is undefined")
    sigma, projected = feature_spectrum(x, cross)
    prior_dims = x.shape[1] if rule.prior_dims_from_features else None
    evidence, not_converged = max_evidence(sigma, projected, y_norm2, x.shape[0], rule, prior_dims=prior_dims)
    if not_converged.any():
        warnings.warn(
            f"LogME: {int(not_converged.sum())} of {len(not_converged)} targets had not converged after "
            f"{rule.max_iter or CONVERGED_MAX_ITER} iterations (tolerance {rule.tol:g}); preset='converged' "
            "iterates to the maximum evidence",
            NotConvergedWarning,
            stacklevel=caller_stacklevel(),
        )
    return float(evidence.mean())
