"""The Python API a notebook user starts from: metric functions by name, modelrank.score / rank / evaluate, short
reprs, feature files with class names, one failing metric never losing the others, and a light `import`."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import modelrank
import modelrank.metrics
from modelrank import FeatureSet
from modelrank.errors import InvalidInputError, UnknownNameError
from modelrank.metrics import METRICS, compute_metric, score_zoo
from modelrank.metrics.base import MetricSpec
from modelrank.registry import Entry
from modelrank.scoring import bootstrap_scores, load_feature_file, save_feature_file, score_feature_sets

CLASS_NAMES = ["cat", "dog", "car"]


def toy_set(seed: int, signal: float, model: str, n: int = 90, d: int = 6) -> FeatureSet:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, d)) + signal * np.eye(3, d)[y]
    return FeatureSet(x, y, model=model, dataset="toy", source_probs=rng.dirichlet(np.ones(5), n),
                      class_names=list(CLASS_NAMES))


@pytest.fixture
def fake_text_encoder(monkeypatch):
    """EMMS's label embeddings without loading a language model: a fixed random vector per class name."""
    import modelrank.text

    def encode(texts, encoder=None):
        vectors = np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(modelrank.text, "encode_texts", encode)


# ------------------------------------------------------------------------------------------ metrics by name
def test_every_registered_metric_is_its_function_in_modelrank_metrics(fake_text_encoder):
    data = toy_set(0, 1.5, "a")
    assert set(modelrank.metrics.__all__) >= {entry.name for entry in METRICS}
    for entry in METRICS:
        function = getattr(modelrank.metrics, entry.name)
        assert function is entry.obj.fn, entry.name
        if entry.obj.zoo_level:  # maps {model: FeatureSet} to {model: score}
            zoo = [data, toy_set(1, 0.2, "b"), toy_set(2, 0.8, "c")]
            assert function({fs.model: fs for fs in zoo}) == score_zoo(entry.name, zoo), entry.name
            continue
        inputs = data.inputs()
        value = function(*[inputs[name] for name in entry.obj.needs])
        assert np.isfinite(value) and value == compute_metric(entry.name, data), entry.name


@pytest.mark.parametrize("name,params", [
    ("knn", {"k": 2.5}),  # TypeError from range()
    ("linear_probe", {"seed": -1}),  # ValueError from RandomState
    ("parc", {"max_samples": 0}),  # ValueError from a zero-size reduction
    ("nleep", {"n_components": 0}),  # silently fitted one component
    ("gbc", {"variance_floor": float("nan")}),  # scored NaN
    ("pactran_dir", {"alpha": float("inf")}),  # scored NaN
    ("emms", {"max_iter": 0}),  # scored -inf
    ("transrate", {"regression_bins": "3"}),  # ignored on a classification task
    ("ncti", {"pca_dim": 0}),
])
def test_metric_functions_check_their_parameters_as_compute_metric_does(fake_text_encoder, name, params):
    """A notebook user calls the function itself: a parameter out of range raised deep inside numpy or
    scikit-learn, or came back as a NaN or infinite score, where compute_metric and ``--set`` refuse it."""
    data = toy_set(0, 1.5, "a")
    function = getattr(modelrank.metrics, name)
    with pytest.raises(InvalidInputError) as refused:
        if METRICS.get(name).zoo_level:
            score_zoo(name, [data, toy_set(1, 0.2, "b"), toy_set(2, 0.8, "c")], **params)
        else:
            compute_metric(name, data, **params)
    inputs = data.inputs()
    zoo = {fs.model: fs for fs in [data, toy_set(1, 0.2, "b"), toy_set(2, 0.8, "c")]}
    args = [zoo] if METRICS.get(name).zoo_level else [inputs[key] for key in METRICS.get(name).needs]
    with pytest.raises(InvalidInputError, match=re.escape(str(refused.value))):
        function(*args, **params)


