"""`modelrank.evaluate.evaluate` and the `modelrank evaluate` command on small hand-made tables."""

import io
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelrank.cli import app
from modelrank.errors import InvalidInputError, MissingResourceError
from modelrank.evaluate import kendall_tau, weighted_tau
from modelrank.evaluate.evaluation import evaluate
from modelrank.evaluate.report import plot_evaluation

TRUTH = pd.DataFrame(
    {
        "Dataset": ["Pets"] * 4 + ["cifar-10"] * 3,
        "Model": ["resnet50", "ResNet101", "vit", "mobilenet", "resnet50", "resnet101", "vit"],
        "Accuracy": [90.0, 92.0, 95.0, 80.0, 96.0, 97.0, 98.0],
    }
)
# Wide layout as in Model Spider's baseline_results.csv; "Pet" and "CIFAR10" must match "Pets" and "cifar-10".
WIDE_SCORES = pd.DataFrame(
    {
        "Dataset": ["Pet"] * 4 + ["CIFAR10"] * 3,
        "Model": ["resnet50", "resnet101", "vit", "mobilenet", "resnet50", "resnet101", "vit"],
        "good": [1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0],
        "bad": [3.0, 2.0, 1.0, 4.0, 3.0, 2.0, 1.0],
    }
)


def value(evaluation, method, dataset, measure):
    r = evaluation.results
    return r[(r.method == method) & (r.dataset == dataset) & (r.measure == measure)]["value"].item()


def test_names_lose_their_surrounding_spaces_and_a_name_of_spaces_is_missing():
    # the names matched without their spaces, but the results (tables, CSV, JSON) showed " Pet " as typed
    padded = WIDE_SCORES.assign(Dataset=[f" {d} " for d in WIDE_SCORES["Dataset"]], Model=WIDE_SCORES["Model"] + " ")
    ev = evaluate(padded, TRUTH)
    assert set(ev.results["dataset"]) - {"mean", "weighted_mean"} == {"Pet", "CIFAR10"}
    assert value(ev, "good", "Pet", "kendall") == value(evaluate(WIDE_SCORES, TRUTH), "good", "Pet", "kendall")
    with pytest.raises(InvalidInputError, match="1 row\\(s\\) without a model name"):
        evaluate(WIDE_SCORES.assign(Model=["  "] + list(WIDE_SCORES["Model"][1:])), TRUTH)


def test_ground_truth_whose_differences_overflow_is_refused_and_huge_scores_rank_quietly():
    huge = TRUTH.assign(Accuracy=(TRUTH["Accuracy"] - 90) * 1e307)  # regret@1 was inf, the weighted mean blank
    with pytest.raises(InvalidInputError, match="reaches .*e\\+308; ground truth beyond 1e\\+150 overflows"):
        evaluate(WIDE_SCORES, huge)
    # the same order as "good", with neighbours 2e308 apart
    scores = WIDE_SCORES.assign(good=WIDE_SCORES["good"].map({0.0: -1.5e308, 1.0: -1e308, 2.0: 1e308, 3.0: 1.5e308}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "overflow encountered in subtract" reached the user from the tie rule
        ev = evaluate(scores, TRUTH)
    for measure in ("kendall", "weighted_tau", "regret@1"):
        assert value(ev, "good", "Pet", measure) == pytest.approx(value(evaluate(WIDE_SCORES, TRUTH), "good", "Pet",
                                                                         measure), abs=1e-12)


def test_a_dataset_spelt_two_ways_shows_the_first_spelling_of_the_scores():
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="method", value_name="score")
    long.loc[long["method"] == "bad", "Dataset"] = long["Dataset"].map({"Pet": "pets", "CIFAR10": "cifar-10"})
    assert evaluate(long, TRUTH).datasets == ["Pet", "CIFAR10"]  # the last spelling, "pets", was shown
    flipped = long.iloc[::-1]
    ev = evaluate(flipped, TRUTH)
    assert ev.datasets == ["cifar-10", "pets"]
    assert value(ev, "good", "pets", "kendall") == value(evaluate(long, TRUTH), "good", "Pet", "kendall")


def test_repeated_score_rows_are_refused_or_averaged_on_request(tmp_path):
    # A scores log that every run appends to (TransferGraph's transferability_score_records.csv holds 240 repeats)
    # was refused with no way forward.
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="method", value_name="score")
    rerun = long[long["Model"] == "vit"].assign(score=lambda f: f["score"] + 0.5, flags="saturated")
    repeated = pd.concat([long.assign(flags=""), rerun], ignore_index=True)
    with pytest.raises(InvalidInputError, match="duplicate rows.*--score-duplicates mean"):
        evaluate(repeated, TRUTH)
    averaged = long.assign(score=long["score"] + 0.25 * (long["Model"] == "vit"))
    expected = evaluate(averaged, TRUTH, exclude_flagged=False).results
    got = evaluate(repeated, TRUTH, score_duplicates="mean", exclude_flagged=False).results
    pd.testing.assert_frame_equal(got, expected)
    flagged = evaluate(repeated, TRUTH, score_duplicates="mean")  # a flag of any run stays with the mean
    assert any("left out 1 flagged score" in w for w in flagged.warnings)
    with pytest.raises(InvalidInputError, match="score duplicates must be one of error, mean"):
        evaluate(long, TRUTH, score_duplicates="max")
    repeated.to_csv(tmp_path / "log.csv", index=False)
    TRUTH.to_csv(tmp_path / "truth.csv", index=False)
    run = CliRunner().invoke(app, ["evaluate", "--scores", str(tmp_path / "log.csv"), "--truth",
                                   str(tmp_path / "truth.csv"), "--score-duplicates", "mean", "--format", "csv"])
    assert run.exit_code == 0, run.output


