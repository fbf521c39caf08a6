"""How well a transferability score ranks models: agreement between scores and fine-tune ground truth.

Every measure is a plain function ``f(truth, score, ...) -> float`` over two aligned 1-D arrays with one
entry per model: ``truth`` is the fine-tuned accuracy (or any higher-is-better ground truth, e.g. a negative
error), ``score`` the metric's score (higher = predicted to transfer better). Correlations are in [-1, 1];
``rel_at_k`` is a ratio in (0, 1]; ``regret_at_k`` is in the truth's own units (0 = the best model was picked).

Weighted Kendall's tau comes in two published conventions that give different numbers on the same data
(see ``weighted_tau``); the convention is always an explicit argument, never implied.
"""

from __future__ import annotations

from math import comb
from typing import Callable

import numpy as np
from scipy import stats

from ..errors import InvalidInputError

WEIGHTED_TAU_PROTOCOLS = ("scipy", "model_spider")


def _aligned(truth, score, need_variation: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``truth`` and ``score`` as float64 1-D arrays of the same length (>= 2 models)."""
    truth = np.asarray(truth, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if truth.ndim != 1 or score.ndim != 1:
        raise InvalidInputError(
            f"truth and score must be 1-D (one value per model), got shapes {truth.shape} and {score.shape}"
        )
    if truth.shape != score.shape:
        raise InvalidInputError(f"truth has {truth.size} models but score has {score.size}; they must be aligned")
    if truth.size < 2:
        raise InvalidInputError(f"ranking needs at least 2 models, got {truth.size}")
    for name, values in (("truth", truth), ("score", score)):
        if not np.all(np.isfinite(values)):
            positions = np.flatnonzero(~np.isfinite(values)).tolist()
            raise InvalidInputError(f"{name} contains NaN or infinite values at positions {positions}")
        # A correlation with a constant vector is 0/0: say so instead of returning NaN.
        if need_variation and np.all(values == values[0]):
            raise InvalidInputError(
                f"{name} is constant ({values[0]:g} for all {values.size} models); the correlation is undefined"
            )
    return truth, score


def weighted_tau(truth, score, protocol: str = "scipy") -> float:
    """Weighted Kendall's tau (Vigna, WWW'15) between ground truth and score, hyperbolic weights.

    A pair of models (i, j) weighs w(r_i) + w(r_j) with w(r) = 1 / (r + 1), r the 0-based rank from the top,
    so swaps among the best models cost most. tau = (W_concordant - W_discordant) / sqrt(W_untied_a * W_untied_b).
    The rank r that gives the weights is where the two published conventions differ:

    * ``protocol="scipy"`` (default): ``scipy.stats.weightedtau(score, truth)`` with ``rank=True``: tau is
      computed once with weights from the score's ranking and once from the truth's, and the two are
      averaged (symmetric in its arguments). Used by SFDA, PED, NCTI, ETran, EMMS
      (``rank_correlation.py::w_kendall_metric``) and google stable_transfer.
    * ``protocol="model_spider"``: ``scipy.stats.weightedtau(truth, score, rank=None)``: weights follow the
      ground-truth ranking only (truth decides ties of the ranking by its value, then score), so misordering
      the best fine-tuned models costs most. Model Spider ``utils.py::measure_test`` (NeurIPS'23); this
      reproduces 69/72 cells of its published table, the default reproduces 4/72.
    """
    truth, score = _aligned(truth, score)
    if protocol == "scipy":
        result = stats.weightedtau(score, truth)
    elif protocol == "model_spider":
        result = stats.weightedtau(truth, score, rank=None)
    else:
        raise InvalidInputError(f"unknown weighted tau protocol {protocol!r}; choose one of {WEIGHTED_TAU_PROTOCOLS}")
    return float(result.statistic)


def kendall_tau(truth, score) -> float:
    """Kendall's tau-b (ties corrected): (concordant - discordant) / sqrt((n0 - n_ties_a)(n0 - n_ties_b))."""
    truth, score = _aligned(truth, score)
    return float(stats.kendalltau(truth, score).statistic)


def spearman(truth, score) -> float:
    """Spearman's rho: Pearson correlation of the (average-tie) ranks of truth and score."""
    truth, score = _aligned(truth, score)
    return float(stats.spearmanr(truth, score).statistic)


def pearson(truth, score) -> float:
    """Pearson's r: cov(truth, score) / (std(truth) std(score)). Sensitive to the score's scale, unlike the rank measures."""
    truth, score = _aligned(truth, score)
    # r does not change when either side is scaled: at most 1 in magnitude, scores near the ends of the float range
    # neither overflow scipy's sums (a NaN, dropped from the means without a word) nor lose digits as subnormals.
    return float(stats.pearsonr(truth / np.abs(truth).max(), score / np.abs(score).max()).statistic)


def noise_tau(truth, score, noise) -> float:
    """Kendall-type agreement that does not reward ordering models whose ground truths differ within noise.

    Each truth t_i is read as a noisy measurement (std ``noise``, a scalar or one value per model) of the
    model's real quality; pair (i, j) is then ordered t_i > t_j only with probability
    p_ij = Phi((t_i - t_j) / sqrt(noise_i^2 + noise_j^2)), and its expected sign is e_ij = 2 p_ij - 1. With
    the score's order sign(s_i - s_j) (0 for tied scores):

        noise_tau = sum_{i<j} sign(s_i - s_j) e_ij / sum_{i<j} |e_ij|,

    in [-1, 1]: 1 when the score orders every pair the most probable way, pairs within noise weigh ~0 whichever
    way they are ordered, and tied scores earn nothing. As noise -> 0 it becomes Kendall's tau-a over the pairs
    untied in truth.
    """
    truth, score = _aligned(truth, score)
    noise = np.broadcast_to(np.asarray(noise, dtype=np.float64), truth.shape)
    if not (np.isfinite(noise).all() and (noise > 0).all()):
        raise InvalidInputError("truth noise must be positive and finite")
    upper = np.triu_indices(truth.size, 1)
    spread = np.sqrt(noise[:, None] ** 2 + noise[None, :] ** 2)[upper]
    expected_sign = 2.0 * stats.norm.cdf((truth[:, None] - truth[None, :])[upper] / spread) - 1.0
    agreement = np.sign((score[:, None] - score[None, :])[upper])
    return float((agreement * expected_sign).sum() / np.abs(expected_sign).sum())


def _expected_best_truth_in_top_k(truth: np.ndarray, score: np.ndarray, k: int) -> float:
    """Expected best ground truth among the k models with the highest score, ties broken uniformly at random.

    The score cannot tell tied models apart, so when the k-th place falls inside a group of g tied models,
    the s places left are filled by a random s-subset of that group: with its truths sorted t_1 >= ... >= t_g,
    the best picked is t_i with probability C(g - i, s - 1) / C(g, s). A tie therefore earns the average of
    what it could have picked, never the best of it (a constant score gets the mean truth at k = 1).
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    k = min(int(k), score.size)
    kth_best_score = np.sort(score)[::-1][k - 1]
    above = truth[score > kth_best_score]
    group = np.sort(truth[score == kth_best_score])[::-1]
    picked, size = k - above.size, group.size
    chances = np.array([comb(size - i, picked - 1) for i in range(1, size + 1)], dtype=np.float64) / comb(size, picked)
    best_above = above.max() if above.size else -np.inf
    return float((chances * np.maximum(group, best_above)).sum())


def _ranking_score(truth, score) -> tuple[np.ndarray, np.ndarray]:
    truth, score = _aligned(truth, score, need_variation=False)
    if np.all(score == score[0]):
        raise InvalidInputError(f"score is constant ({score[0]:g} for all {score.size} models): it ranks nothing")
    # Every pick is then "the best": any score, noise included, would look perfect at selecting.
    if np.all(truth == truth[0]):
        raise InvalidInputError(f"truth is constant ({truth[0]:g} for all {truth.size} models): there is no best model "
                                "to pick")
    return truth, score


def rel_at_k(truth, score, k: int = 1) -> float:
    """Relative accuracy of the selection: best truth among the top-k models by score / max truth overall.

    1.0 when the best model is surely among the top k; tied scores at the k-th place count by their expected
    pick (see ``_expected_best_truth_in_top_k``). Needs positive ground truth (accuracies): for negative-error
    ground truth the ratio is meaningless, use ``regret_at_k``. Used by TransferGraph (ICDE'24) as rel@k.
    """
    truth, score = _ranking_score(truth, score)
    best = float(truth.max())
    if best <= 0:
        raise InvalidInputError(f"rel@k needs positive ground truth (the best is {best:g}); use regret@k instead")
    return _expected_best_truth_in_top_k(truth, score, k) / best


def regret_at_k(truth, score, k: int = 1) -> float:
    """Regret of the selection: max truth overall - (expected) best truth among the top-k models by score (>= 0)."""
    truth, score = _ranking_score(truth, score)
    return float(truth.max()) - _expected_best_truth_in_top_k(truth, score, k)


def weighted_tau_model_spider(truth, score) -> float:
    """``weighted_tau(truth, score, protocol="model_spider")``: weights follow the ground-truth ranking."""
    return weighted_tau(truth, score, protocol="model_spider")


# Name -> measure(truth, score). Names are the ones the CLI accepts and the ones written in result tables.
MEASURES: dict[str, Callable[..., float]] = {
    "weighted_tau": weighted_tau,
    "weighted_tau_model_spider": weighted_tau_model_spider,
    "kendall": kendall_tau,
    "spearman": spearman,
    "pearson": pearson,
    "rel_at_k": rel_at_k,
    "regret_at_k": regret_at_k,
}
