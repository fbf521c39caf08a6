import numpy as np
import pytest
from scipy import stats

from modelrank.errors import InvalidInputError
from modelrank.evaluate import (
    MEASURES,
    kendall_tau,
    noise_tau,
    pearson,
    regret_at_k,
    rel_at_k,
    spearman,
    weighted_tau,
)

# Worked by hand with hyperbolic weights w(r) = 1/(r+1), pair weight w(r_i) + w(r_j), 4 models:
# the total pair weight is (n-1) * (1 + 1/2 + 1/3 + 1/4) = 6.25.
TRUTH = [1.0, 2.0, 3.0, 4.0]


def test_weighted_tau_one_swap_at_the_top_by_hand():
    # Only models 2 and 3 (the two best, ranks 0 and 1 under both orderings) are discordant:
    # weight 1 + 1/2 = 1.5, tau = (6.25 - 2 * 1.5) / 6.25 = 0.52 under either weighting.
    score = [1.0, 2.0, 4.0, 3.0]
    assert weighted_tau(TRUTH, score) == pytest.approx(0.52)
    assert weighted_tau(TRUTH, score, protocol="model_spider") == pytest.approx(0.52)


def test_weighted_tau_conventions_differ_by_hand():
    # The worst model (truth 1) gets the top score: it is discordant with the 3 others.
    # Weights from the truth's ranking: (1/4+1/3)+(1/4+1/2)+(1/4+1) = 31/12 -> tau = (6.25 - 31/6)/6.25 = 13/75.
    # Weights from the score's ranking (it is first there): (1+1/4)+(1+1/3)+(1+1/2) = 49/12 -> tau = -23/75.
    score = [4.0, 1.0, 2.0, 3.0]
    assert weighted_tau(TRUTH, score, protocol="model_spider") == pytest.approx(13 / 75)
    # scipy's default averages the two weightings.
    assert weighted_tau(TRUTH, score, protocol="scipy") == pytest.approx((13 / 75 - 23 / 75) / 2)


def test_weighted_tau_agrees_with_scipy_calls_including_ties(rng):
    for _ in range(20):
        truth = np.round(rng.normal(80, 5, size=11), 1)
        score = np.round(rng.normal(size=11), 1)  # rounding creates ties, as in published score tables
        assert weighted_tau(truth, score) == pytest.approx(stats.weightedtau(score, truth).statistic)
        assert weighted_tau(truth, score, protocol="model_spider") == pytest.approx(
            stats.weightedtau(truth, score, rank=None).statistic
        )
        assert MEASURES["weighted_tau_model_spider"](truth, score) == weighted_tau(truth, score, "model_spider")


def test_scipy_protocol_is_symmetric_model_spider_is_not():
    score = [4.0, 1.0, 2.0, 3.0]
    assert weighted_tau(TRUTH, score) == pytest.approx(weighted_tau(score, TRUTH))
    assert weighted_tau(TRUTH, score, "model_spider") != pytest.approx(weighted_tau(score, TRUTH, "model_spider"))


def test_rank_correlations_by_hand():
    score = [1.0, 2.0, 4.0, 3.0]
    # 6 pairs, 1 discordant: (5 - 1) / 6.
    assert kendall_tau(TRUTH, score) == pytest.approx(4 / 6)
    # rank differences d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert spearman(TRUTH, score) == pytest.approx(0.8)
    assert pearson(TRUTH, [2.0, 4.0, 6.0, 8.0]) == pytest.approx(1.0)
    assert pearson(TRUTH, [-1.0, -2.0, -3.0, -4.0]) == pytest.approx(-1.0)
    assert spearman(TRUTH, np.exp(TRUTH)) == pytest.approx(1.0)
    assert pearson(TRUTH, np.exp(TRUTH)) < 0.99  # Pearson sees the scale, rank measures do not


def test_pearson_of_scores_at_the_ends_of_the_float_range():
    """Scores near 1.7e308 overflowed scipy's sums: a NaN pearson, left out of the means without a note;
    subnormal scores lost digits (-0.50006 for -0.5)."""
    huge = [5e307, 1.7e308, -1.7e308, 0.0]
    assert pearson(TRUTH, huge) == pytest.approx(np.corrcoef(TRUTH, np.array(huge) / 1e308)[0, 1], rel=1e-12)
    # 2e-320 is exactly twice 1e-320 as a float: scores (a, 2a, 0) against evenly spaced truths give r = -1/2.
    assert pearson([0.1, 0.5, 0.9], [1e-320, 2e-320, 0.0]) == pytest.approx(-0.5, rel=1e-12)


def test_rel_and_regret_at_k_by_hand():
    truth = [80.0, 90.0, 85.0, 70.0]
    score = [0.9, 0.1, 0.5, 0.2]  # picks 80 first, then 85, then 70, then 90
    assert rel_at_k(truth, score, k=1) == pytest.approx(80 / 90)
    assert rel_at_k(truth, score, k=2) == pytest.approx(85 / 90)
    assert rel_at_k(truth, score, k=4) == pytest.approx(1.0)
    assert regret_at_k(truth, score, k=1) == pytest.approx(10.0)
    assert regret_at_k(truth, score, k=2) == pytest.approx(5.0)
    assert regret_at_k(truth, score, k=10) == 0.0
    # Negative-error ground truth (Model Spider regression) works with regret, not with a ratio.
    assert regret_at_k([-0.03, -0.04], [1.0, 2.0]) == pytest.approx(0.01)
    with pytest.raises(InvalidInputError, match="regret"):
        rel_at_k([-0.03, -0.04], [1.0, 2.0])