def test_perfect_and_reversed_scores_with_aliases_and_case():
    ev = evaluate(WIDE_SCORES.assign(good_seconds=0.1), TRUTH)  # `modelrank score --out` timing columns are no method
    assert ev.methods == ["good", "bad"] and ev.datasets == ["Pet", "CIFAR10"]
    for measure in ("weighted_tau", "kendall", "spearman"):
        assert value(ev, "good", "Pet", measure) == pytest.approx(1.0)
        assert value(ev, "bad", "Pet", measure) == pytest.approx(-1.0)
    assert value(ev, "good", "Pet", "rel@1") == 1.0
    assert value(ev, "bad", "Pet", "rel@1") == pytest.approx(80 / 95)
    assert value(ev, "bad", "Pet", "regret@1") == pytest.approx(15.0)
    assert ev.warnings == []


def test_means_plain_and_transfergraph_weighted():
    ev = evaluate(WIDE_SCORES, TRUTH, measures=["regret"])
    pet, cifar = 15.0, 2.0  # regret of "bad": best 95 vs picked 80; best 98 vs picked 96
    assert value(ev, "bad", "mean", "regret@1") == pytest.approx((pet + cifar) / 2)
    w_pet = 95 - np.mean([90, 92, 95, 80])  # max - mean of each dataset's ground truth
    w_cifar = 98 - np.mean([96, 97, 98])
    expected = (w_pet * pet + w_cifar * cifar) / (w_pet + w_cifar)
    assert value(ev, "bad", "weighted_mean", "regret@1") == pytest.approx(expected)
    table = ev.table("regret@1")
    assert list(table.columns) == ["Pet", "CIFAR10", "mean", "weighted_mean"]


def test_long_scores_protocol_k_and_lower_is_better():
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="metric", value_name="score")
    ev = evaluate(long, TRUTH, measures=["weighted", "rel"], protocol="model_spider", k=2, lower_is_better=["bad"])
    assert ev.measures == ["weighted_tau_model_spider", "rel@2"]
    assert value(ev, "bad", "Pet", "weighted_tau_model_spider") == pytest.approx(1.0)  # negated: now perfect
    pet_truth = np.array([90.0, 92.0, 95.0, 80.0])
    scores = np.array([1.0, 3.0, 2.0, 0.0])
    mixed = pd.DataFrame({"dataset": "Pets", "model": ["resnet50", "resnet101", "vit", "mobilenet"], "method": "m", "score": scores})
    ev = evaluate(mixed, TRUTH, measures=["weighted", "kendall"], protocol="model_spider")
    assert value(ev, "m", "Pets", "weighted_tau_model_spider") == pytest.approx(weighted_tau(pet_truth, scores, "model_spider"))
    assert value(ev, "m", "Pets", "kendall") == pytest.approx(kendall_tau(pet_truth, scores))


def test_measures_and_lower_is_better_as_one_comma_separated_string():
    """As ``modelrank.score`` takes "logme,leep": a string was iterated letter by letter ("unknown measure(s) a, d,
    e, k, l, n")."""
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="metric", value_name="score")
    listed = evaluate(long, TRUTH, measures=["kendall", "rel"], lower_is_better=["bad"])
    given = evaluate(long, TRUTH, measures="kendall, rel", lower_is_better="bad")
    assert given.measures == listed.measures == ["kendall", "rel@1"]
    pd.testing.assert_frame_equal(given.results, listed.results)


@pytest.mark.parametrize("table", [{"Pets": 0.9}, None, 3])
def test_scores_or_truth_that_are_neither_a_table_nor_a_path_are_refused(table):
    with pytest.raises(InvalidInputError, match=r"scores file must be a file path \(str or Path\), not"):
        evaluate(table, TRUTH)
    with pytest.raises(InvalidInputError, match=r"ground-truth file must be a file path \(str or Path\), not"):
        evaluate(WIDE_SCORES, table)