def test_compute_metric_and_score_zoo_refuse_what_is_not_a_feature_set():
    """Arrays given to compute_metric (or a name that is not text) raised AttributeError from deep inside."""
    data = toy_set(0, 1.5, "a")
    with pytest.raises(InvalidInputError, match=r"compute_metric takes a FeatureSet, not ndarray; for arrays call "
                                                r"modelrank.metrics.hscore\(features, labels\)"):
        compute_metric("hscore", data.features)
    with pytest.raises(InvalidInputError, match="score_zoo takes a list of FeatureSets, not of ndarray"):
        score_zoo("ncti", [data.features] * 3)
    with pytest.raises(UnknownNameError, match="a metric name is text, not None"):
        compute_metric(None, data)


def test_metric_modules_stay_importable_by_their_dotted_path():
    from modelrank.metrics.logme import max_evidence  # a module-level helper beside the function

    assert callable(max_evidence)
    module = importlib.import_module("modelrank.metrics.logme")
    assert module.logme is modelrank.metrics.logme and module.__name__ == "modelrank.metrics.logme"
    data = toy_set(0, 1.0, "a")
    assert modelrank.metrics.logme(data.features, data.labels) == compute_metric("logme", data)


# ------------------------------------------------------------------------------------------ top-level API
def test_score_rank_and_evaluate_at_top_level(tmp_path):
    sets = [toy_set(0, 0.1, "weak"), toy_set(1, 2.0, "strong"), toy_set(2, 0.8, "mid")]
    frame = modelrank.score(sets, "logme, lfc")  # the CLI's comma form
    assert list(frame.columns[2:4]) == ["logme", "lfc"]
    pd.testing.assert_frame_equal(frame.drop(columns=["logme_seconds", "lfc_seconds"]),
                                  score_feature_sets(sets, ["logme", "lfc"]).drop(columns=["logme_seconds", "lfc_seconds"]))
    ranked = modelrank.rank(sets, "logme,lfc")
    assert list(ranked["Model"]) == ["strong", "mid", "weak"]
    assert list(ranked.columns[:5]) == ["Dataset", "Model", "rank", "logme_rank", "lfc_rank"]
    assert list(ranked["rank"]) == [1.0, 2.0, 3.0]

    paths = [save_feature_file(fs, tmp_path / f"{fs.model}.npz") for fs in sets]
    from_files = modelrank.score(paths, ["logme"], dataset="pets")
    assert list(from_files["Dataset"]) == ["pets"] * 3
    np.testing.assert_allclose(from_files["logme"], frame["logme"])

    truth = pd.DataFrame({"Dataset": ["pets"] * 3, "Model": ["weak", "strong", "mid"], "Accuracy": [50.0, 90.0, 70.0]})
    evaluation = modelrank.evaluate(from_files, truth, measures=["kendall"])
    assert evaluation.table("kendall").loc["logme", "pets"] == pytest.approx(1.0)
    assert modelrank.evaluate.weighted_tau is not None  # still the package of measures
    with pytest.raises(InvalidInputError, match="either features"):
        modelrank.score()


def test_score_refuses_arrays_and_parameters_outside_a_dict_in_one_line():
    """Arrays given as features reached pathlib as file names, and knn=3 (for knn={"k": 3}) was iterated: both
    raised a TypeError from deep inside. dataset= and task= beside FeatureSets were silently ignored."""
    data = toy_set(0, 1.5, "a")
    for features in (data.features, [data.features], 5):
        with pytest.raises(InvalidInputError, match="features must be FeatureSets or feature file paths, not "
                                                    "(ndarray|int); wrap arrays as modelrank.FeatureSet"):
            modelrank.score(features, "logme")
    with pytest.raises(InvalidInputError, match=r"parameters of metric 'knn' go in a dict, knn=\{parameter: value\}"):
        modelrank.score([data], "knn", knn=3)
    for metrics in (5, None):  # iterated or split: TypeError
        with pytest.raises(InvalidInputError, match="metrics are names"):
            modelrank.score([data], metrics)
    for option in ({"task": "regression"}, {"dataset": "pets"}):  # ignored: the FeatureSet's own were used
        with pytest.raises(InvalidInputError, match="dataset= and task= go with feature files or models="):
            modelrank.score([data], "logme", **option)


