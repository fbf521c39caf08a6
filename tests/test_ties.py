"""The tie rule (modelrank.evaluate.ties) and what `evaluate` does with ties: no ranking from noise."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelrank.evaluate import evaluate, metric_tolerance, no_ranking, snap_ties, tie_groups, tie_ranks, weighted_tau
from modelrank.metrics.leep import leep

# Seen on animal-mnist with 20 samples per class (N <= D): H-Score saturated at C - 1 = 9 for every model.
SATURATED_HSCORE = [9.000000000000005, 8.999999999999998, 9.000000000000002, 9.0]
CONSTANT_SFDA = [1.0, 1.0, 1.0, 1.0]
ZERO_EMMS = [-2.1e-15, -1.7e-15, -2.4e-15, -1.9e-15]
MODELS = ["lite0", "lite1", "lite2", "random"]
TRUTH = pd.DataFrame({"dataset": "animal", "model": MODELS, "accuracy": [0.80, 0.85, 0.90, 0.30]})


def test_paired_differences_of_values_equal_but_for_rounding_are_zero():
    from modelrank.evaluate.ties import paired_differences

    # two weighted taus of different rankings, one number computed in two orders; a tau of 0 seen as +-1e-17
    first, second = [0.31972789115646266, 1e-17, 0.5, -3.0], [0.3197278911564626, -1e-17, 0.4, -3.00001]
    diff = paired_differences(first, second)
    assert diff[:2].tolist() == [0.0, 0.0] and diff[2:] == pytest.approx([0.1, 1e-5], rel=1e-6)


def test_tie_ranks_are_scipys_average_ranks_of_the_tie_groups():
    rng = np.random.default_rng(0)
    for size in [0, 1, 2, 3, 7, 30] * 20:
        scores = rng.integers(0, 4, size) + rng.normal(0, 1e-12, size) * (rng.random() < 0.5)
        groups = tie_groups(scores)
        for higher_is_better in (True, False):
            expected = stats.rankdata(-groups if higher_is_better else groups, method="average")
            got = tie_ranks(scores, higher_is_better=higher_is_better)
            assert got.dtype == np.float64 and np.array_equal(got, expected), (scores, higher_is_better)


def test_tie_groups_chain_neighbours_within_the_tolerance():
    assert tie_groups([3.0, 1.0, 1.0 + 1e-12, 2.0]).tolist() == [2, 0, 0, 1]
    # 1 and 1.5 are 0.5 apart, 1.5 and 2 too: one chain even though 1 and 2 are 1 apart.
    assert tie_groups([1.0, 1.5, 2.0], rtol=0.0, atol=0.5).tolist() == [0, 0, 0]
    assert tie_groups([1.0, 1.5, 2.0], rtol=0.0, atol=0.4).tolist() == [0, 1, 2]
    assert tie_ranks(SATURATED_HSCORE).tolist() == [2.5] * 4
    assert tie_ranks([0.5, 0.5 + 1e-14, 0.1, 0.9]).tolist() == [2.5, 2.5, 4.0, 1.0]
    assert tie_ranks([0.5, 0.5 + 1e-14, 0.1], higher_is_better=False).tolist() == [2.5, 2.5, 1.0]
    snapped = snap_ties([0.5, 0.5 + 1e-14, 0.1])
    assert snapped[0] == snapped[1] and snapped[2] == 0.1


def test_no_ranking_reasons_and_metric_tolerances():
    assert "equal within the metric's precision" in no_ranking(SATURATED_HSCORE, *metric_tolerance("hscore"))
    assert "all 4 scores are equal (1)" in no_ranking(CONSTANT_SFDA, *metric_tolerance("sfda"))
    assert no_ranking(ZERO_EMMS, *metric_tolerance("emms"))  # EMMS declares an absolute tolerance
    assert no_ranking(ZERO_EMMS) is None  # ... without it, 1e-15 apart would be a ranking
    assert no_ranking([0.1, 0.2, 0.2]) is None
    assert metric_tolerance("nleep[seed=1]") == metric_tolerance("nleep")
    # published tables' spellings: "H-Score" got the default tolerance, not H-Score's
    assert metric_tolerance("H-Score") == metric_tolerance("hscore") != metric_tolerance("no-such-metric")
    assert metric_tolerance("PED-LogME") == metric_tolerance("ped_logme")


def test_partial_near_ties_are_measured_as_exact_ties_like_scipy():
    truth = [1.0, 2.0, 3.0, 4.0]
    near = [1.0, 1.0 + 1e-13, 3.0, 4.0]  # raw: a perfect order; within precision: the two worst tie
    scores = pd.DataFrame({"dataset": "d", "model": list("abcd"), "hscore": near})
    ev = evaluate(scores, pd.DataFrame({"dataset": "d", "model": list("abcd"), "accuracy": truth}),
                  measures=["weighted", "kendall", "spearman"])
    r = ev.results.set_index(["dataset", "measure"])["value"]
    assert weighted_tau(truth, near) == pytest.approx(1.0)
    assert r["d", "weighted_tau"] == pytest.approx(stats.weightedtau([1.0, 1.0, 3.0, 4.0], truth).statistic)
    assert r["d", "kendall"] == pytest.approx(5 / np.sqrt(30))
    assert r["d", "spearman"] == pytest.approx(3 / np.sqrt(10))


# scipy's NaN check sums the raw scores (an overflow warning); its measures are still right, as checked here.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_tied_scores_near_the_float_maximum_stay_finite():
    """Two tied scores near 1.7e308 summed to inf when averaged: every measure refused the cell as "score contains
    NaN or infinite values" and the method dropped out of the means."""
    huge = [1.7e308, 1.7e308, 1e300, -1e300]
    assert snap_ties(huge).tolist() == huge
    scores = pd.DataFrame({"dataset": "d", "model": list("abcd"), "score_a": huge})
    truth = pd.DataFrame({"dataset": "d", "model": list("abcd"), "accuracy": [50.0, 60.0, 70.0, 65.0]})
    r = evaluate(scores, truth, measures=["weighted", "regret"]).results.set_index(["dataset", "measure"])["value"]
    assert r["d", "weighted_tau"] == pytest.approx(stats.weightedtau([2.0, 2.0, 1.0, 0.0], truth["accuracy"]).statistic)
    assert r["d", "regret@1"] == pytest.approx(70.0 - 55.0)  # a or b, each picked with probability 1/2
    assert r["mean", "weighted_tau"] == r["d", "weighted_tau"]


