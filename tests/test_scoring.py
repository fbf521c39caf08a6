"""Scoring API (score_feature_sets, feature files) and the `modelrank score` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelrank.cli import app, main
from modelrank.errors import InvalidInputError, MissingResourceError, UnknownNameError
from modelrank.features import FeatureSet
from modelrank.metrics import METRICS
from modelrank.metrics.base import MetricSpec
from modelrank.registry import Entry
from modelrank.scoring import load_feature_file, save_feature_file, score_feature_sets


def make_set(seed: int, signal: float, model: str, dataset: str = "toy", probs: bool = True) -> FeatureSet:
    rng = np.random.default_rng(seed)
    y = np.arange(240) % 4
    x = rng.normal(size=(240, 12)) + signal * np.eye(4, 12)[y]
    p = rng.dirichlet(np.ones(8), 240) if probs else None
    return FeatureSet(features=x, labels=y, model=model, dataset=dataset, source_probs=p)


# ------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_feature_file_round_trip(tmp_path, suffix):
    data = make_set(0, 1.0, "m")
    path = save_feature_file(data, tmp_path / f"resnet{suffix}")
    back = load_feature_file(path, dataset_name="pets")
    assert (back.model, back.dataset, back.task) == ("resnet", "pets", "classification")
    np.testing.assert_array_equal(back.features, data.features)
    np.testing.assert_array_equal(back.labels, data.labels)
    np.testing.assert_array_equal(back.source_probs, data.source_probs)


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_feature_file_round_trip_of_text_labels_in_an_object_array(tmp_path, suffix):
    """A pandas string column is an object array: .npz pickled it, and load_feature_file (no pickles) refused the
    file it had just written."""
    data = make_set(0, 1.0, "m")
    names = pd.Series(np.array(["cat", "dog", "émeu", "fox"])[data.labels]).to_numpy()
    assert names.dtype == object
    back = load_feature_file(save_feature_file(FeatureSet(data.features, names), tmp_path / f"text{suffix}"))
    assert back.labels.tolist() == names.tolist()
    numbers = load_feature_file(save_feature_file(FeatureSet(data.features, data.labels.astype(object)),
                                                  tmp_path / f"ids{suffix}"))
    assert numbers.labels.tolist() == data.labels.tolist()
    mixed = np.array(["cat", 1] * 120, dtype=object)  # would have become the text "1"
    with pytest.raises(InvalidInputError, match="cannot be saved to .npz"):
        save_feature_file(FeatureSet(data.features, mixed), tmp_path / "mixed.npz")


def test_parquet_variable_list_and_regression_targets(tmp_path):
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(30, 5)).astype(np.float32), rng.normal(size=(30, 2))
    table = pa.table({"features": pa.array(list(x)), "label": pa.FixedSizeListArray.from_arrays(pa.array(t.ravel()), 2)})
    pq.write_table(table, tmp_path / "f.parquet")
    back = load_feature_file(tmp_path / "f.parquet", model_name="enc")
    assert back.model == "enc" and back.task == "regression" and back.source_probs is None
    np.testing.assert_array_equal(back.features, x)
    np.testing.assert_array_equal(back.labels, t)


def test_bad_feature_files(tmp_path):
    with pytest.raises(MissingResourceError):
        load_feature_file(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InvalidInputError, match="not an .npz"):
        load_feature_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "nolabels.npz", features=np.zeros((3, 2)))
    with pytest.raises(InvalidInputError, match="'labels'"):
        load_feature_file(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "short.npz", features=np.zeros((3, 2)), labels=np.zeros(2))
    with pytest.raises(InvalidInputError, match="2 labels for 3"):
        load_feature_file(tmp_path / "short.npz")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_feature_file(tmp_path / "bad.parquet")
    # each crashed `score` (exit 1): an IndexError on the shape, a TypeError sorting None or dicts among the labels
    np.savez(tmp_path / "scalar.npz", features=np.zeros((3, 2)), labels=np.array(1))
    with pytest.raises(InvalidInputError, match="one label per feature row, got a single value"):
        load_feature_file(tmp_path / "scalar.npz")
    rows = pa.array([[1.0, 2.0]] * 3)
    pq.write_table(pa.table({"features": rows, "label": ["cat", None, "dog"]}), tmp_path / "gap.parquet")
    with pytest.raises(InvalidInputError, match="1 of 3 labels are missing"):
        load_feature_file(tmp_path / "gap.parquet")
    pq.write_table(pa.table({"features": rows, "label": [0, None, 1]}), tmp_path / "int_gap.parquet")
    with pytest.raises(InvalidInputError, match="1 of 3 labels are missing"):  # was "labels are NaN or inf"
        load_feature_file(tmp_path / "int_gap.parquet")
    pq.write_table(pa.table({"features": rows, "label": [{"a": 1}] * 3}), tmp_path / "struct.parquet")
    with pytest.raises(InvalidInputError, match="labels must be numbers or class names"):
        load_feature_file(tmp_path / "struct.parquet")
    np.savez(tmp_path / "dates.npz", features=np.zeros((3, 2)), labels=np.zeros(3, dtype="datetime64[s]"))
    with pytest.raises(InvalidInputError, match="not datetime64\\[s\\] values"):
        load_feature_file(tmp_path / "dates.npz")  # the linear probe's content hash crashed on them
    np.savez(tmp_path / "ok.npz", features=np.zeros((3, 2)), labels=np.arange(3))
    with pytest.raises(InvalidInputError, match="the model name 'caf\\\\udce9' is not UTF-8 text"):
        load_feature_file(tmp_path / "ok.npz", "caf\udce9")  # a Latin-1 byte in argv or a file name crashed pandas
    np.savez(tmp_path / "text.npz", features=np.zeros((3, 2)).astype(str), labels=np.arange(3))
    with pytest.raises(InvalidInputError, match="features must be real numbers, got dtype <U32"):
        load_feature_file(tmp_path / "text.npz")  # the linear probe's finiteness check crashed on them
    pq.write_table(pa.table({"features": pa.array([[1.0, 2.0], [3.0]]), "label": [0, 1]}), tmp_path / "ragged.parquet")
    with pytest.raises(InvalidInputError, match="different lengths"):
        load_feature_file(tmp_path / "ragged.parquet")
    with pytest.raises(InvalidInputError, match="task must be one of"):
        load_feature_file(tmp_path / "short.npz", task="ranking")
    (tmp_path / "f.csv").write_text("x")
    with pytest.raises(InvalidInputError, match="unsupported"):
        load_feature_file(tmp_path / "f.csv")


# --------------------------------------------------------------------------------------------- API
def test_score_table_shape_and_order():
    sets = [make_set(0, 0.3, "weak"), make_set(1, 2.0, "strong"), make_set(2, 1.0, "mid", dataset="other")]
    frame = score_feature_sets(sets, ["logme", "lfc", "leep"])
    assert list(frame.columns) == ["Dataset", "Model", "logme", "lfc", "leep",
                                   "logme_seconds", "lfc_seconds", "leep_seconds",
                                   "logme_flags", "lfc_flags", "leep_flags"]  # fmt: skip
    assert list(zip(frame.Dataset, frame.Model)) == [("toy", "weak"), ("toy", "strong"), ("other", "mid")]
    assert frame[["logme", "lfc", "leep"]].notna().all().all()
    assert (frame[["logme_seconds", "lfc_seconds"]] >= 0).all().all()
    toy = frame[frame.Dataset == "toy"].set_index("Model")
    assert toy.loc["strong", "logme"] > toy.loc["weak", "logme"]
    assert frame.attrs["higher_is_better"] == {"logme": True, "lfc": True, "leep": True}


def test_named_metric_with_missing_input_is_refused():
    sets = [make_set(0, 1.0, "a"), make_set(1, 1.0, "b", probs=False)]
    with pytest.raises(InvalidInputError, match="'leep' needs source_probs, which b on toy"):
        score_feature_sets(sets, ["leep"])
    with pytest.raises(UnknownNameError):
        score_feature_sets(sets, ["no_such_metric"])
    with pytest.raises(InvalidInputError, match="not being scored"):
        score_feature_sets(sets, ["lfc"], nleep={"seed": 1})


def test_all_skips_with_notes():
    sets = [make_set(0, 1.0, "a"), make_set(1, 1.0, "b", probs=False)]
    reg = FeatureSet(features=sets[0].features, labels=sets[0].features[:, 0] * 3.0 + 0.5, model="r",
                     dataset="age", task="regression")  # fmt: skip
    frame = score_feature_sets([*sets, reg], "all")
    by = frame.set_index(["Dataset", "Model"])
    assert np.isnan(by.loc[("toy", "b"), "leep"]) and np.isfinite(by.loc[("toy", "a"), "leep"])
    assert np.isfinite(by.loc[("age", "r"), "logme"]) and np.isnan(by.loc[("age", "r"), "hscore"])
    notes = "\n".join(frame.attrs["notes"])
    assert "skipped: leep on toy for 1 model(s) [b]: metric 'leep' needs source_probs, which each of them" in notes
    assert "skipped: hscore on age for 1 model(s) [r]: metric 'hscore' supports classification tasks, not regression" \
        in notes
    # one note per metric and reason, naming the models: 8 models without source_probs were 8 notes per metric
    headless = [make_set(i, 1.0, f"m{i}", probs=False) for i in range(8)]
    notes = score_feature_sets(headless, "all").attrs["notes"]
    leep = [note for note in notes if note.startswith("skipped: leep on")]
    assert leep == ["skipped: leep on toy for 8 model(s) [m0, m1, m2, m3, m4, m5, ... 8 in all]: metric 'leep' needs "
                    "source_probs, which each of them does not have"]
    assert all(note.count("model(s)") == 1 for note in notes if note.startswith("skipped: "))


def test_params_are_routed_per_metric():
    sets = [make_set(0, 1.0, "a")]
    default = score_feature_sets(sets, ["gbc"]).loc[0, "gbc"]
    frame = score_feature_sets(sets, ["gbc", "lfc"], gbc={"gaussian_type": "spherical"})
    # a non-default setting names its column, so it can never be mistaken for the default score
    assert list(frame.columns[2:4]) == ["gbc[gaussian_type=spherical]", "lfc"]
    assert frame.attrs["higher_is_better"] == {"gbc[gaussian_type=spherical]": True, "lfc": True}
    spherical = frame.loc[0, "gbc[gaussian_type=spherical]"]
    assert spherical == pytest.approx(score_feature_sets(sets, ["gbc_spherical"]).loc[0, "gbc_spherical"])
    assert spherical != default


def test_metric_flags_are_recorded_and_still_shown():
    """A metric's MetricFlagWarning (here LogME's 11-step cap, hit by 3-sample classes) marks that score in
    ``attrs["flags"]`` and its ``<metric>_flags`` cell, and its message becomes a note."""
    rng = np.random.default_rng(3)
    y = np.r_[np.repeat([0, 1, 2], 3), rng.integers(3, 6, 200)]
    few = FeatureSet(features=rng.normal(size=(len(y), 30)) + 0.3 * rng.normal(size=(6, 30))[y], labels=y,
                     model="few", dataset="toy")  # fmt: skip
    frame = score_feature_sets([few, make_set(0, 2.0, "plain")], ["logme", "lfc"])
    flagged = [(f["Model"], f["metric"], f["flag"]) for f in frame.attrs["flags"]]
    assert ("few", "logme", "not_converged") in flagged and all(f[1] == "logme" for f in flagged)
    assert frame.set_index("Model").loc["few", "logme_flags"] == "not_converged"
    assert any(note.startswith("not_converged: logme on toy for 1 model(s) [few]: LogME: ")
               for note in frame.attrs["notes"])
    converged = score_feature_sets([few], ["logme"], logme={"preset": "converged"})
    assert converged.attrs["flags"] == [] and np.isfinite(converged.iloc[0, 2])


def test_zoo_level_metric_scored_per_dataset(monkeypatch):
    calls = []

    def zoo_norm(by_model):
        """Test zoo metric: the feature norm min-max normalised across the zoo."""
        calls.append(sorted(by_model))
        raw = {m: float(np.linalg.norm(fs.features)) for m, fs in by_model.items()}
        lo, hi = min(raw.values()), max(raw.values())
        return {m: (v - lo) / (hi - lo) for m, v in raw.items()}

    spec = MetricSpec("zoo_norm", zoo_norm, ("features",), ("classification",), True, "", zoo_level=True)
    monkeypatch.setitem(METRICS._entries, "zoo_norm", Entry("zoo_norm", spec))
    sets = [make_set(0, 0.1, "a"), make_set(1, 3.0, "b"), make_set(2, 1.0, "c", dataset="d2"),
            make_set(3, 2.0, "e", dataset="d2")]  # fmt: skip
    frame = score_feature_sets(sets, ["zoo_norm"]).set_index("Model")
    assert calls == [["a", "b"], ["c", "e"]]
    assert frame.loc["a", "zoo_norm"] == 0.0 and frame.loc["b", "zoo_norm"] == 1.0
    assert frame["zoo_norm_seconds"].notna().all()


def test_saturated_scores_are_flagged_not_printed(recwarn):
    rng = np.random.default_rng(0)
    y = np.arange(20) % 4
    few = [FeatureSet(features=rng.normal(size=(20, 32)), labels=y, model=m, dataset="small") for m in "ab"]
    frame = score_feature_sets([*few, make_set(0, 1.0, "c")], ["hscore", "sfda", "lfc"])
    by = frame.set_index("Model")
    assert by.loc["a", "hscore_flags"] == by.loc["b", "sfda_flags"] == "saturated"  # N <= D: saturated
    assert by.loc["c", "hscore_flags"] == by.loc["c", "sfda_flags"] == by.loc["a", "lfc_flags"] == ""
    assert by.loc["a", "hscore"] == pytest.approx(3.0)  # C - 1
    notes = [n for n in frame.attrs["notes"] if n.startswith("saturated: ")]
    assert len(notes) == 2 and any("H-Score" in n for n in notes)  # one note per message, not per model
    assert not [w for w in recwarn if "saturate" in str(w.message)]


def test_saturation_of_many_models_is_one_note_per_metric_naming_them(tmp_path, cli):
    """Each model's message names its own feature dimension: 8 saturated models were 8 notes per metric (on stderr),
    none naming its model."""
    y = np.arange(20) % 4
    sets = [FeatureSet(features=np.random.default_rng(i).normal(size=(20, 30 + i)), labels=y, model=f"m{i}",
                       dataset="small") for i in range(8)]  # fmt: skip
    frame = score_feature_sets(sets, ["hscore", "lfc"])
    notes = [n for n in frame.attrs["notes"] if n.startswith("saturated: ")]
    assert notes == ["saturated: hscore on small for 8 model(s) [m0, m1, m2, m3, m4, m5, ... 8 in all]: H-Score with "
                     "20 samples and 30-d features (N <= D + 1): the covariance is singular and the score saturates at "
                     "C - 1 = 3 for every model; use hscore_reg or more samples (m0's; 8 different messages)"]
    assert len(frame.attrs["flags"]) == 8 and "37-d" in frame.attrs["flags"][-1]["message"]  # each model's kept
    files = [str(save_feature_file(fs, tmp_path / f"{fs.model}.npz")) for fs in sets]
    code, out, err = cli("score", *[a for f in files for a in ("--features", f)], "--dataset-name", "small",
                         "--metric", "hscore,lfc")
    assert code == 0 and err.count("saturated: hscore on small for 8 model(s)") == 1, err
    assert "no ranking: hscore on small: saturated for all 8 models" in out and "H-Score with" not in out


def test_logme_interpolating_a_target_is_a_saturation():
    from modelrank.metrics.base import SaturationWarning
    from modelrank.metrics.logme import max_evidence

    sigma, projected = np.array([1e10, 1.0, 1e-3]), np.array([[1e5], [0.0], [0.0]])
    with pytest.warns(SaturationWarning, match="interpolate 1 of 1 targets"):
        max_evidence(sigma, projected, (projected**2).sum(axis=0), 3)


# --------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def two_files(tmp_path):
    return [
        str(save_feature_file(make_set(0, 0.3, "x"), tmp_path / "weak.npz")),
        str(save_feature_file(make_set(1, 2.0, "x"), tmp_path / "strong.parquet")),
    ]


def test_cli_score_writes_csv_and_ranks(tmp_path, two_files):
    out = tmp_path / "scores.csv"
    args = ["score", "--features", two_files[0], "--features", two_files[1], "--dataset-name", "toy",
            "--metric", "logme,lfc", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    # piped: plain columns, models by mean rank, the strong one first with rank 1 on both metrics
    header, first, second = result.stdout.splitlines()[:3]
    assert header.split() == ["Dataset", "Model", "mean_rank", "logme", "logme_rank", "lfc", "lfc_rank"]
    assert first.split()[1:3] == ["strong", "1.0"] and first.split()[4] == first.split()[6] == "1"
    assert second.split()[1] == "weak"
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["Dataset", "Model", "logme", "lfc", "logme_seconds", "lfc_seconds",
                                   "logme_flags", "lfc_flags", "logme_rank", "lfc_rank"]
    assert frame.shape == (2, 10) and set(frame.Model) == {"weak", "strong"}
    assert frame.set_index("Model").loc["strong", ["logme_rank", "lfc_rank"]].tolist() == [1.0, 1.0]
    piped = CliRunner().invoke(app, [*args[:-2], "--out", "-", "--bootstrap", "5"])
    assert piped.exit_code == 0, piped.output
    from io import StringIO

    csv = pd.read_csv(StringIO(piped.stdout))  # only the CSV on stdout
    assert {"logme_low", "logme_high", "logme_p_best"} <= set(csv.columns)
    assert csv["logme_p_best"].sum() == pytest.approx(1.0)
    as_json = CliRunner().invoke(app, [*args[:-2], "--format", "json"])
    import json

    assert {row["Model"] for row in json.loads(as_json.stdout)} == {"weak", "strong"}


def test_score_table_ties_no_ranking_and_80_columns():
    from modelrank.cli._score_table import footnotes as _footnotes, score_tables as _score_tables
    from modelrank.scoring import rank_scores
    from rich.console import Console

    frame = pd.DataFrame({"Dataset": "animal-mnist", "Model": ["efficientnet_lite0", "efficientnet_lite1",
                                                               "random:tf_efficientnet_lite0"],
                          "hscore": [8.999999999999998, 9.000000000000005, 9.000000000000002],
                          "hscore_flags": "saturated", "sfda": [1.0, 1.0, 1.0], "sfda_flags": "",
                          "logme": [0.5, 0.5 + 1e-12, 0.1], "logme_flags": "", "lfc": [0.3, 0.2, 0.1], "lfc_flags": ""})
    frame.attrs["higher_is_better"] = {"hscore": True, "sfda": True, "logme": True, "lfc": True}
    ranked = rank_scores(frame)
    assert ranked["hscore_rank"].isna().all() and ranked["sfda_rank"].isna().all()
    assert ranked["logme_rank"].tolist() == [1.5, 1.5, 3.0]
    assert ranked.attrs["mean_rank"].tolist() == [1.25, 1.75, 3.0]
    console = Console(width=80, record=True, force_terminal=True)
    for table in _score_tables(ranked, 80):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "9* (—)" in text and "1 (—)" in text and "0.5 (1=)" in text and "0.1 (3)" in text
    assert text.index("efficientnet_lite0") < text.index("random:tf_efficientnet_lite0")
    notes = "\n".join(_footnotes(ranked))
    assert "no ranking: hscore on animal-mnist: saturated for all 3 models" in notes
    assert "no ranking: sfda on animal-mnist: all 3 scores are equal (1)" in notes


def test_score_table_blocks_fit_the_width_without_cutting_a_cell():
    """Each column costs its width + 3 (padding on both sides, the divider): counted as + 2, a block of six
    metrics was 4 columns wider than the terminal and rich cut its last cells to "-0.300024 (…"."""
    from modelrank.cli._score_table import score_tables
    from modelrank.scoring import rank_scores
    from rich.console import Console

    metrics = ["otce_sf", "pactran_dir", "pactran_gamma", "pactran_gauss", "parc", "ped_gbc", "ped_logme"]
    frame = pd.DataFrame({"Dataset": "custom", "Model": ["twin1", "bad"],
                          **{m: [-0.300024 - i, -10.0982 - i] for i, m in enumerate(metrics)},
                          **{f"{m}_flags": "" for m in metrics}})
    frame.attrs["higher_is_better"] = dict.fromkeys(metrics, True)
    ranked = rank_scores(frame)
    for width in range(60, 130):
        console = Console(width=width, record=True, force_terminal=True)
        for table in score_tables(ranked, width):
            console.print(table)
        text = console.export_text()
        assert "…" not in text, (width, text)
        assert all(f"{m} ↑" in text for m in metrics)


def test_score_table_folds_a_long_model_name_and_keeps_the_scores_whole():
    """A model name wider than the terminal took the whole width: rich cut every score and the mean rank to "…"."""
    from modelrank.cli._score_table import score_tables
    from modelrank.scoring import rank_scores
    from rich.console import Console

    name = "a_fine_tuned_model_whose_name_says_everything_about_how_it_was_trained_and_on_which_data_v2"
    frame = pd.DataFrame({"Dataset": "custom", "Model": [name, "short"], "logme": [0.485098, -0.337238],
                          "leep": [-1.36753, -1.36688], "logme_flags": "", "leep_flags": ""})
    frame.attrs["higher_is_better"] = {"logme": True, "leep": True}
    for width in (40, 80):
        console = Console(width=width, record=True, force_terminal=True)
        for table in score_tables(rank_scores(frame), width):
            console.print(table)
        text = console.export_text()
        assert "…" not in text and "0.485098 (1)" in text and "-1.36688 (1)" in text and "1.50" in text
        assert name[:12] in text and "on_which_data_v2" in text


def test_the_saturation_mark_is_explained_when_a_score_has_several_flags():
    from modelrank.cli._score_table import footnotes, plain_frame
    from modelrank.scoring import rank_scores

    frame = pd.DataFrame({"Dataset": "d", "Model": ["a", "b", "c"], "logme": [0.5, 0.3, 0.1],
                          "logme_flags": ["not_converged;saturated", "", ""]})
    frame.attrs["higher_is_better"] = {"logme": True}
    ranked = rank_scores(frame)
    table = plain_frame(ranked).set_index("Model")
    assert table.loc["a", "logme"] == "0.5*"
    assert any(line.startswith("* saturated:") and "not ranked (logme)" in line for line in footnotes(ranked))


def test_a_saturated_score_is_not_ranked_and_never_best():
    """H-Score of a model with N <= D saturates at C - 1, the metric's ceiling: it ranked first among models whose
    features are small enough to be scored, a winner made by the data's size, not by transfer."""
    from modelrank.scoring import rank_scores

    frame = pd.DataFrame({"Dataset": ["d"] * 4 + ["e"] * 2, "Model": ["a", "b", "c", "d", "a", "b"],
                          "hscore": [9.0, 6.7, 5.2, 6.7 + 1e-12, 9.0, 3.0],
                          "hscore_flags": ["saturated", "", "", "", "saturated", ""]})
    frame.attrs["higher_is_better"] = {"hscore": True}
    ranked = rank_scores(frame)
    assert np.isnan(ranked["hscore_rank"][0]) and ranked["hscore_rank"][1:4].tolist() == [1.5, 3.0, 1.5]
    assert ranked["hscore_rank"][4:].isna().all()  # the lone unsaturated model of e wins nothing either
    assert ranked.attrs["no_ranking"] == [("e", "hscore", "saturated for 1 of 2 models")]
    assert np.isnan(ranked.attrs["mean_rank"][0])