def test_extraction_options_with_given_features_are_refused_not_ignored(tmp_path):
    """score(files, limit=10) scored every sample without a word (the command line refuses --limit without -d)."""
    data = toy_set(0, 2.0, "strong")
    save_feature_file(data, tmp_path / "strong.npz")
    for features in (data, tmp_path / "strong.npz"):
        with pytest.raises(InvalidInputError, match=r"^limit= goes with dataset= and models="):
            modelrank.score(features, "logme", limit=10)
        with pytest.raises(InvalidInputError, match=r"^split=, seed=, cache_dir= go with dataset= and models="):
            modelrank.rank(features, split="test", seed=3, cache_dir=tmp_path)
    assert len(modelrank.score(tmp_path / "strong.npz", "logme", seed=0, device="auto")) == 1  # the defaults


def test_rank_puts_unscorable_models_last_and_keeps_ties():
    frame = pd.DataFrame({"Dataset": ["d"] * 4, "Model": ["a", "b", "c", "e"], "m": [1.0, 3.0, np.nan, 3.0],
                          "low": [4.0, 1.0, 2.0, 1.0]})
    frame.attrs["higher_is_better"] = {"m": True, "low": False}
    from modelrank.api import rank_scores

    ranked = rank_scores(frame).set_index("Model")
    assert ranked.loc["b", "m_rank"] == ranked.loc["e", "m_rank"] == 1.5  # tied scores share their ranks
    assert np.isnan(ranked.loc["c", "m_rank"]) and ranked.loc["c", "low_rank"] == 3.0
    assert list(ranked.index) == ["b", "e", "c", "a"]


def test_models_scored_on_different_samples_of_one_dataset_are_warned_about():
    """Feature files of other subsets under one dataset name were ranked against each other without a word."""
    strong, weak = toy_set(0, 2.0, "strong"), toy_set(1, 0.2, "weak", n=60)
    frame = score_feature_sets([strong, weak], "logme")
    assert any("the models of toy hold different samples or labels (strong: 90, weak: 60 samples)" in note
               for note in frame.attrs["notes"])
    relabelled = FeatureSet(weak.features, (weak.labels + 1) % 3, model="weak", dataset="toy")
    same_size = score_feature_sets([toy_set(0, 2.0, "strong", n=60), relabelled], "logme")
    assert any("different samples or labels" in note for note in same_size.attrs["notes"])
    alike = score_feature_sets([toy_set(0, 2.0, "strong"), toy_set(1, 0.2, "weak")], "logme")
    assert not any("different samples" in note for note in alike.attrs["notes"])


def test_rank_scores_of_a_table_without_directions_names_what_is_missing(tmp_path):
    """A score table written with --out and read back has no attrs: that was a KeyError 'higher_is_better'."""
    from modelrank.api import rank_scores

    frame = score_feature_sets([toy_set(0, 2.0, "strong"), toy_set(1, 0.2, "weak")], "logme")
    frame.to_csv(tmp_path / "scores.csv", index=False)
    for table in (pd.read_csv(tmp_path / "scores.csv"), frame.to_dict()):
        with pytest.raises(InvalidInputError, match=r"attrs\['higher_is_better'\] gives each metric's direction"):
            rank_scores(table)


@pytest.mark.parametrize("form", ["lists", "pandas"])
def test_feature_sets_of_lists_and_pandas_objects_are_resampled_as_arrays(form):
    """``n_samples`` read ``features.shape`` (no such attribute on a list) and a bootstrap resample indexed
    ``features[rows]``, which selects the columns of a DataFrame: both raised from deep inside."""
    sets = [toy_set(0, 2.0, "strong"), toy_set(1, 0.2, "weak")]
    given = [FeatureSet(fs.features.tolist(), fs.labels.tolist(), model=fs.model, source_probs=fs.source_probs.tolist())
             if form == "lists" else FeatureSet(pd.DataFrame(fs.features), pd.Series(fs.labels), model=fs.model,
                                                source_probs=pd.DataFrame(fs.source_probs)) for fs in sets]
    assert given[0].n_samples == 90
    frame = score_feature_sets(given, "logme,leep")
    pd.testing.assert_frame_equal(frame[["logme", "leep"]], score_feature_sets(sets, "logme,leep")[["logme", "leep"]])
    assert bootstrap_scores(given, frame, 5)["logme_low"].notna().all()