def test_saturated_constant_and_zero_scores_give_no_ranking_and_are_left_out_of_the_means():
    good = [0.2, 0.3, 0.4, 0.1]
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "hscore": SATURATED_HSCORE, "sfda": CONSTANT_SFDA,
                           "emms": ZERO_EMMS, "logme": good})
    other = pd.DataFrame({"Dataset": "other", "Model": MODELS, "hscore": [1.0, 2.0, 3.0, 0.0],
                          "sfda": [0.1, 0.2, 0.3, 0.0], "emms": [-0.5, -0.4, -0.3, -0.9], "logme": good})
    truth = pd.concat([TRUTH, TRUTH.assign(dataset="other")])
    ev = evaluate(pd.concat([scores, other]), truth)
    r = ev.results.set_index(["method", "dataset", "measure"])
    for method in ("hscore", "sfda", "emms"):
        for measure in ("weighted_tau", "kendall", "spearman", "pearson", "rel@1", "regret@1"):
            assert np.isnan(r.loc[(method, "animal", measure), "value"]), (method, measure)
            assert r.loc[(method, "animal", measure), "note"].startswith("no ranking")
            # the mean is the one task that ranks, and says so
            assert r.loc[(method, "mean", measure), "value"] == r.loc[(method, "other", measure), "value"]
            assert r.loc[(method, "mean", measure), "n_tasks"] == 1
            assert r.loc[(method, "mean", measure), "note"] == "mean of 1 of 2 datasets"
    assert r.loc[("logme", "animal", "rel@1"), "value"] == pytest.approx(0.90 / 0.90)
    assert r.loc[("logme", "mean", "kendall"), "n_tasks"] == 2
    assert ev.ranked_tasks().to_dict() == {"hscore": "1 of 2", "sfda": "1 of 2", "emms": "1 of 2", "logme": "2 of 2"}
    assert set(ev.no_ranking["method"]) == {"hscore", "sfda", "emms"}


def test_a_method_that_ranks_nowhere_still_has_its_mean_rows():
    # the CSV and JSON had no mean rows for it (a program reading every method's mean met a missing row), while
    # the table showed its empty means
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "sfda": CONSTANT_SFDA, "logme": [0.2, 0.3, 0.4, 0.1]})
    ev = evaluate(scores, TRUTH, measures=["kendall", "rel"])
    r = ev.results.set_index(["method", "dataset", "measure"])
    for average in ("mean", "weighted_mean"):
        for measure in ("kendall", "rel@1"):
            row = r.loc[("sfda", average, measure)]
            assert np.isnan(row["value"]) and row["n_tasks"] == 0 and row["note"] == "mean of 0 of 1 datasets"
            assert r.loc[("logme", average, measure), "n_tasks"] == 1
    assert len(ev.results) == 2 * 2 * 3  # 2 methods x 2 measures x (animal, mean, weighted_mean)