def test_names_in_rich_tables_are_shown_as_given():
    """rich's escape() doubles a trailing backslash, which the table then showed: model "x\\" read "x\\\\"."""
    from modelrank.cli._output import frame_table
    from modelrank.cli._score_table import score_tables
    from modelrank.evaluate.evaluation import evaluate
    from modelrank.evaluate.report import evaluation_tables
    from modelrank.scoring import rank_scores
    from rich.console import Console

    names = ["[bold]x[/]\\", "dir\\", "m[1]"]
    frame = pd.DataFrame({"Dataset": "d[/]\\", "Model": names, "logme": [0.5, 0.3, 0.1], "logme_flags": ""})
    frame.attrs["higher_is_better"] = {"logme": True}
    truth = pd.DataFrame({"dataset": "d[/]\\", "model": names, "accuracy": [0.9, 0.5, 0.1]})
    scores = pd.DataFrame({"Dataset": "d[/]\\", "Model": names, "a\\": [0.5, 0.3, 0.1], "b": [0.1, 0.3, 0.5]})
    console = Console(width=200, record=True, force_terminal=True)
    for table in [*score_tables(rank_scores(frame), 200), *evaluation_tables(evaluate(scores, truth, "kendall")),
                  frame_table(frame[["Dataset", "Model"]], "in [red]")]:
        console.print(table)
    text = console.export_text()
    assert "[bold]x[/]\\ " in text and "dir\\ " in text and "m[1]" in text and "in [red]" in text
    assert "d[/]\\: score" in text and " a\\ " in text and "d[/]\\ " in text and "\\\\" not in text