@pytest.mark.parametrize("option,message", [
    ({"k": True}, "k must be a positive integer, got True"),  # was read as k=1 and labelled "rel@True"
    ({"tolerances": {"good": 1e-3}}, r"tolerances\['good'\] must be a pair \(rtol, atol\)"),  # TypeError on unpacking
    ({"tolerances": {"good": (1e-3, -1.0)}}, r"tolerances\['good'\] must be a pair"),
    ({"truth_where": ["protocol"]}, r"truth_where must be a dict \{column: value\}"),  # AttributeError: .items
])
def test_malformed_options_are_refused_in_one_line(option, message):
    with pytest.raises(InvalidInputError, match=message):
        evaluate(WIDE_SCORES, TRUTH, **option)


def test_missing_models_are_reported_and_undefined_cells_warned():
    partial = WIDE_SCORES[WIDE_SCORES["Model"] != "mobilenet"].assign(flat=1.0)
    ev = evaluate(partial, TRUTH, measures=["weighted"])
    assert any("1 model(s) of the ground truth have no score" in w for w in ev.warnings)
    extra = pd.concat([WIDE_SCORES, WIDE_SCORES.iloc[:1].assign(Model="unknown-net")])
    assert any("1 scored model(s) have no ground truth" in w for w in evaluate(extra, TRUTH, measures=["kendall"]).warnings)
    assert ev.no_ranking.query("method == 'flat' and dataset == 'Pet'")["reason"].item() == "all 3 scores are equal (1)"
    assert np.isnan(value(ev, "flat", "Pet", "weighted_tau"))
    assert value(ev, "good", "Pet", "weighted_tau") == pytest.approx(1.0)


def test_duplicates_error_or_best_of():
    truth = pd.concat([TRUTH, TRUTH.assign(Accuracy=TRUTH["Accuracy"] - 50)])
    with pytest.raises(InvalidInputError, match="duplicate rows.*--duplicates max"):
        evaluate(WIDE_SCORES, truth)
    ev = evaluate(WIDE_SCORES, truth, duplicates="max")
    assert value(ev, "good", "Pet", "rel@1") == 1.0
    doubled = pd.concat([WIDE_SCORES, WIDE_SCORES.iloc[:1]])
    with pytest.raises(InvalidInputError, match="duplicate"):
        evaluate(doubled, TRUTH)


def test_duplicates_kept_by_their_validation_metric():
    # `records export` holds one row per sweep point: --duplicates max picked the best TEST value, a selection on
    # the test set; "val" keeps the run a sweep selects (the best val_metric; runs tied there are averaged).
    truth = pd.concat([TRUTH.assign(val_metric=0.5), TRUTH.assign(Accuracy=TRUTH["Accuracy"] - 50, val_metric=0.9)])
    with pytest.raises(InvalidInputError, match="duplicate rows.*--duplicates val.*best val_metric"):
        evaluate(WIDE_SCORES, truth)
    expected = evaluate(WIDE_SCORES, TRUTH.assign(Accuracy=TRUTH["Accuracy"] - 50)).results
    pd.testing.assert_frame_equal(evaluate(WIDE_SCORES, truth, duplicates="val").results, expected)
    tied = pd.concat([TRUTH.assign(val_metric=0.9), TRUTH.assign(Accuracy=TRUTH["Accuracy"] - 50, val_metric=0.9)])
    middle = evaluate(WIDE_SCORES, TRUTH.assign(Accuracy=TRUTH["Accuracy"] - 25)).results
    pd.testing.assert_frame_equal(evaluate(WIDE_SCORES, tied, duplicates="val").results, middle)
    with pytest.raises(InvalidInputError, match="needs a validation column"):
        evaluate(WIDE_SCORES, pd.concat([TRUTH, TRUTH]), duplicates="val")
    with pytest.raises(InvalidInputError, match="duplicates must be one of error, max, val"):
        evaluate(WIDE_SCORES, TRUTH, duplicates="mean")


def test_truth_filter_for_records_with_several_protocols():
    truth = pd.concat([TRUTH.assign(protocol="linear"), TRUTH.assign(protocol="full", Accuracy=100 - TRUTH["Accuracy"])])
    with pytest.raises(InvalidInputError, match="duplicate"):
        evaluate(WIDE_SCORES, truth)
    linear = evaluate(WIDE_SCORES, truth, measures=["kendall"], truth_where={"Protocol": "linear"})
    full = evaluate(WIDE_SCORES, truth, measures=["kendall"], truth_where={"protocol": "full"})
    assert value(linear, "good", "Pet", "kendall") == pytest.approx(1.0)
    assert value(full, "good", "Pet", "kendall") == pytest.approx(-1.0)
    with pytest.raises(InvalidInputError, match="from a filter"):
        evaluate(WIDE_SCORES, truth, truth_where={"peft_method": "lora"})