def test_no_ranking_quotes_lower_is_better_scores_as_given():
    """The reason said "all 4 scores are equal (-0.3)" of a table whose scores were 0.3 (negated to rank them)."""
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "err": [0.3] * 4, "logme": [0.2, 0.3, 0.4, 0.1]})
    ev = evaluate(scores, TRUTH, measures=["kendall"], lower_is_better=["err"])
    assert ev.no_ranking["reason"].tolist() == ["all 4 scores are equal (0.3)"]


def test_flagged_scores_are_left_out_unless_kept():
    """A saturated score is not ranked by `score`; `evaluate` ranked it at the metric's ceiling by default, so a
    metric got top-1 credit from its saturation. It now leaves it out (the others are ranked among themselves);
    exclude_flagged=False (--keep-flagged) keeps every score, as published protocols do."""
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "hscore": [9.0, 2.0, 3.0, 1.0],
                           "hscore_flags": ["saturated", "", "", ""], "hscore_seconds": 0.1})
    dropped = evaluate(scores, TRUTH, measures=["kendall"])
    kept = evaluate(scores, TRUTH, measures=["kendall"], exclude_flagged=False)
    assert kept.methods == ["hscore"] and kept.counts["n_models"].item() == 4
    assert "hscore / animal: 1 of 4 scores are saturated and ranked at the metric's ceiling" in " ".join(kept.warnings)
    assert dropped.counts["n_models"].item() == 3 and len(dropped.pairs) == 3
    assert any("left out 1 flagged score(s) (saturated)" in w for w in dropped.warnings)


def test_scores_saturated_for_all_models_or_all_but_one_give_no_ranking():
    """As in `score`: H-Score saturated for every model (N <= D) differed in its last digits at the ceiling (9.0,
    8.91, 8.99, 8.38 on the demo benchmark's digits task) and those ranked the models; with one model unsaturated,
    that one was last by the others' ceiling. Two unsaturated ones are ranked (the saturated kept, with a warning)."""
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "hscore": [9.0, 8.91, 8.99, 8.38],
                           "hscore_flags": "saturated"})
    one = scores.assign(hscore_flags=["saturated", "saturated", "saturated", ""])
    two = scores.assign(hscore_flags=["saturated", "saturated", "", ""])
    for keep in (False, True):
        ev = evaluate(scores, TRUTH, measures=["kendall"], exclude_flagged=not keep)
        assert ev.no_ranking["reason"].tolist() == ["saturated for all 4 models"]
        assert ev.ranked_tasks().to_dict() == {"hscore": "0 of 1"}
        ev = evaluate(one, TRUTH, measures=["kendall"], exclude_flagged=not keep)
        assert ev.no_ranking["reason"].tolist() == ["saturated for 3 of 4 models"]
        assert not [w for w in ev.warnings if "ceiling" in w or "left out" in w]
        ev = evaluate(two, TRUTH, measures=["kendall"], exclude_flagged=not keep)
        assert ev.no_ranking.empty and ev.counts["n_models"].item() == (4 if keep else 2)


def test_exclude_flagged_keeps_scores_that_only_did_not_converge():
    """LogME's default stops at 11 steps and flags the score "not_converged", most often on the weakest models:
    --exclude-flagged, which leaves out saturated scores, left those out too."""
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "logme": [0.2, 0.3, 0.4, 0.1],
                           "logme_flags": ["", "", "", "not_converged"], "hscore": [9.0, 2.0, 3.0, 1.0],
                           "hscore_flags": ["not_converged;saturated", "", "", ""]})
    ev = evaluate(scores, TRUTH, measures=["kendall"], exclude_flagged=True)
    assert ev.counts.set_index("method")["n_models"].to_dict() == {"logme": 4, "hscore": 3}
    assert [w for w in ev.warnings if "flagged" in w] == ["hscore / animal: left out 1 flagged score(s) "
                                                          "(not_converged;saturated)"]


def test_truth_noise_adds_noise_tau():
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "logme": [0.2, 0.3, 0.4, 0.1]})
    ev = evaluate(scores, TRUTH, measures=["kendall"], truth_noise=0.1)
    assert ev.measures == ["kendall", "noise_tau"]
    r = ev.results.set_index(["dataset", "measure"])["value"]
    assert r["animal", "kendall"] == pytest.approx(1.0) and r["animal", "noise_tau"] == pytest.approx(1.0)