def test_a_metric_that_scored_one_model_ranks_nothing():
    """With --metric all, a model with a source head was the only one LEEP, NCE, PACTran, ... scored: it was
    ranked 1 (best, bold) on each of them, and those rank-1s lifted it above a better model in the mean rank."""
    from modelrank.scoring import rank_scores

    frame = pd.DataFrame({"Dataset": "d", "Model": ["strong", "headed"], "logme": [0.5, 0.1], "logme_flags": "",
                          "leep": [np.nan, -1.3], "leep_flags": "", "nce": [np.nan, -1.2], "nce_flags": ""})
    frame.attrs["higher_is_better"] = {"logme": True, "leep": True, "nce": True}
    ranked = rank_scores(frame)
    assert ranked["leep_rank"].isna().all() and ranked["nce_rank"].isna().all()
    assert ranked.attrs["mean_rank"].tolist() == [1.0, 2.0]
    assert ("d", "leep", "only 1 model scored (headed)") in ranked.attrs["no_ranking"]


def test_a_metric_that_ranks_nothing_names_no_probable_best():
    """Bootstrap P(best) was 1.0 for the one model a metric scored, and shared among models it cannot tell apart."""
    from modelrank.cli._score_table import score_tables
    from modelrank.scoring import rank_scores
    from rich.console import Console

    frame = pd.DataFrame({"Dataset": "d", "Model": ["a", "b"], "logme": [0.5, 0.1], "leep": [np.nan, -1.3],
                          "lfc": [0.2, 0.2], **{f"{m}_{s}": v for m in ("logme", "leep", "lfc")
                                               for s, v in (("low", 0.0), ("high", 1.0))},
                          "logme_p_best": [0.9, 0.1], "leep_p_best": [np.nan, 1.0], "lfc_p_best": [0.5, 0.5]})
    frame.attrs.update(higher_is_better={"logme": True, "leep": True, "lfc": True},
                       bootstrap={"resamples": 10, "seed": 0, "level": 0.95, "exact": False})
    ranked = rank_scores(frame)
    assert ranked["leep_p_best"].isna().all() and ranked["lfc_p_best"].isna().all()
    assert ranked["logme_p_best"].tolist() == [0.9, 0.1]
    console = Console(width=200, record=True, force_terminal=True)
    for table in score_tables(ranked, 200):
        console.print(table)
    text = console.export_text()
    assert text.count("P(best)") == 2 and "nan" not in text