def test_a_truth_filter_compares_the_text_as_written(tmp_path):
    """A records file's epochs column with a blank cell is float: "10" was compared with "10.0" and matched
    nothing; a protocol named NA was a missing value."""
    rows = [TRUTH.assign(epochs=10, protocol="NA"), TRUTH.assign(epochs=5, protocol="full", Accuracy=100 - TRUTH["Accuracy"])]
    path = tmp_path / "records.csv"
    pd.concat(rows).to_csv(path, index=False)
    path.write_text(path.read_text() + "Pet,extra,50,,full\n")  # a blank epochs cell
    for where in ({"epochs": "10"}, {"protocol": "NA"}):
        assert value(evaluate(WIDE_SCORES, str(path), measures=["kendall"], truth_where=where),
                     "good", "Pet", "kendall") == pytest.approx(1.0)


def test_no_defined_value_at_all_is_reported_not_a_crash():
    """Constant truth on every dataset: each correlation is undefined (a note); the means crashed on an empty,
    string-typed weight column (TypeError, exit 1)."""
    ev = evaluate(WIDE_SCORES, TRUTH.assign(Accuracy=50.0), measures=["kendall", "pearson"])
    assert ev.results["value"].isna().all() and ev.results["note"].str.contains("truth is constant|mean of 0 of 2").all()
    assert ev.no_ranking["reason"].str.fullmatch(r"the ground truth is constant \(50 for all \d models\)").all()
    assert set(ev.ranked_tasks()) == {"0 of 2"}  # it counted them as ranked


def test_truths_equal_but_for_rounding_are_ties():
    """0.7 and 0.1 + 0.2 + 0.4 (0.7000000000000001) were two accuracies: a score ordering those two models one way
    got weighted tau 1.0, the other way 0.18."""
    truth = pd.DataFrame({"dataset": "d", "model": ["a", "b", "c"], "accuracy": [0.7, 0.1 + 0.2 + 0.4, 0.5]})
    scores = pd.DataFrame({"dataset": "d", "model": ["a", "b", "c"], "one": [2.0, 3.0, 1.0], "other": [3.0, 2.0, 1.0]})
    ev = evaluate(scores, truth, measures=["weighted", "kendall", "spearman", "rel"])
    tied = [0.7, 0.7, 0.5]
    for measure, function in (("weighted_tau", weighted_tau), ("kendall", kendall_tau)):
        assert value(ev, "one", "d", measure) == value(ev, "other", "d", measure)
        assert value(ev, "one", "d", measure) == pytest.approx(function(tied, [2.0, 3.0, 1.0]))
    assert value(ev, "one", "d", "spearman") == value(ev, "other", "d", "spearman")
    flat = evaluate(scores, truth.assign(accuracy=[0.7, 0.1 + 0.2 + 0.4, 0.7]), measures=["kendall"])
    assert flat.results["value"].isna().all() and flat.results["note"].str.contains("truth is constant|mean of 0 of 1").all()


def test_a_constant_truth_gives_no_perfect_pick():
    """Every model is the best where all truths are equal: rel@1 was 1.0 and regret@1 0 for any score, and
    counted in the means as a perfect pick."""
    truth = pd.concat([TRUTH, TRUTH[TRUTH["Dataset"] == "Pets"].assign(Dataset="flat", Accuracy=90.0)])
    scores = pd.concat([WIDE_SCORES, WIDE_SCORES[WIDE_SCORES["Dataset"] == "Pet"].assign(Dataset="flat")])
    ev = evaluate(scores, truth, measures=["rel", "regret"])
    for measure in ("rel@1", "regret@1"):
        assert np.isnan(value(ev, "bad", "flat", measure))
        assert value(ev, "bad", "mean", measure) == pytest.approx(np.mean([value(ev, "bad", d, measure)
                                                                           for d in ("Pet", "CIFAR10")]))
    assert ("bad", "flat", "the ground truth is constant (90 for all 4 models)") in set(
        ev.no_ranking.itertuples(index=False, name=None))
    assert ev.ranked_tasks()["bad"] == "2 of 3"


def test_top_k_that_takes_every_model_is_no_pick():
    """rel@3 of a dataset with 3 models was 1.0 (regret 0) for any score, the best "picked" by taking them all."""
    ev = evaluate(WIDE_SCORES, TRUTH, measures=["rel", "regret", "kendall"], k=3)
    assert value(ev, "bad", "Pet", "rel@3") == pytest.approx(92 / 95)  # 4 models: the top 3 are a choice
    for measure in ("rel@3", "regret@3"):
        assert np.isnan(value(ev, "bad", "CIFAR10", measure))
        assert value(ev, "bad", "mean", measure) == value(ev, "bad", "Pet", measure)
    assert any("bad / CIFAR10 / rel@3: k=3 takes all 3 models compared" in w for w in ev.warnings)
    assert value(ev, "bad", "CIFAR10", "kendall") == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["mean", "Weighted-Mean"])