def test_top_k_ties_count_by_their_expected_pick_not_their_best():
    # Two models tied first: either may be picked, so the expected pick is (70 + 90) / 2 = 80.
    assert regret_at_k([70.0, 90.0, 60.0], [1.0, 1.0, 0.0], k=1) == pytest.approx(10.0)
    assert rel_at_k([70.0, 90.0, 60.0], [1.0, 1.0, 0.0], k=1) == pytest.approx(80 / 90)
    assert regret_at_k([70.0, 90.0, 60.0], [1.0, 1.0, 0.0], k=2) == 0.0  # both tied models fit in the top 2
    # Three tied for 2 places: the best picked is 90 with chance C(2,1)/C(3,2) = 2/3, else 70 (1/3).
    assert regret_at_k([70.0, 90.0, 60.0, 50.0], [1.0, 1.0, 1.0, 0.0], k=2) == pytest.approx(90 - (2 * 90 + 70) / 3)
    # One model above the tie: max(80, pick) with the pick 90 or 60 at 1/2 each.
    assert regret_at_k([80.0, 90.0, 60.0], [2.0, 1.0, 1.0], k=2) == pytest.approx(90 - (90 + 80) / 2)


@pytest.mark.parametrize("measure", [rel_at_k, regret_at_k])
def test_a_constant_score_picks_nothing(measure):
    with pytest.raises(InvalidInputError, match="ranks nothing"):
        measure([70.0, 90.0, 60.0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("measure", [rel_at_k, regret_at_k])
def test_a_constant_truth_has_no_best_pick(measure):
    """rel@k was 1.0 and regret@k 0 for any score: every model is "the best" when all truths are equal."""
    with pytest.raises(InvalidInputError, match="truth is constant .*no best model"):
        measure([80.0, 80.0, 80.0], [0.3, 0.1, 0.2])


def test_partial_ties_by_hand_and_against_scipy():
    # Score ties the two worst models. Kendall tau-b: 5 concordant pairs, 1 tied in score only:
    # (5 - 0) / sqrt(6 * 5).
    score = [1.0, 1.0, 3.0, 4.0]
    assert kendall_tau(TRUTH, score) == pytest.approx(5 / np.sqrt(30))
    # Spearman on average ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4): 4.5 / sqrt(5 * 4.5) = 3 / sqrt(10).
    assert spearman(TRUTH, score) == pytest.approx(3 / np.sqrt(10))
    # Weighted tau: the tied pair (ranks 2 and 3 from the top: weight 1/3 + 1/4 = 7/12) counts neither in the
    # numerator nor in the score's untied weight: (6.25 - 7/12) / sqrt(6.25 * (6.25 - 7/12)).
    assert weighted_tau(TRUTH, score, protocol="model_spider") == pytest.approx(np.sqrt((6.25 - 7 / 12) / 6.25))
    assert weighted_tau(TRUTH, score) == pytest.approx(stats.weightedtau(score, TRUTH).statistic)
    assert kendall_tau(TRUTH, score) == pytest.approx(stats.kendalltau(TRUTH, score).statistic)


def test_noise_tau_does_not_reward_orders_within_noise():
    truth, score = [1.0, 2.0, 10.0], [2.0, 1.0, 3.0]  # the score swaps the two models 1 apart
    # Negligible noise: Kendall tau-a, (2 - 1) / 3.
    assert noise_tau(truth, score, noise=1e-9) == pytest.approx(1 / 3)
    # noise 1: the swapped pair is ordered 1 > 2 with p = Phi(-1 / sqrt 2) = 0.2398, e = -0.5205; the others e = -1.
    assert noise_tau(truth, score, noise=1.0) == pytest.approx((2 - 0.5205) / (2 + 0.5205), abs=1e-4)
    # Ordering the near-tied pair right gains little more than ordering it wrong once it is within noise.
    assert noise_tau(truth, [1.0, 2.0, 3.0], noise=100.0) == pytest.approx(1.0)
    assert noise_tau(truth, [1.0, 1.0, 3.0], noise=1.0) < noise_tau(truth, [1.0, 2.0, 3.0], noise=1.0)
    with pytest.raises(InvalidInputError, match="noise"):
        noise_tau(truth, score, noise=0.0)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_bad_input_is_refused(name):
    measure = MEASURES[name]
    with pytest.raises(InvalidInputError, match="aligned"):
        measure([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="at least 2"):
        measure([1.0], [1.0])
    with pytest.raises(InvalidInputError, match="NaN"):
        measure([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InvalidInputError, match="NaN"):
        measure([1.0, 2.0, 3.0], [1.0, 2.0, np.inf])


@pytest.mark.parametrize("name", ["weighted_tau", "weighted_tau_model_spider", "kendall", "spearman", "pearson"])
def test_constant_input_is_refused_not_nan(name):
    with pytest.raises(InvalidInputError, match="constant"):
        MEASURES[name]([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])


def test_unknown_protocol_and_bad_k():
    with pytest.raises(InvalidInputError, match="protocol"):
        weighted_tau(TRUTH, TRUTH, protocol="rank_true")
    with pytest.raises(InvalidInputError, match="k must"):
        rel_at_k(TRUTH, TRUTH, k=0)
