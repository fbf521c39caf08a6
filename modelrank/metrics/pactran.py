"""PACTran (Ding et al. 2022): PAC-Bayesian bounds for a head on top of the pre-trained model.

Each variant computes a bound on the risk of a Bayesian head (lower = more transferable); the registered
scores are the NEGATED bounds so that, like every modelrank metric, higher = better. Hyper-parameters are
keyword parameters with the defaults of Model Spider (alpha = 1, 10 variational steps) and of the
pactran_metrics lineage (lda_factor = 1, s2_factor = 100: the first of the two PAC-Gauss values it returns).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy.special import digamma, gammaln, logsumexp

from ..errors import InvalidInputError
from ._checks import as_class_labels, as_features
from ._linalg import blas_threads, class_sums, largest_magnitude, one_blas_thread, row_blocks
from .base import Interval, NotConvergedWarning, caller_stacklevel, named_preset, register_metric
from .leep import probs_and_codes

if TYPE_CHECKING:
    import scipy.optimize

REFERENCE = "Ding et al., PACTran: PAC-Bayesian Metrics for Estimating the Transferability of Pretrained Models, ECCV 2022"


def _label_prior(codes: np.ndarray, n_classes: int, alpha: float) -> np.ndarray:
    """(C, 1) prior concentration a0_y = alpha * P(y) (the empirical label frequencies)."""
    return (alpha * np.bincount(codes, minlength=n_classes) / codes.shape[0])[:, None]


#: Most mean-field steps ``n_iter`` may ask for: it is a step count, not a cap that convergence ends early, and each
#: step is a pass over the (N, Z) probabilities (0.2 s at 50k x 1000), so n_iter=10**9 ran for days without a word.
#: The public code runs 10; on the tasks we tried the counts stop moving beyond rounding within ~1,100 steps.
MAX_MEAN_FIELD_STEPS = 10_000
MEAN_FIELD_STEPS = Interval(1, MAX_MEAN_FIELD_STEPS, closed_high=True)

#: Smallest normaliser d_i = sum_z s_i(z) w_{y_i}(z) the product form trusts; below it (source softmax mass only
#: where the label's weights underflow) a step is redone in log space.
SMALLEST_NORMALISER = 1e-250


def _mean_field(
    probs: np.ndarray,
    codes: np.ndarray,
    prior: np.ndarray,
    n_iter: int,
    expected_log_lik: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, float]:
    """Mean-field updates of the latent source class q(z_i) and the (C, Z) posterior a_w.

    Starting from q = s (the source softmax), ``n_iter`` times (at most ``MAX_MEAN_FIELD_STEPS``):
    a_w = a0 + sum_i [y_i = y] q_i(z), then log q_i(z) = log s_i(z) + E[log p(y_i | z)] - log-normaliser, with
    ``expected_log_lik(a_w)`` = E[log p(y|z)] (C, Z). Returns the last a_w and sum_i KL(q_i || s_i) of the final q.

    The update is a product: with w_c(z) = exp(E[c, z] - max_z E[c, z]) and d_i = sum_z s_i(z) w_{y_i}(z),
    q_i = s_i * w_{y_i} / d_i, so sum_{i in c} q_i = w_c * sum_{i in c} s_i / d_i and
    KL(q_i || s_i) = sum_z q_i(z) (E[y_i, z] - max_z E[y_i, z]) - log d_i. Each step is then two multiply-add
    passes over the (N, Z) probabilities (a row-wise dot and a weighted class sum) instead of a log, an exp and
    a logsumexp of N x Z. q is never stored whole: rows are processed in blocks, memory O(block * Z).
    """
    n_classes = prior.shape[0]
    counts = class_sums(probs, codes, n_classes)
    for step in range(n_iter):
        a_w = prior + counts
        expected = expected_log_lik(a_w)
        shifted = expected - expected.max(axis=1, keepdims=True)
        weights = np.exp(shifted)
        last = step == n_iter - 1
        weighted_shift = weights * shifted if last else None  # per class, for the KL of the final q
        counts = np.zeros_like(a_w)
        kl = 0.0
        for rows in row_blocks(probs.shape[0]):
            s, y = probs[rows], codes[rows]
            normaliser = np.einsum("nz,nz->n", s, weights[y])
            if normaliser.min() < SMALLEST_NORMALISER:
                block_counts, block_kl = _log_space_step(s, y, expected, last)
            else:
                block_counts = weights * class_sums(s, y, n_classes, 1.0 / normaliser)
                block_kl = 0.0
                if last:
                    block_kl = float((np.einsum("nz,nz->n", s, weighted_shift[y]) / normaliser
                                      - np.log(normaliser)).sum())
            counts += block_counts
            kl += block_kl
    return a_w, kl


def _log_space_step(s: np.ndarray, y: np.ndarray, expected: np.ndarray, with_kl: bool) -> tuple[np.ndarray, float]:
    """The mean-field step of one row block in log space: (class sums of q, sum_i KL(q_i || s_i) or 0)."""
    # A zero probability (float16 underflow) gets log = -708, not -inf, so q log(q / s) stays 0, not NaN.
    log_s = np.log(np.maximum(s, np.finfo(np.float64).tiny))
    log_q = log_s + expected[y]
    log_q -= logsumexp(log_q, axis=1, keepdims=True)
    q = np.exp(log_q)
    return class_sums(q, y, expected.shape[0]), float((q * (log_q - log_s)).sum()) if with_kl else 0.0


@register_metric("pactran_dir", needs=("source_probs", "labels"), reference=REFERENCE,
                 ranges={"alpha": "(0, inf)", "n_iter": MEAN_FIELD_STEPS})
def pactran_dirichlet(source_probs: np.ndarray, labels: np.ndarray, alpha: float = 1.0, n_iter: int = 10) -> float:
    """PAC-Dir: negated PAC-Bayes bound of a Dirichlet-categorical head P(y | z) on the source classes z.

    Prior P(. | z) ~ Dir(a0), a0_y = alpha * P(y); latent z_i with prior s_i = source softmax. After
    ``n_iter`` mean-field steps (see ``_mean_field``, E[log p(y|z)] = digamma(a_w[y,z]) -
    digamma(sum_y a_w[y,z])) the evidence lower bound is
    ELBO = sum_z [log B(a_w[:, z]) - log B(a0)] - sum_i KL(q_i || s_i),  B = multivariate beta function.
    Bound = -ELBO / (N C); score = ELBO / (N C) (Model Spider's ``-PACTranDirichlet``).

    Inputs: source_probs (N, Z), class labels (N,). Higher is better.
    """
    probs, codes, n_classes = probs_and_codes(source_probs, labels)
    prior = _label_prior(codes, n_classes, alpha)
    a_w, kl = _mean_field(probs, codes, prior, n_iter, lambda a: digamma(a) - digamma(a.sum(axis=0, keepdims=True)))

    def log_beta(a: np.ndarray) -> np.ndarray:
        return gammaln(a).sum(axis=0) - gammaln(a.sum(axis=0))

    elbo = (log_beta(a_w) - log_beta(prior)).sum() - kl
    return float(elbo / (codes.shape[0] * n_classes))


@register_metric("pactran_gamma", needs=("source_probs", "labels"), reference=REFERENCE,
                 ranges={"alpha": "(0, inf)", "beta": "(0, inf)", "n_iter": MEAN_FIELD_STEPS})
def pactran_gamma(
    source_probs: np.ndarray, labels: np.ndarray, alpha: float = 1.0, beta: float = 1.0, n_iter: int = 10
) -> float:
    """PAC-Gam: negated PAC-Bayes bound of a head with Gamma(a0, beta) priors on unnormalised rates w[y, z].

    Mean-field steps as in PAC-Dir with E[log w] = digamma(a_w) - log(beta); then with
    l_i = sum_z s_i(z) sum_y a_w[y, z] / beta (the expected normaliser of sample i),
    bound = 1 + [ sum_{y,z} (log G(a0_y) - log G(a_w[y,z]) + (a_w[y,z] - a0_y) log beta)
                  + sum_i (KL(q_i || s_i) + log l_i - 1) ] / (N C).
    Score = -bound.

    Inputs: source_probs (N, Z), class labels (N,). Higher is better.
    """
    probs, codes, n_classes = probs_and_codes(source_probs, labels)
    prior = _label_prior(codes, n_classes, alpha)
    a_w, kl = _mean_field(probs, codes, prior, n_iter, lambda a: digamma(a) - np.log(beta))
    normaliser = probs @ (a_w.sum(axis=0) / beta)
    prior_term = (gammaln(prior) - gammaln(a_w) + (a_w - prior) * np.log(beta)).sum()
    data_term = kl + (np.log(normaliser) - 1.0).sum()
    return float(-(1.0 + (prior_term + data_term) / (codes.shape[0] * n_classes)))


@dataclass(frozen=True)
class GaussSolver:
    """How PAC-Gauss's MAP head is found: L-BFGS from ``start`` ("zeros", or "normal_0.03": N(0, 0.03^2) weights
    drawn after ``np.random.seed(0)``, zero biases, as pactran_metrics), at most ``max_iter`` iterations (None:
    ``CONVERGED_MAX_ITER``), tolerance ``tol``; ``inv_sigma2_eps`` is added to sigma^-2 (pactran_metrics: 1e-10)."""

    max_iter: int | None = 100
    tol: float = 1e-6
    start: str = "zeros"
    inv_sigma2_eps: float = 0.0


#: L-BFGS cap of the converged mode (scipy's default maxiter).
CONVERGED_MAX_ITER = 15_000

#: ``pactran_gauss(..., preset=...)``: "pactran_metrics" reproduces google-research pactran_metrics'
#: ``calculate_pac_gauss`` (its random start, 100 iterations, tol 1e-6, +1e-10 on sigma^-2); "converged" runs
#: L-BFGS from zero to a 1e-12 tolerance, the bound at the MAP optimum the paper defines.
GAUSS_PRESETS = {
    "pactran_metrics": GaussSolver(100, 1e-6, "normal_0.03", 1e-10),
    "converged": GaussSolver(None, 1e-12),
}


def lbfgs_with_threaded_products(
    loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], theta0: np.ndarray, tol: float, max_iter: int
) -> scipy.optimize.OptimizeResult:
    """scipy's L-BFGS-B with its own bookkeeping on ONE BLAS thread and ``loss_and_grad`` on all of them.

    Each L-BFGS-B step is a handful of vector operations of length (D + 1) C; multi-threaded BLAS makes those
    several times slower than one thread (7x measured on 2 busy cores: 16 of PAC-Gauss's 19 s were spent inside
    the optimiser), while the O(N D C) products of the loss do gain from the threads."""
    import scipy.optimize  # half a second to import: only when PACTran-Gauss runs

    controller = blas_threads()
    threads = max((info["num_threads"] for info in controller.select(user_api="blas").info()), default=1)

    def threaded(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with controller.limit(limits=threads, user_api="blas"):
            return loss_and_grad(theta)

    with one_blas_thread():
        return scipy.optimize.minimize(threaded, theta0, jac=True, method="L-BFGS-B", tol=tol,
                                       options={"maxiter": max_iter})


#: Rows centred and transposed per step into PAC-Gauss's (D, N) features: 64 rows keep the transposed writes in
#: cache (10k x 2048: 70 ms; 4096-row blocks took 290 ms).
TRANSPOSE_ROWS = 64


# Capped L-BFGS (the default, as the public code) stops 1e-5 .. 1e-4 (relative) short of the optimum, and where
# it stops depends on the start: scores closer than that are not ordered by the metric.
@register_metric("pactran_gauss", reference=REFERENCE, tie_rtol=1e-4, choices={"preset": GAUSS_PRESETS},
                 ranges={"lda_factor": "(0, inf)", "s2_factor": "(0, inf)"})
def pactran_gauss(
    features: np.ndarray,
    labels: np.ndarray,
    lda_factor: float = 1.0,
    s2_factor: float = 100.0,
    max_iter: int | None = 100,
    tol: float = 1e-6,
    preset: str | None = None,
) -> float:
    """PAC-Gauss: negated PAC-Bayes bound of a softmax linear head with a Gaussian prior on its weights.

    On centred features x (N, D) and one-hot y (C classes), with lambda = lda_factor * N:
      L(W, b) = 1/N sum_i CE(softmax(W^T x_i + b), y_i) + ||W||^2 / (2 lambda)   (MAP by L-BFGS from W = 0, b = 0);
      h = diagonal curvature at the optimum: sum_i x_id^2 p_ic (1 - p_ic) + 1/lambda for W, sum_i p_ic (1 - p_ic)
      for b;  sigma^-2 = lambda * sum(h) / (D C);
      bound = L(W*, b*) + 1/2 * (D C / lambda) * (s2_factor / D) * log(sigma^-2).
    Score = -bound.

    Convergence: L is convex, so the optimum does not depend on the start, but the default L-BFGS limits of
    pactran_metrics (``max_iter`` = 100, ``tol`` = 1e-6) stop short of it on most real features (the score is then
    1e-5 to 1e-4 relative from the optimum's, and depends on the start); that raises a ``NotConvergedWarning``
    (flag "not_converged"). The default keeps the cap because every iteration costs O(N D C) and published numbers
    used it; ``max_iter=None`` or ``preset="converged"`` (tol 1e-12) iterate to the optimum,
    ``preset="pactran_metrics"`` reproduces that code's numbers (its random start, see ``GAUSS_PRESETS``). A
    preset replaces ``max_iter`` and ``tol``.

    float32 features under the capped default get the two O(N D C) products of every L-BFGS step in float32
    (features centred in float64 first): twice as fast, and 1e-9 to 5e-6 (relative) from the float64 path where
    both stop at the same iteration; float32 rounding can move the stop on the relative reduction of the loss by an
    iteration (2e-5 measured), still less than where the cap's own start puts the score (the 1e-4 tie tolerance).
    Presets and ``max_iter=None`` keep float64 throughout, so reproductions and the optimum are exact.

    Inputs: features (N, D), class labels (N,). Higher is better.
    """
    if preset is None:
        solver = GaussSolver(max_iter, tol)
    else:
        solver = named_preset("pactran_gauss", preset, GAUSS_PRESETS, {"max_iter": max_iter != 100, "tol": tol != 1e-6})
    x = as_features(features, upcast=False)
    codes, n_classes = as_class_labels(labels, x.shape[0])
    # float32 features under the capped default: the O(N D C) products of every L-BFGS step in float32 (centred in
    # float64 first); a preset (a reproduction, or the optimum) keeps float64 throughout.
    product_type = np.float32 if x.dtype == np.float32 and preset is None and solver.max_iter is not None else np.float64
    # The centred features are stored transposed, (D, N) C-ordered, and the logits as (C, N): OpenBLAS then runs the
    # gradient's product (D, N) @ (N, C) 1.3x faster than from the (N, D) rows (x.T @ r: 74 vs 57 ms at 10k x 2048
    # x 100, one thread), and the logits' product W^T x^T as fast as x W. Centred in float64 one row block at a time,
    # straight into the product type: a whole float64 centred copy of float32 features was 2 float32 sizes more.
    n, d = x.shape
    centred_t = np.empty((d, n), dtype=product_type)
    mean = x.mean(axis=0, dtype=np.float64)
    for start in range(0, n, TRANSPOSE_ROWS):
        block = slice(start, start + TRANSPOSE_ROWS)
        centred_t[:, block] = (x[block] - mean).T
    lam = lda_factor * n
    rows = np.arange(n)

    def split(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]

    def softmax_and_true_log_p(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, N) softmax of the head's logits and log p(y_i | x_i), from one exp pass over the logits (scipy's
        logsumexp and a second exp for the probabilities cost as much as the O(N D C) product at C = 100)."""
        w, b = split(theta)
        if w.any():
            logits = (w.T.astype(product_type) @ centred_t).astype(np.float64, copy=False)  # a fresh array
            logits += b[:, None]
        else:  # L-BFGS's zero start: the logits are the biases, no product needed
            logits = np.repeat(b[:, None], n, axis=1)
        logits -= logits.max(axis=0)
        true_logits = logits[codes, rows]
        probs = np.exp(logits, out=logits)
        totals = probs.sum(axis=0)
        probs /= totals
        return probs, true_logits - np.log(totals)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, _ = split(theta)
        residual, true_log_p = softmax_and_true_log_p(theta)
        loss = -true_log_p.sum() / n + 0.5 * (w**2).sum() / lam
        residual[codes, rows] -= 1.0
        residual /= n
        features_grad = (centred_t @ residual.astype(product_type, copy=False).T).astype(np.float64, copy=False)
        grad = np.concatenate([(features_grad + w / lam).ravel(), residual.sum(axis=1)])
        return loss, grad

    theta0 = np.zeros((d + 1) * n_classes)
    if solver.start == "normal_0.03":
        theta0[: d * n_classes] = np.random.RandomState(0).normal(size=(d, n_classes)).ravel() * 0.03
    max_iter = CONVERGED_MAX_ITER if solver.max_iter is None else solver.max_iter
    result = lbfgs_with_threaded_products(loss_and_grad, theta0, solver.tol, max_iter)
    if result.nit == 0 and result.status != 0:
        # The line search failed on the first step (features of ~2e11 and beyond: the loss along the gradient jumps by
        # their square): result.x is the start and result.fun a trial point's loss, which scored -63 or -8.5e18.
        raise InvalidInputError(f"PAC-Gauss: L-BFGS could not take a first step ({result.message.strip(': ')}), so "
                                f"there is no MAP head to bound; the features reach {largest_magnitude(x):.3g}: "
                                "standardise them")
    if result.nit >= max_iter:
        warnings.warn(
            f"PAC-Gauss: L-BFGS stopped at its cap of {max_iter} iterations before tolerance {solver.tol:g}; "
            "preset='converged' runs it to the optimum",
            NotConvergedWarning,
            stacklevel=caller_stacklevel(),
        )
    p, _ = softmax_and_true_log_p(result.x)
    curvature = p - p**2
    # sum_{n,d,c} x_nd^2 h_nc = sum_n ||x_n||^2 sum_c h_nc: no (D, C) product needed
    row_norms = np.empty(n)
    for block in row_blocks(n):
        row_norms[block] = (np.asarray(centred_t[:, block], dtype=np.float64) ** 2).sum(axis=0)
    total_h = float(row_norms @ curvature.sum(axis=0)) + d * n_classes / lam + curvature.sum()
    inv_sigma2 = lam * total_h / (d * n_classes) + solver.inv_sigma2_eps
    bound = result.fun + 0.5 * (d * n_classes / lam) * (s2_factor / d) * np.log(inv_sigma2)
    return float(-bound)