def test_a_dataset_named_as_the_averages_is_refused(cli, tmp_path, name):
    """A dataset "mean" gave two "mean" rows in the results and crashed the table (exit 1)."""
    scores, truth = tmp_path / "s.csv", tmp_path / "t.csv"
    WIDE_SCORES.replace({"Dataset": {"Pet": name}}).to_csv(scores, index=False)
    TRUTH.replace({"Dataset": {"Pets": name}}).to_csv(truth, index=False)
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth))
    assert code == 2 and out == "" and f"dataset {name!r}: the results call their averages" in err, err


def test_paired_comparison_counts_values_equal_but_for_rounding_as_ties():
    """Two rankings whose weighted tau is one number computed in another order (0.31972789115646266 and
    0.3197278911564626): A "won" on all 3 datasets, beyond 2 SE (SE 0)."""
    from modelrank.evaluate.evaluation import compare_methods

    first, second = [0.0, 1.0, 4.0, 5.0, 2.0, 3.0], [0.0, 3.0, 2.0, 5.0, 1.0, 4.0]
    truth = np.arange(6.0)
    assert 0 < weighted_tau(truth, first) - weighted_tau(truth, second) < 1e-15
    models = [f"m{i}" for i in range(6)]
    scores = pd.DataFrame({"Dataset": np.repeat(["a", "b", "c"], 6), "Model": models * 3, "A": first * 3, "B": second * 3})
    ev = evaluate(scores, scores[["Dataset", "Model"]].assign(accuracy=np.tile(50 + truth, 3)), measures=["weighted"])
    compared = compare_methods(ev, "A", "B").iloc[0]
    assert (compared["wins"], compared["losses"], compared["ties"]) == (0, 0, 3)
    assert compared["diff"] == 0.0 and not compared["beyond_2se"]


def test_names_in_another_unicode_normal_form_match():
    """"Café" read from a macOS file name (e + combining accent) and "café" typed: "no pair in common"."""
    import unicodedata

    scores = WIDE_SCORES.assign(Dataset=unicodedata.normalize("NFD", "Café-Pets"))
    truth = TRUTH[TRUTH["Dataset"] == "Pets"].assign(Dataset=unicodedata.normalize("NFC", "café pets"))
    assert value(evaluate(scores.iloc[:4], truth, measures=["kendall"]), "good", scores["Dataset"][0], "kendall") == 1.0


def test_a_dataset_with_one_model_in_common_is_counted_as_not_ranked():
    """"ranked 2 of 2" was printed for a method whose means are over 1 dataset: the other shared 1 model."""
    scores = WIDE_SCORES[(WIDE_SCORES["Dataset"] == "Pet") | (WIDE_SCORES["Model"] == "vit")]
    ev = evaluate(scores, TRUTH, measures=["kendall"])
    assert ev.ranked_tasks().to_dict() == {"good": "1 of 2", "bad": "1 of 2"}
    assert ev.no_ranking.query("method == 'good'")["reason"].tolist() == ["only 1 model in common with the ground truth"]
    assert np.isnan(value(ev, "good", "CIFAR10", "kendall")) and value(ev, "good", "mean", "kendall") == 1.0


def test_a_dataset_with_no_model_in_common_is_counted_as_not_ranked_and_said_so():
    """A method's dataset none of whose scored models has ground truth was dropped without a word: no row in the
    results, not counted in "ranked", no warning; a method with no other dataset was an empty row of the tables."""
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="method", value_name="score")
    good = long[long["method"] == "good"]
    other = good[good["Dataset"] == "CIFAR10"].assign(method="other", Model=lambda f: f["Model"] + "-new")
    elsewhere = good[good["Dataset"] == "Pet"].assign(method="elsewhere", Dataset="no-truth-here")
    ev = evaluate(pd.concat([long, other, elsewhere]), TRUTH, measures=["kendall"])
    assert ev.methods == ["good", "bad", "other"]  # "elsewhere" has no dataset with ground truth (warned)
    assert ev.ranked_tasks().to_dict() == {"good": "2 of 2", "bad": "2 of 2", "other": "0 of 1"}
    assert ev.no_ranking["reason"].tolist() == ["no model in common with the ground truth"]
    assert np.isnan(value(ev, "other", "CIFAR10", "kendall")) and np.isnan(value(ev, "other", "mean", "kendall"))
    assert "other / CIFAR10: 3 scored model(s) have no ground truth and were left out" in ev.warnings
    assert any("no-truth-here have no ground truth" in w for w in ev.warnings)