def test_truth_noise_from_a_records_column_and_paired_comparison():
    from modelrank.evaluate.evaluation import compare_methods

    records = TRUTH.assign(accuracy_std=[0.08, 0.08, 0.08, 0.08], n_seeds=4)  # noise of the mean: 0.04
    scores = pd.DataFrame({"Dataset": "animal", "Model": MODELS, "good": [0.2, 0.3, 0.4, 0.1],
                           "swapped": [0.3, 0.2, 0.4, 0.1]})
    by_column = evaluate(scores, records, measures=["kendall"], truth_noise="accuracy_std")
    by_value = evaluate(scores, TRUTH, measures=["kendall"], truth_noise=0.04)
    pd.testing.assert_frame_equal(by_column.results, by_value.results)
    r = by_value.results.query("dataset == 'animal'").set_index(["method", "measure"])["value"]
    # swapping the two models 0.05 apart (about one noise std) costs a full pair in Kendall, less in noise_tau
    assert 1 - r["swapped", "noise_tau"] < 1 - r["swapped", "kendall"]
    two = pd.concat([scores, scores.assign(Dataset="other")])
    ev = evaluate(two, pd.concat([TRUTH, TRUTH.assign(dataset="other", accuracy=[0.8, 0.7, 0.9, 0.3])]),
                  measures=["kendall", "regret"])
    compared = compare_methods(ev, "good", "swapped").set_index("measure")
    # kendall: good - swapped = 1 - 2/3 on animal and 2/3 - 1 on other
    assert compared.loc["kendall", "diff"] == pytest.approx(0.0)
    assert (compared.loc["kendall", "wins"], compared.loc["kendall", "losses"]) == (1, 1)
    assert compared.loc["regret@1", "datasets"] == 2 and not compared.loc["kendall", "beyond_2se"]


def test_cli_evaluate_no_ranking_compare_noise_and_formats(cli, tmp_path):
    import json

    scores = pd.DataFrame({"Dataset": ["a"] * 4 + ["b"] * 4, "Model": MODELS * 2,
                           "hscore": SATURATED_HSCORE + [1.0, 2.0, 3.0, 0.0], "logme": [0.2, 0.3, 0.4, 0.1] * 2,
                           "hscore_flags": ["saturated"] * 4 + [""] * 4})
    truth = pd.concat([TRUTH.assign(dataset="a"), TRUTH.assign(dataset="b")]).assign(accuracy_std=0.02)
    scores.to_csv(tmp_path / "s.csv", index=False)
    truth.to_csv(tmp_path / "t.csv", index=False)
    base = ["evaluate", "--scores", str(tmp_path / "s.csv"), "--truth", str(tmp_path / "t.csv"), "--tau", "kendall,rel"]
    code, out, err = cli(*base, "--truth-noise", "accuracy_std", "--compare", "logme,hscore")
    assert code == 0, err
    assert "no ranking: hscore / a: saturated for all 4 models" in err
    lines = out.splitlines()
    assert lines[0].split() == ["measure", "method", "a", "b", "mean", "se", "weighted_mean", "ranked"]
    assert lines[1].split()[:4] == ["kendall", "hscore", "no", "rank"] and lines[1].split()[-3:] == ["1", "of", "2"]
    assert "noise_tau" in out and "paired comparison logme - hscore" in out
    # Saturated for every model, H-Score ranks nothing on a, whether its saturated scores are kept or left out.
    for flag in ("--exclude-flagged", "--keep-flagged"):
        code, out, err = cli(*base, flag, "--format", "json")
        assert code == 0 and "no ranking: hscore / a: saturated for all 4 models" in err, err
        rows = json.loads(out)
        assert {r["method"] for r in rows} == {"hscore", "logme"}
        assert all(r["value"] is None for r in rows if r["dataset"] == "a" and r["method"] == "hscore")
    code, out, err = cli(*base, "--compare", "logme")
    assert code == 2 and "--compare takes two different methods" in err


@pytest.mark.parametrize("name", ["leep", "nleep", "ped_nleep"])
def test_leep_scores_saturated_at_zero_are_ties(name):
    """Posteriors that predict the labels perfectly give LEEP = 0 up to rounding: the same near-one-hot source
    probabilities with their columns or rows reordered scored -4.8e-16, -3.8e-16 and -5.1e-16, which the relative
    tolerance alone ranked."""
    rng = np.random.default_rng(0)
    y = np.arange(600) % 6
    logits = rng.normal(size=(600, 50))
    logits[np.arange(600), 3 * y] += 40
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows = rng.permutation(600)
    scores = [leep(probs, y), leep(probs[:, rng.permutation(50)], y), leep(probs[rows], y[rows])]
    assert no_ranking(scores, *metric_tolerance(name))
    assert not no_ranking([-1e-10, -2e-10, -3e-10], *metric_tolerance(name))  # a real, if small, difference


def test_ped_variants_inherit_and_gbc_declares_its_tolerance():
    assert metric_tolerance("ped_logme") == metric_tolerance("logme") == (1e-6, 1e-6)
    # GBC of features that separate the classes to machine precision (N <= D): a tie, not a ranking
    assert no_ranking([-6.0e-90, -5.3e-81, -1.8e-70], *metric_tolerance("gbc"))
    assert metric_tolerance("ped_gbc") == metric_tolerance("gbc")