def test_feature_set_refuses_a_misspelt_task_and_ragged_rows():
    with pytest.raises(InvalidInputError, match="task must be one of classification, regression, not 'regresion'"):
        FeatureSet(np.ones((4, 2)), [0, 1, 0, 1], task="regresion")
    with pytest.raises(InvalidInputError, match="features must be a rectangular array"):
        FeatureSet([[1.0, 2.0], [3.0]], [0, 1])


def test_reprs_are_short():
    data = FeatureSet(np.zeros((5000, 2048)), np.arange(5000) % 10, model="resnet50", source_probs=np.ones((5000, 1000)))
    text = repr(data)
    assert text == ("FeatureSet(model='resnet50', dataset='custom', task='classification', features=5000x2048, "
                    "labels=5000, classes=10, source_probs=5000x1000)")
    scores = pd.DataFrame({"Dataset": ["d"] * 3, "Model": list("abc"), "s": [1.0, 2.0, 3.0]})
    truth = pd.DataFrame({"Dataset": ["d"] * 3, "Model": list("abc"), "Accuracy": [1.0, 3.0, 2.0]})
    text = repr(modelrank.evaluate(scores, truth))
    assert text.startswith("Evaluation(methods=[s], datasets=[d], measures=[weighted_tau, kendall, ")
    assert "mean weighted_tau: s=" in text and len(text) < 300


# ------------------------------------------------------------------------------------------ class names in files
@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_feature_files_carry_class_names(tmp_path, suffix):
    path = save_feature_file(toy_set(0, 1.0, "m"), tmp_path / f"m{suffix}")
    assert load_feature_file(path).class_names == CLASS_NAMES


def test_parquet_class_name_column_and_bad_class_names(tmp_path):
    data = toy_set(0, 1.0, "m", n=6)
    features = pa.FixedSizeListArray.from_arrays(pa.array(data.features.ravel()), data.features.shape[1])
    labels = np.array([0, 2, 0, 2, 0, 2])  # class 1 has no rows: its name is empty
    names = np.array(["cat", "car", "cat", "car", "cat", "car"])
    pq.write_table(pa.table({"features": features, "label": labels, "class_name": names}), tmp_path / "c.parquet")
    assert load_feature_file(tmp_path / "c.parquet").class_names == ["cat", "", "car"]
    names[2] = "dog"
    pq.write_table(pa.table({"features": features, "label": labels, "class_name": names}), tmp_path / "c.parquet")
    with pytest.raises(InvalidInputError, match="class id 0 is named both 'cat' and 'dog'"):
        load_feature_file(tmp_path / "c.parquet")
    pq.write_table(pa.table({"features": features, "label": labels, "class_name": [*names[:5], None]}),
                   tmp_path / "c.parquet")
    with pytest.raises(InvalidInputError, match="1 null rows"):
        load_feature_file(tmp_path / "c.parquet")
    for metadata in (json.dumps([1, 2]), "not json[", b"\xff"):  # the last two said "cannot read ...: Expecting value"
        table = pa.table({"features": features, "label": labels}).replace_schema_metadata({"class_names": metadata})
        pq.write_table(table, tmp_path / "m.parquet")
        with pytest.raises(InvalidInputError, match="schema metadata class_names must be a JSON list of strings"):
            load_feature_file(tmp_path / "m.parquet")
    np.savez(tmp_path / "few.npz", features=data.features, labels=labels, class_names=np.array(["cat", "dog"]))
    with pytest.raises(InvalidInputError, match="2 class_names for class ids up to 2"):
        load_feature_file(tmp_path / "few.npz")


def test_cli_scores_emms_from_an_npz_with_class_names(cli, tmp_path, fake_text_encoder):
    """The issue's `score --features a.npz --metric logme,sfda,emms`: EMMS reads the class names from the file."""
    paths = [str(save_feature_file(toy_set(seed, signal, name), tmp_path / f"{name}.npz"))
             for seed, signal, name in [(0, 0.2, "a"), (1, 1.5, "b")]]
    code, out, err = cli("score", "--features", paths[0], "--features", paths[1], "--metric", "logme,sfda,emms",
                         "--out", str(tmp_path / "s.csv"))
    assert code == 0, err
    assert pd.read_csv(tmp_path / "s.csv")[["logme", "sfda", "emms"]].notna().all().all()