def test_bad_tables():
    with pytest.raises(InvalidInputError, match="no \\(dataset, model\\) pair in common"):
        evaluate(WIDE_SCORES.assign(Dataset=WIDE_SCORES["Dataset"] + "-other"), TRUTH)
    nan_scores = WIDE_SCORES.copy()
    nan_scores.loc[2, "good"] = np.nan  # a blank cell is a skipped metric: left out, and said so
    assert any("1 blank (skipped) cell" in w for w in evaluate(nan_scores, TRUTH).warnings)
    text_scores = WIDE_SCORES.astype({"good": object})
    text_scores.loc[2, "good"] = "abc"
    # the cell is quoted with its dataset and model: a row number would be counted from 0, without the header
    where = f"'abc' for dataset {WIDE_SCORES.loc[2, 'Dataset']}, model {WIDE_SCORES.loc[2, 'Model']}$"
    with pytest.raises(InvalidInputError, match=f"missing or non-numeric value\\(s\\), e.g. {where}"):
        evaluate(text_scores, TRUTH)
    truth = TRUTH.astype({"Accuracy": object})
    truth.loc[1, "Accuracy"] = np.inf
    with pytest.raises(InvalidInputError, match=f"'inf' for dataset {TRUTH.loc[1, 'Dataset']}, model {TRUTH.loc[1, 'Model']}$"):
        evaluate(WIDE_SCORES, truth)
    # A blank name: pandas keeps it missing even as text; groupings dropped the row without a word, and the
    # warning naming scored datasets without truth crashed on it (TypeError, exit 1).
    cut = pd.concat([TRUTH, pd.DataFrame({"Dataset": [np.nan], "Model": [np.nan], "Accuracy": [np.nan]})])
    with pytest.raises(InvalidInputError, match="1 row\\(s\\) without a dataset name"):
        evaluate(WIDE_SCORES, cut)  # a line cut short (TransferGraph's public score records have two)
    with pytest.raises(InvalidInputError, match="1 row\\(s\\) without a dataset name"):
        evaluate(WIDE_SCORES.assign(Dataset=["Pet", None] + list(WIDE_SCORES["Dataset"][2:])), TRUTH)
    long = WIDE_SCORES.melt(id_vars=["Dataset", "Model"], var_name="method", value_name="score")
    long.loc[0, "method"] = np.nan
    with pytest.raises(InvalidInputError, match="1 row\\(s\\) without a method name"):
        evaluate(long, TRUTH)
    with pytest.raises(InvalidInputError, match="no ground-truth value column"):
        evaluate(WIDE_SCORES, TRUTH.rename(columns={"Accuracy": "quality"}))
    with pytest.raises(InvalidInputError, match="unknown measure"):
        evaluate(WIDE_SCORES, TRUTH, measures=["tau_b"])
    # the labels the results carry were refused without a word of the options they stand for
    with pytest.raises(InvalidInputError, match=r"\(rel@3 is --tau rel --k 3; weighted_tau_model_spider is --tau "
                                                r"weighted --protocol model_spider\)"):
        evaluate(WIDE_SCORES, TRUTH, measures="rel@3,weighted_tau_model_spider")
    with pytest.raises(MissingResourceError):
        evaluate("/nonexistent/scores.csv", TRUTH)