def test_score_footnotes_give_each_reason_once_per_dataset():
    """A single model scored with --metric all printed "only 1 model scored" once for each of 22 metrics."""
    from modelrank.cli._score_table import footnotes
    from modelrank.scoring import rank_scores

    frame = pd.DataFrame({"Dataset": ["d", "e", "e"], "Model": ["a", "a", "b"], "logme": [0.5, 0.1, 0.1],
                          "lfc": [0.2, 0.3, 0.1], "knn": [0.4, 0.9, 0.9]})
    frame.attrs["higher_is_better"] = {"logme": True, "lfc": True, "knn": True}
    assert footnotes(rank_scores(frame)) == ["no ranking: logme, lfc, knn on d: only 1 model scored (a)",
                                             "no ranking: logme on e: all 2 scores are equal (0.1)",
                                             "no ranking: knn on e: all 2 scores are equal (0.9)"]


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["modelrank", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr()


def test_cli_named_metric_missing_input_exits_2(monkeypatch, capsys, tmp_path):
    headless = str(save_feature_file(make_set(0, 1.0, "x", probs=False), tmp_path / "headless.npz"))
    code, captured = run_main(monkeypatch, capsys, "score", "--features", headless, "--metric", "nce,lfc")
    assert code == 2
    assert "'nce' needs source_probs, which headless on custom does not have" in captured.err
    assert "Traceback" not in captured.err


def test_cli_usage_errors_exit_2(monkeypatch, capsys, two_files):
    code, captured = run_main(monkeypatch, capsys, "score", "--features", two_files[0], "-d", "pets", "-m", "a")
    assert code == 2 and "either --features" in captured.err and "Traceback" not in captured.err
    code, captured = run_main(monkeypatch, capsys, "score", "--features", two_files[0], "--model-name", "a",
                              "--model-name", "b")  # fmt: skip
    assert code == 2 and "2 --model-name for 1" in captured.err


def test_cli_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"\x00garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "modelrank.cli", "score", "--features", str(bad)],
        capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "broken.npz is not an .npz" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_dataset_and_models_use_load_feature_pairs(monkeypatch, tmp_path):
    import modelrank.extraction

    calls = []

    def fake_load_feature_pairs(pairs, split="train", **options):
        calls.append((list(pairs), split, options["limit"]))
        return {(m, d): make_set(i + 1, float(i + 1), m, dataset=d) for i, (m, d) in enumerate(pairs)}

    monkeypatch.setattr(modelrank.extraction, "load_feature_pairs", fake_load_feature_pairs)
    out = tmp_path / "s.csv"
    args = ["score", "-d", "pets", "-m", "resnet18,vit_small_patch16_224", "--limit", "240", "--metric", "lfc", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [([("resnet18", "pets"), ("vit_small_patch16_224", "pets")], None, 240)]
    frame = pd.read_csv(out)
    assert list(frame.Model) == ["resnet18", "vit_small_patch16_224"] and set(frame.Dataset) == {"pets"}


@pytest.mark.parametrize("output", [["--format", "json"], ["--format", "csv"], ["--out", "-"]])
def test_cli_data_on_stdout_says_why_a_metric_ranks_nothing_on_stderr(cli, tmp_path, output):
    """The table's footnotes were the only place the reasons were given: with --format json|csv or --out - the
    ranks were blank without a word."""
    import io
    import json

    same = save_feature_file(make_set(0, 1.0, "x"), tmp_path / "a.npz")
    code, out, err = cli("score", "--features", str(same), "--features", str(same), "--model-name", "a",
                         "--model-name", "b", "--metric", "lfc", *output)
    assert code == 0, err
    assert "no ranking: lfc on custom: all 2 scores are equal" in err and "no ranking" not in out
    frame = pd.DataFrame(json.loads(out)) if "json" in output else pd.read_csv(io.StringIO(out))
    assert frame["lfc_rank"].isna().all() and len(frame) == 2


def test_cli_json_scores_are_exact_like_the_csv(cli, tmp_path):
    """pandas' JSON writer keeps 15 decimal places: two models' TransRate of 1.85e-15 and 1.78e-15 (features at a
    1e-9 scale) were both 0.000000000000002 in --format json, one ranked above the other, while the CSV showed them
    apart."""
    import io
    import json

    files = []
    for name, scale in (("a", 1e-9), ("b", 1.1e-9)):
        data = make_set(1, 1.0, name)
        data.features = data.features * scale
        files += ["--features", str(save_feature_file(data, tmp_path / f"{name}.npz"))]
    outputs = {fmt: cli("score", *files, "--metric", "transrate,lfc", "--format", fmt) for fmt in ("json", "csv")}
    assert all(code == 0 for code, _, _ in outputs.values()), outputs
    as_json = pd.DataFrame(json.loads(outputs["json"][1]))
    as_csv = pd.read_csv(io.StringIO(outputs["csv"][1]))
    assert (as_json["transrate"].abs() < 1e-12).all() and as_json["transrate"].nunique() == 2
    for column in ("transrate", "lfc", "transrate_rank"):
        assert as_json[column].tolist() == as_csv[column].tolist(), column


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("where", ["features", "source_probs", "labels"])
def test_cli_nan_or_inf_in_one_file_is_an_input_error_before_any_metric(cli, tmp_path, monkeypatch, suffix, where):
    """Under --metric all a NaN in one model's file made every metric skip that model (a note each), ranked the
    others without it and exited 0; a malformed file is now refused on reading, before any metric runs."""
    import modelrank.scoring

    good = save_feature_file(make_set(0, 1.0, "good"), tmp_path / f"good{suffix}")
    bad = make_set(1, 1.0, "bad")
    if where == "labels":
        bad.labels = bad.labels.astype(float)
    getattr(bad, where)[5] = np.inf if where == "labels" else np.nan
    bad = save_feature_file(bad, tmp_path / f"bad{suffix}")
    monkeypatch.setattr(modelrank.scoring, "compute_metric", lambda *a, **k: pytest.fail("a metric ran"))
    code, out, err = cli("score", "--features", str(good), "--features", str(bad), "--metric", "all")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"bad{suffix}: " in err and "NaN or inf" in err and where in err


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("empty", ["samples", "dimensions", "source classes"])
def test_cli_an_empty_feature_file_is_an_input_error_before_any_metric(cli, tmp_path, monkeypatch, suffix, empty):
    """No samples, no feature dimensions or no source classes: under --metric all every metric skipped that model (a
    note each), the others were ranked without it, exit 0."""
    import modelrank.scoring

    good = save_feature_file(make_set(0, 1.0, "good"), tmp_path / f"good{suffix}")
    n = 0 if empty == "samples" else 240
    features = np.zeros((n, 0 if empty == "dimensions" else 12))
    probs = np.full((n, 0 if empty == "source classes" else 2), 0.5)
    labels = np.arange(n) % 4
    path = tmp_path / f"empty{suffix}"
    if suffix == ".npz":
        np.savez(path, features=features, labels=labels, source_probs=probs)
    else:  # lists of any length (a fixed-size list cannot be empty)
        pq.write_table(pa.table({"features": pa.array(features.tolist(), pa.list_(pa.float64())),
                                 "label": pa.array(labels, pa.int64()),
                                 "source_probs": pa.array(probs.tolist(), pa.list_(pa.float64()))}), path)
    monkeypatch.setattr(modelrank.scoring, "compute_metric", lambda *a, **k: pytest.fail("a metric ran"))
    code, out, err = cli("score", "--features", str(good), "--features", str(path), "--metric", "all")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"empty{suffix}: " in err and ("features are empty" in err or "source_probs must have shape" in err)


@pytest.mark.parametrize("broken", ["text targets", "one sample"])
def test_cli_all_with_a_model_no_metric_can_score_is_an_input_error(cli, tmp_path, broken):
    """Under --metric all every metric skipped such a model (a note each), the others were ranked without it, and
    the run exited 0 as if it had been scored."""
    import io

    good = make_set(0, 1.0, "good", probs=False)
    bad = make_set(1, 1.0, "bad", probs=False)
    task = []
    if broken == "text targets":
        good.labels, bad.labels = good.features[:, 0], np.array(["a", "b"])[np.arange(240) % 2]
        task = ["--task", "regression"]
    else:
        bad.features, bad.labels = bad.features[:1], bad.labels[:1]
    files = []
    for fs in (good, bad):
        files += ["--features", str(save_feature_file(fs, tmp_path / f"{fs.model}.npz"))]
    code, out, err = cli("score", *files, "--metric", "all", *task, "--format", "csv")
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no metric could score [bad/custom] (the notes above say why)"), last
    frame = pd.read_csv(io.StringIO(out))  # the other model's scores are kept
    assert frame.set_index("Model").loc["good", ["logme", "transrate"]].notna().all()


def test_cli_ped_scores_the_ped_variants(tmp_path, two_files):
    out = tmp_path / "ped.csv"
    args = ["score", "--features", two_files[0], "--features", two_files[1], "--metric", "logme", "--ped", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ped_logme" in pd.read_csv(out).columns


def test_cli_set_passes_metric_parameters(monkeypatch, capsys, tmp_path, two_files):
    from modelrank.metrics.ped import ped
    from modelrank.metrics.transrate import transrate

    out = tmp_path / "set.csv"
    args = ["score", "--features", two_files[0], "--metric", "transrate,lfc", "--set", "transrate.eps=0.01",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    data = load_feature_file(two_files[0])
    assert frame.loc[0, "transrate[eps=0.01]"] == pytest.approx(transrate(data.features, data.labels, eps=0.01))
    ped_out = tmp_path / "ped_set.csv"
    args = ["score", "--features", two_files[0], "--metric", "logme", "--ped", "--set", "logme.steps=2",
            "--out", str(ped_out)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    assert pd.read_csv(ped_out).loc[0, "ped_logme[steps=2]"] == pytest.approx(
        ped("logme")(data.features, data.labels, steps=2))
    for bad, message in ((["--set", "transrate.epsilon=1"], "no parameter 'epsilon' (its parameters: eps, class_weighting"),
                         (["--set", "transrate=1"], "METRIC.KEY=VALUE"),
                         (["--set", "gbc.pca_dims=4"], "not being scored")):
        code, captured = run_main(monkeypatch, capsys, "score", "--features", two_files[0], "--metric", "transrate",
                                  *bad)  # fmt: skip
        assert code == 2 and message in captured.err and "Traceback" not in captured.err, captured.err


def test_cli_ped_without_a_variant_exits_2(monkeypatch, capsys, two_files):
    code, captured = run_main(monkeypatch, capsys, "score", "--features", two_files[0], "--metric", "nce", "--ped")
    assert code == 2 and "no PED variant" in captured.err


def test_cli_scores_real_extracted_features(monkeypatch, capsys, cache_dir, tmp_path):
    """extract -> score on a real (tiny, randomly initialised) model and the packaged digits data; --device and
    --precision reach the extraction of the missing features."""
    import modelrank.extraction as extraction

    out = tmp_path / "digits.csv"
    calls = []
    load = extraction.load_feature_pairs
    monkeypatch.setattr(extraction, "load_feature_pairs", lambda *a, **kw: calls.append(kw) or load(*a, **kw))
    monkeypatch.setattr(sys, "argv", ["modelrank", "score", "-d", "digits", "-m", "random:test_resnet,random:test_vit",
                                      "--per-class", "4", "--metric", "logme,leep,knn", "--out", str(out),
                                      "--device", "cpu", "--precision", "float32"])
    main()
    assert [(kw["device"], kw["precision"]) for kw in calls] == [("cpu", "float32")]
    frame = pd.read_csv(out)
    assert set(frame.Model) == {"random:test_resnet", "random:test_vit"} and frame.Dataset.eq("digits").all()
    assert frame[["logme", "leep", "knn"]].notna().all().all()