# ------------------------------------------------------------------------------------------ failing metrics
@pytest.fixture
def flaky_metric(monkeypatch):
    """A registered metric that fails on model "b" with a user-facing error (as an undefined score does)."""

    def flaky(features, labels):
        """Test metric: the mean feature, undefined when it is above 0.5."""
        value = float(np.mean(features))
        if value > 0.5:
            raise InvalidInputError("flaky is undefined here")
        return value

    spec = MetricSpec("flaky", flaky, ("features", "labels"), ("classification",), True, "")
    monkeypatch.setitem(METRICS._entries, "flaky", Entry("flaky", spec))


def test_a_failing_named_metric_keeps_the_other_scores(flaky_metric):
    sets = [toy_set(0, 1.0, "a"), toy_set(1, 1.0, "b")]
    sets[1].features += 1.0  # flaky fails on b only
    with pytest.warns(UserWarning, match="flaky on b/toy: flaky is undefined here; the other scores are kept"):
        frame = score_feature_sets(sets, "logme,flaky")
    assert frame["logme"].notna().all()
    assert np.isfinite(frame.loc[0, "flaky"]) and np.isnan(frame.loc[1, "flaky"])
    assert frame.attrs["failures"] == {"flaky": ["flaky on b/toy: flaky is undefined here"]}


def test_cli_writes_the_other_scores_then_exits_2(cli, tmp_path, flaky_metric):
    good = save_feature_file(toy_set(0, 1.0, "a"), tmp_path / "a.npz")
    bad = toy_set(1, 1.0, "b")
    bad.features += 1.0  # flaky fails on b only
    bad = save_feature_file(bad, tmp_path / "b.npz")
    out = tmp_path / "s.csv"
    code, stdout, err = cli("score", "--features", str(good), "--features", str(bad), "--metric", "flaky,lfc",
                            "--out", str(out))
    assert code == 2, (stdout, err)
    written = pd.read_csv(out)
    assert written["lfc"].notna().all() and written["flaky"].isna().tolist() == [False, True]
    assert "flaky on b/custom: flaky is undefined here" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 metrics failed (flaky;") and str(out) in last
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------ import time
def test_help_and_list_metrics_import_no_heavy_library():
    """`--help` and `list metrics` must answer in well under a second: no torch, POT, sklearn or pandas import
    (their speed is measured in benchmarks/bench_startup.py)."""
    code = (
        "import sys\n"
        "from modelrank.cli import app\n"
        "for args in (['--help'], ['list', 'metrics']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted({'torch', 'ot', 'sklearn', 'pandas', 'pyarrow', 'transformers', 'timm'} & set(sys.modules))\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"
    assert "logme" in result.stdout and "otce_sf" in result.stdout


def test_readme_python_block_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "modelrank.score(" in b)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Evaluation(methods=[logme, hscore]" in out and "mine" in out


@pytest.mark.slow
def test_readme_extract_block_runs(cache_dir):
    """The README's `extract` / `load_features` snippet, as written (the cache goes to a temporary folder)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "load_features(" in b)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    fs = scope["fs"]
    assert fs.features.shape[0] == len(fs.labels) == 30 * len(set(fs.labels)) and fs.source_probs is not None


def test_metric_warnings_point_at_the_callers_line():
    """A warning of a metric called directly names the caller's file (here, this test), not the registry's wrapper in
    metrics/base.py, also through PED's wrapper and a shared helper (SFDA's singular-scatter warning)."""
    from modelrank.metrics.gbc import gbc
    from modelrank.metrics.hscore import hscore

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    separated = np.eye(2, 50)[y] * 1e3 + rng.normal(size=(40, 50))
    calls = [lambda: gbc(separated, y), lambda: hscore(separated, y),
             lambda: METRICS.get("ped_sfda").fn(separated, y)]
    for call in calls:
        with pytest.warns(UserWarning) as caught:
            call()
        assert {Path(w.filename).name for w in caught} == {Path(__file__).name}