def test_cli_tables_csv_and_plot(tmp_path):
    scores, truth, out, png = (tmp_path / n for n in ("s.csv", "t.csv", "r.csv", "p.png"))
    WIDE_SCORES.to_csv(scores, index=False)
    TRUTH.to_csv(truth, index=False)
    result = CliRunner().invoke(
        app, ["evaluate", "--scores", str(scores), "--truth", str(truth), "--out", str(out), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "weighted_tau" in result.stdout and "weighted_mean" in result.stdout and "ranked" in result.stdout
    written = pd.read_csv(out)
    assert list(written.columns) == ["method", "dataset", "measure", "value", "se", "n_tasks", "note"]
    assert set(written["dataset"]) == {"Pet", "CIFAR10", "mean", "weighted_mean"}
    assert pd.read_csv(out, dtype=str)["n_tasks"].str.isdigit().all()  # a count: 1, not 1.0
    assert set(written.loc[written["dataset"] == "Pet", "n_tasks"]) == {1}
    assert png.stat().st_size > 1000


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    scores, truth = tmp_path / "s.csv", tmp_path / "t.csv"
    WIDE_SCORES.assign(Dataset=WIDE_SCORES["Dataset"] + "-other").to_csv(scores, index=False)
    TRUTH.to_csv(truth, index=False)
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "modelrank.cli", "evaluate", "--scores", str(scores), "--truth", str(truth)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "no (dataset, model) pair in common" in done.stderr and "Traceback" not in done.stderr


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingResourceError, match="modelrank\\[plot\\]"):
        plot_evaluation(evaluate(WIDE_SCORES, TRUTH), tmp_path / "p.png")


def test_the_truths_own_column_read_as_a_score_is_left_out(tmp_path):
    """One table given as --scores and --truth: its accuracy column was a method that ranked perfectly and won."""
    table = pd.DataFrame({"dataset": "d", "model": ["a", "b", "c"], "logme": [3.0, 1.0, 2.0],
                          "accuracy": [0.9, 0.5, 0.7]})
    path = tmp_path / "both.csv"
    table.to_csv(path, index=False)
    ev = evaluate(path, path, measures=["kendall"])
    assert ev.methods == ["logme"] and any("accuracy" in w and "left out" in w for w in ev.warnings)
    with pytest.raises(InvalidInputError, match="are the ground truth itself"):
        evaluate(table.drop(columns="logme"), table, measures=["kendall"])
    renamed = evaluate(table.assign(noisy=table["accuracy"]), table, measures=["kendall"])  # not named as truth
    assert "noisy" in renamed.methods


NA_NAMES = ["NA", "None", "null", "nan", "#N/A", "<NA>"]  # pandas' missing-value words


def test_datasets_and_models_named_as_missing_values_are_names(cli, tmp_path):
    """pandas read a model called "NA" or "None" as missing: "row(s) without a model name", or a dropped row."""
    truth, scores, long = tmp_path / "t.csv", tmp_path / "s.csv", tmp_path / "long.csv"
    truth.write_text("dataset,model,accuracy\n" + "".join(f"{d},{m},0.{i + 1}\n" for d in ("NA", "null")
                                                           for i, m in enumerate(NA_NAMES)))
    # numbers keep pandas' missing values: "NA" as a score is a skipped cell, as a blank one is
    scores.write_text("Dataset,Model,logme\n" + "".join(f"{d},{m},{i if i else 'NA'}\n" for d in ("NA", "null")
                                                        for i, m in enumerate(NA_NAMES)))
    long.write_text("dataset,model,method,score\n" + "".join(f"NA,{m},None,{i}\n" for i, m in enumerate(NA_NAMES)))
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth), "--tau", "kendall",
                         "--format", "csv")
    rows = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert code == 0 and rows.set_index("dataset").loc[["NA", "null"], "value"].tolist() == pytest.approx([1, 1]), err
    assert "column 'logme' has 2 blank (skipped) cell(s)" in err
    code, out, err = cli("evaluate", "--scores", str(long), "--truth", str(truth), "--tau", "kendall",
                         "--format", "csv")
    rows = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert code == 0 and rows.loc[rows["dataset"] == "NA", "method"].tolist() == ["None"], err
    truth.write_text("dataset,model,accuracy\nd,NA,0.5\nd,,0.6\n")  # a blank name is still no name
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth))
    assert code == 2 and "1 row(s) without a model name" in err, err
    truth.write_text("dataset,model,accuracy\nd,NA,0.5\nd,b,nan\n")  # nor a missing accuracy a number
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth))
    assert code == 2 and "missing or non-numeric value(s), e.g. a blank or NaN cell for dataset d, model b" in err, err


def test_accuracies_in_percent_and_fractions(cli, tmp_path):
    """Across datasets percentages are made fractions (regret and the weighted mean's weights were 100x); within
    one dataset a fraction among percentages is warned (a percent table may hold a model at <= 1%)."""
    truth = pd.DataFrame({"dataset": ["a"] * 4 + ["b"] * 3, "model": ["m1", "m2", "m3", "m4", "m1", "m2", "m3"],
                          "accuracy": [85.0, 90.0, 80.0, 0.5, 0.7, 0.8, 0.9]})
    scores = pd.DataFrame({"dataset": truth["dataset"], "model": truth["model"], "logme": [1, 2, 3, 0, 1, 2, 3.0]})
    ev = evaluate(scores, truth, measures=["kendall", "regret"])
    assert value(ev, "logme", "a", "regret@1") == pytest.approx(0.1)  # 90% - 80%, as b's 0.0 is a fraction
    fractions = evaluate(scores, truth.assign(accuracy=truth["accuracy"].where(truth["dataset"] == "b",
                                                                               truth["accuracy"] / 100)), ["regret"])
    assert fractions.table("regret@1").loc["logme"].tolist() == pytest.approx(ev.table("regret@1").loc["logme"].tolist())
    assert ev.warnings == ["truth: accuracy is in percent on dataset(s) [a] but in fractions on [b]: the percentages are "
                           "divided by 100, so that regret@k and the weighted mean's dataset weights compare datasets on "
                           "one scale (rankings within a dataset do not change)"]  # m4 at 0.5%: a model near chance
    percent = evaluate(scores, truth.assign(accuracy=truth["accuracy"].where(truth["dataset"] == "a",
                                                                             truth["accuracy"] * 100)), ["regret"])
    assert not percent.warnings and value(percent, "logme", "a", "regret@1") == pytest.approx(10)  # in points
    mixed = truth.assign(accuracy=[85.0, 0.9, 80.0, 0.5, 70.0, 80.0, 90.0])
    (tmp_path / "t.csv").write_text(mixed.to_csv(index=False))
    (tmp_path / "s.csv").write_text(scores.to_csv(index=False))
    code, out, err = cli("evaluate", "--scores", str(tmp_path / "s.csv"), "--truth", str(tmp_path / "t.csv"))
    assert code == 0 and f"warning: {tmp_path / 't.csv'}: dataset a: accuracy of model(s) [m2] is at most 1 while the " \
        "others' are percentages (from 80): fractions among percentages?" in err, err
    losses = truth.assign(test_metric=truth["accuracy"]).drop(columns="accuracy")  # not named as an accuracy
    assert not evaluate(scores, losses, ["regret"]).warnings
    with pytest.raises(InvalidInputError, match=r"a single truth noise \(0.5\) has no one scale"):
        evaluate(scores, truth, ["kendall"], truth_noise=0.5)  # 0.5 points, or half the fraction scale?
    assert evaluate(scores, truth.assign(sd=0.01), ["kendall"], truth_noise="sd").measures[-1] == "noise_tau"


def test_columns_equal_up_to_letter_case_are_an_error_naming_both(cli, tmp_path):
    """A records CSV with `accuracy` and `Accuracy` was read silently: `evaluate` took the one, `spider` the other."""
    rows = [(f"t{j}", f"m{i}", 0.5 + 0.1 * i, 0.9 - 0.1 * i) for j in range(3) for i in range(4)]
    truth = tmp_path / "records.csv"
    pd.DataFrame(rows, columns=["dataset", "model", "accuracy", "Accuracy"]).to_csv(truth, index=False)
    scores = tmp_path / "scores.csv"
    pd.DataFrame([(d, m, float(m[1:])) for d, m, _, _ in rows], columns=["dataset", "model", "logme"]).to_csv(
        scores, index=False)
    for args in (["evaluate", "--scores", str(scores), "--truth", str(truth)],
                 ["spider", "train", str(truth), "--learner", "model_prior", "-o", str(tmp_path / "prior")],
                 ["spider", "eval", str(truth), "--learners", "random,model_prior"]):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1, (args, err)
        assert "columns 'accuracy' and 'Accuracy' differ only in letter case" in err, (args, err)
    assert not (tmp_path / "prior").exists()
    # the scores file too: which of `Dataset` and `dataset` names the datasets?
    pd.DataFrame(rows, columns=["dataset", "model", "accuracy", "test_accuracy"]).to_csv(truth, index=False)
    pd.DataFrame([(d, d, m, float(m[1:])) for d, m, _, _ in rows],
                 columns=["Dataset", "dataset", "model", "logme"]).to_csv(scores, index=False)
    code, _, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth))
    assert code == 2 and "columns 'Dataset' and 'dataset' differ only in letter case" in err, err


def test_method_names_with_bracketed_commas_pass_whole_to_compare_and_lower_is_better(cli, tmp_path):
    """`score --set knn.k=3 --set knn.metric=euclidean` names a column knn[k=3,metric=euclidean]: --compare and
    --lower-is-better cut it at the comma into two names that are no method."""
    knn = "knn[k=3,metric=euclidean]"
    scores, truth = tmp_path / "scores.csv", tmp_path / "truth.csv"
    WIDE_SCORES.rename(columns={"bad": knn}).to_csv(scores, index=False)
    TRUTH.to_csv(truth, index=False)
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth), "--tau", "kendall",
                         "--compare", f"{knn}, good", "--format", "json")
    compared = pd.read_json(io.StringIO(out))
    assert code == 0 and compared["first"].tolist() == [knn] and compared["wins"].tolist() == [0], err
    code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth), "--tau", "kendall",
                         "--lower-is-better", f"good,{knn}", "--format", "csv")
    results = pd.read_csv(io.StringIO(out)).set_index(["method", "dataset"])["value"]
    assert code == 0 and results[knn, "mean"] == 1.0 and results["good", "mean"] == -1.0, out + err
    # the library takes the same comma-separated string
    assert evaluate(scores, truth, measures="kendall", lower_is_better=knn).results.query(
        "method == @knn and dataset == 'mean'")["value"].item() == 1.0
    # a comma outside brackets still separates names (as `--compare logme,good`): the pieces are named
    for option, value, message in (("--lower-is-better", "my,method", "'method', 'my' (a comma outside [...]"),
                                   ("--compare", "my,method,good", "(3 names: 'my', 'method', 'good'; a comma")):
        code, out, err = cli("evaluate", "--scores", str(scores), "--truth", str(truth), option, value)
        assert code == 2 and message in err and err.count("\n") == 1, err
