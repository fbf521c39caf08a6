"""Linear-probe ground truth and the records table."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_digits
from typer.testing import CliRunner

from modelrank.cli import app
from modelrank.errors import InvalidInputError
from modelrank.evaluate.evaluation import evaluate
from modelrank.features import FeatureSet
from modelrank.finetune import (
    export_records,
    job_from_features,
    linear_probe,
    parse_cs,
    read_records,
    records_path,
    run_probes,
    split_feature_set,
)
from modelrank.finetune.linear import class_metric

FAST_CS = np.logspace(-3, 2, 6)


@pytest.fixture(scope="module")
def digits() -> FeatureSet:
    x, y = load_digits(return_X_y=True)
    return FeatureSet(x.astype(np.float32), y, model="pixels", dataset="digits")


def test_linear_probe_on_digits_pixels(digits):
    train, val, test = split_feature_set(digits, seed=0)
    result = linear_probe(train, val, test, cs=FAST_CS)
    assert result.test_metric > 0.9 and result.val_metric > 0.9
    assert result.best_c in FAST_CS and len(result.val_curve) == len(FAST_CS)
    assert result.val_metric == max(result.val_curve)
    assert result.unconverged_cs == []
    per_class = linear_probe(train, val, test, cs=FAST_CS, metric="mean_per_class_accuracy")
    assert per_class.test_metric > 0.9
    # Strong regularisation alone (a one-point sweep at C = 1e-5) must do worse than the sweep.
    weak = linear_probe(train, val, test, cs=[1e-5])
    assert weak.test_metric < result.test_metric


def test_class_metric_by_hand():
    labels = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0])
    assert class_metric(pred, labels, 2, "accuracy") == 0.75
    assert class_metric(pred, labels, 2, "mean_per_class_accuracy") == 0.5  # (3/3 + 0/1) / 2


def test_ridge_probe_matches_sklearn():
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    data = FeatureSet(x, y, task="regression")
    train, val, test = split_feature_set(data, seed=1)
    result = linear_probe(train, val, test, cs=np.logspace(-3, 3, 7))
    mean, std = train.features.mean(0), train.features.std(0)
    fit = np.concatenate([train.features, val.features])
    model = Ridge(alpha=1 / result.best_c).fit((fit - mean) / std, np.concatenate([train.labels, val.labels]))
    assert result.test_metric == pytest.approx(model.score((test.features - mean) / std, test.labels), abs=1e-9)
    neg = linear_probe(train, val, test, cs=[result.best_c], metric="neg_mse")
    assert neg.test_metric < 0


def test_ridge_probe_of_a_constant_target_is_an_error_not_a_score():
    """A constant target recorded R^2 = 1 for any features; a constant test target R^2 = 1 - residual / 1e-308."""
    x, y = load_diabetes(return_X_y=True)
    train, val, test = split_feature_set(FeatureSet(x, y, task="regression"), seed=1)
    constant = [FeatureSet(s.features, np.full(s.n_samples, 1.5), task="regression") for s in (train, val, test)]
    with pytest.raises(InvalidInputError, match="constant on the train split"):
        linear_probe(*constant)
    with pytest.raises(InvalidInputError, match="R\\^2 is undefined on the test split"):
        linear_probe(train, val, constant[2])
    assert linear_probe(train, val, constant[2], metric="neg_mse").test_metric < 0  # still defined


def test_split_is_seeded_stratified_and_disjoint(digits):
    data = FeatureSet(digits.features, digits.labels, sample_ids=np.arange(digits.n_samples))
    train, val, test = split_feature_set(data, val=0.2, test=0.2, seed=3)
    ids = [s.sample_ids for s in (train, val, test)]
    assert sum(len(i) for i in ids) == data.n_samples
    assert len(np.unique(np.concatenate(ids))) == data.n_samples
    assert abs(len(test.labels) - 0.2 * data.n_samples) <= 1
    for split in (train, val, test):  # every class keeps its share (10 classes, ~10% each)
        shares = np.bincount(split.labels, minlength=10) / len(split.labels)
        assert np.all(np.abs(shares - 0.1) < 0.02)
    again = split_feature_set(data, val=0.2, test=0.2, seed=3)
    assert np.array_equal(again[2].sample_ids, test.sample_ids)
    assert not np.array_equal(split_feature_set(data, seed=4)[2].sample_ids, test.sample_ids)


def test_interrupted_sweep_resumes(digits, cache_dir):
    calls = []
    half = FeatureSet(digits.features[:, ::2], digits.labels, model="half", dataset="digits")

    def jobs(interrupt: bool):
        first, second = job_from_features(digits), job_from_features(half)
        for job in (first, second):
            load = job.load

            def counted(load=load, job=job):
                calls.append(job.model)
                if interrupt and job.model == "half":
                    raise KeyboardInterrupt
                return load()

            job.load = counted
        return [first, second]

    with pytest.raises(KeyboardInterrupt):
        run_probes(jobs(interrupt=True), cs=FAST_CS)
    assert list(read_records()["model"]) == ["pixels"]  # the finished run was kept
    statuses = []
    records = run_probes(jobs(interrupt=False), cs=FAST_CS, on_result=lambda s, r, j: statuses.append((s, j.model)))
    assert statuses == [("skipped", "pixels"), ("done", "half")]
    assert calls == ["pixels", "half", "half"]  # the recorded job's features were not even loaded again
    assert [r["model"] for r in records] == ["pixels", "half"]
    run_probes(jobs(interrupt=False)[:1], cs=FAST_CS, force=True)
    assert len(read_records()) == 2  # a forced rerun replaces its record
    other = run_probes(jobs(interrupt=False)[:1], cs=FAST_CS[:3])
    assert len(read_records()) == 3 and other[0]["key"] != records[0]["key"]  # new hyper-parameters, new key
    assert records_path() == cache_dir / "records.parquet"
    assert not list(cache_dir.glob(".*tmp*"))


def test_records_export_is_ground_truth_for_evaluate(digits, cache_dir):
    half = FeatureSet(digits.features[:, ::4], digits.labels, model="quarter", dataset="digits")
    run_probes([job_from_features(digits), job_from_features(half)], cs=FAST_CS)
    exported = export_records(read_records())
    assert list(exported.columns[:4]) == ["model", "finetuned_dataset", "protocol", "metric"]
    assert {"eval_accuracy", "train_runtime", "selected", "val_metric"} <= set(exported.columns)
    scores = pd.DataFrame({"dataset": "digits", "model": ["pixels", "quarter"], "method": "dims", "score": [64.0, 16.0]})
    ev = evaluate(scores, exported, measures=["regret"])
    assert ev.results.query("dataset == 'digits'")["value"].item() == 0.0  # more pixels probe better here


def test_records_of_two_protocols_point_evaluate_to_a_protocol_not_to_the_best_of_both():
    """`records export` of a cache holding linear and full runs of one model told `evaluate` to pass --duplicates
    max: the best of a probe and a fine-tune, mixed per model, which is no ground truth."""
    exported = pd.DataFrame({"model": ["a", "b", "a", "b"], "finetuned_dataset": "digits",
                             "protocol": ["linear", "linear", "full", "full"], "eval_accuracy": [0.7, 0.6, 0.2, 0.9]})
    scores = pd.DataFrame({"dataset": "digits", "model": ["a", "b"], "method": "m", "score": [1.0, 2.0]})
    with pytest.raises(InvalidInputError, match=r"protocols full, linear: .*--truth-where protocol=full\)$") as error:
        evaluate(scores, exported)
    assert "--duplicates max" not in str(error.value)
    assert evaluate(scores, exported, truth_where={"protocol": "full"}).results["value"].notna().any()


def test_bad_input(digits):
    train, val, test = split_feature_set(digits, seed=0)
    with pytest.raises(InvalidInputError, match="same number of columns"):
        linear_probe(train, FeatureSet(val.features[:, :10], val.labels), test)
    nan = train.features.copy()
    nan[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        linear_probe(FeatureSet(nan, train.labels), val, test)
    with pytest.raises(InvalidInputError, match="classes the train split lacks"):
        linear_probe(FeatureSet(train.features, np.where(train.labels == 9, 8, train.labels)), val, test)
    with pytest.raises(InvalidInputError, match="at least 2"):
        linear_probe(FeatureSet(train.features, np.zeros(train.n_samples, int)), val, test)
    with pytest.raises(InvalidInputError, match="increasing"):
        linear_probe(train, val, test, cs=[1.0, 0.1])
    with pytest.raises(InvalidInputError, match="does not fit"):
        linear_probe(train, val, test, metric="r2")
    with pytest.raises(InvalidInputError, match="linear protocol"):
        run_probes([job_from_features(digits)], protocol="full")
    # Found when the job is made, not by its probe: a sweep stopped there after probing the files before it.
    with pytest.raises(InvalidInputError, match="pixels on digits: the features hold 1 NaN or infinite value"):
        job_from_features(FeatureSet(np.where(np.arange(digits.features.size).reshape(digits.features.shape) == 5,
                                              np.inf, digits.features), digits.labels, model="pixels", dataset="digits"))
    with pytest.raises(InvalidInputError, match="the labels hold 1 NaN"):
        job_from_features(FeatureSet(digits.features, np.r_[np.nan, digits.labels[1:]], model="pixels", dataset="d"))
    with pytest.raises(InvalidInputError, match="cannot hold out"):
        split_feature_set(FeatureSet(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1])))
    # So are labels the split cannot cut, or that leave one class to train on: `finetune --features ok.npz
    # --features few.npz` stopped on few.npz after probing ok.npz (its line, then the error)
    with pytest.raises(InvalidInputError, match="few on d: cannot hold out"):
        job_from_features(FeatureSet(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]), model="few", dataset="d"))
    with pytest.raises(InvalidInputError, match="one on d: the train split has 1 class"):
        job_from_features(FeatureSet(np.zeros((20, 2)), np.zeros(20, int), model="one", dataset="d"))
    with pytest.raises(InvalidInputError, match="LOW:HIGH:N"):
        parse_cs("1e-3:abc:4")
    for bad in ("1:0:3", "nan:1:3", "1e-3:inf:3", "1e-3:1e3:0", "1e-3:1e3:100000000"):  # no log10 warnings, no hang
        with pytest.raises(InvalidInputError, match="0 < LOW < HIGH and 1 <= N <= 1000"):
            parse_cs(bad)
    for bad in ("nan", "-1,2", "2,1"):  # checked here, before any features are loaded, not at the first fit
        with pytest.raises(InvalidInputError, match="finite positive"):
            parse_cs(bad)
    assert np.allclose(parse_cs("1e-2:1e2:5"), [1e-2, 1e-1, 1, 10, 100])


def test_linear_probe_of_huge_features_is_their_probe_or_an_error(digits):
    """Float32 features of magnitude 1e20 overflowed in the standard deviation: every feature became 0 and the
    probe recorded chance accuracy (with only a numpy warning). Standardisation is scale-free, so they probe as
    the features they are; features beyond float64's range are an error."""
    train, val, test = split_feature_set(digits, seed=0)
    scaled = [FeatureSet((s.features * np.float32(1e20)).astype(np.float32), s.labels) for s in (train, val, test)]
    assert linear_probe(*scaled, cs=FAST_CS).test_metric == pytest.approx(
        linear_probe(train, val, test, cs=FAST_CS).test_metric, abs=0.02)
    with pytest.raises(InvalidInputError, match="overflow when standardised"):
        linear_probe(*[FeatureSet(s.features.astype(np.float64) * 1e300, s.labels) for s in (train, val, test)], cs=FAST_CS)


def test_cli_finetune_records(tmp_path, cache_dir, digits):
    path = tmp_path / "pixels.npz"
    np.savez(path, features=digits.features, labels=digits.labels)
    runner = CliRunner()
    args = ["finetune", "--features", str(path), "--dataset-name", "digits", "--cs", "1e-3:1e2:6"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "run.csv")])
    assert first.exit_code == 0, first.output
    assert "done" in first.output and pd.read_csv(tmp_path / "run.csv")["eval_accuracy"].item() > 0.9
    second = runner.invoke(app, args)
    assert "skipped" in second.output
    listed = runner.invoke(app, ["records", "ls"])
    assert "pixels" in listed.output and "1 records" in listed.output
    exported = runner.invoke(app, ["records", "export", str(tmp_path / "all.csv")])
    assert exported.exit_code == 0 and len(pd.read_csv(tmp_path / "all.csv")) == 1
    neither = runner.invoke(app, ["finetune"])
    assert neither.exit_code != 0


def test_records_ls_on_a_narrow_terminal_names_dataset_and_model_in_every_block(cli, cache_dir, monkeypatch):
    """With the dataset alone leading each block, the later blocks did not say whose run a row was."""
    from rich.console import Console

    import modelrank.cli._output as output
    from modelrank.finetune.records import append_record, make_record

    for model in ("zoo/demo/lite0-animals-a", "zoo/demo/lite2-imagenet"):
        append_record(make_record(dataset="task/s1-01-animals-2way-100shot-rotate", model=model, protocol="linear",
                                  params={"seed": 0}, metric="accuracy", selected={"C": 0.316}, val_metric=0.9,
                                  test_metric=0.8, n_train=10, n_val=5, n_test=5, iterations=3, seconds=0.1,
                                  val_curve=[]))
    monkeypatch.setattr(output, "console", Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None))
    code, out, err = cli("records", "ls")
    blocks = out.removeprefix("# 2 records\n").strip().split("\n\n")
    assert code == 0 and len(blocks) > 1 and max(len(line) for line in out.splitlines()) <= 80, out
    assert all(block.split()[:2] == ["dataset", "model"] for block in blocks), blocks
    assert all("zoo/demo/lite2-imagenet" in block for block in blocks)


def test_records_export_never_writes_over_the_records_table(cli, tmp_path, cache_dir, digits):
    """`records export ~/.cache/modelrank/records.parquet` replaced the table with a CSV: every record was lost."""
    from modelrank.finetune import compact_records

    run_probes([job_from_features(digits)], cs=FAST_CS)
    compact_records()
    before = records_path().read_bytes()
    for target, message in ((records_path(), "is also the records table"), (tmp_path / "r.json", "writes CSV, not json"),
                            (tmp_path / "r.parquet", "writes CSV, not parquet")):
        code, out, err = cli("records", "export", str(target))
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, err
    assert records_path().read_bytes() == before and len(read_records()) == 1
    assert not (tmp_path / "r.json").exists()


def test_cli_linear_probes_split_by_shard(tmp_path, cache_dir, digits, monkeypatch):
    """--shard i/n gives task i the models j with j mod n = i; under torchrun (RANK of WORLD_SIZE) each process
    takes its part of that: the tasks together probe every model once."""
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.npz")
        np.savez(paths[-1], features=digits.features, labels=digits.labels)
    args = ["finetune", *(a for p in paths for a in ("--features", str(p))), "--dataset-name", "digits",
            "--cs", "1e-2:1e1:3", "--format", "csv"]
    runner = CliRunner()
    probed = []
    for shard in ("0/2", "1/2"):
        result = runner.invoke(app, [*args, "--shard", shard])
        assert result.exit_code == 0, result.output
        probed.append(sorted(pd.read_csv(io.StringIO(result.stdout))["model"]))
    assert probed == [["a", "c"], ["b"]] and len(read_records()) == 3
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = runner.invoke(app, [*args, "--shard", "0/2", "--force"])  # task 0's models a, c: this process c
    assert result.exit_code == 0 and list(pd.read_csv(io.StringIO(result.stdout))["model"]) == ["c"]


@pytest.mark.slow
def test_full_finetune_grid_records_and_resumes(cache_dir):
    from modelrank.finetune import run_full_grid
    from modelrank.finetune.full import FullConfig

    config = FullConfig(epochs=1, batch_size=16, per_class=8, input_size=32)
    events = []
    first = run_full_grid("digits", ["random:test_resnet"], lrs=[0.1, 0.01], wds=[0.0], config=config,
                          device="cpu", cache_dir=cache_dir, on_result=lambda s, r, m: events.append(s))
    record = first[0]
    curve = json.loads(record["val_curve"])
    selected = json.loads(record["selected"])
    assert len(curve) == 2 and record["val_metric"] == max(curve)
    assert selected["lr"] == [0.1, 0.01][curve.index(max(curve))] and selected["weight_decay"] == 0.0
    assert record["protocol"] == "full" and record["n_test"] > 0 and 0 <= record["test_metric"] <= 1
    again = run_full_grid("digits", ["random:test_resnet"], lrs=[0.1, 0.01], wds=[0.0], config=config,
                          device="cpu", cache_dir=cache_dir, on_result=lambda s, r, m: events.append(s))
    assert events == ["done", "skipped"] and again[0]["key"] == record["key"]
    assert len(read_records()) == 1
    trained = []  # --force trains again: it re-recorded the checkpoints' finished results, training nothing
    forced = run_full_grid("digits", ["random:test_resnet"], lrs=[0.1, 0.01], wds=[0.0], config=config,
                           device="cpu", cache_dir=cache_dir, force=True, on_epoch=lambda tag, info: trained.append(tag))
    assert len(trained) == 2 and forced[0]["key"] == record["key"] and forced[0]["time"] >= record["time"]
    assert len(read_records()) == 1
    with pytest.raises(InvalidInputError, match="at least one learning rate"):
        run_full_grid("digits", ["random:test_resnet"], lrs=[], config=config, cache_dir=cache_dir)


@pytest.mark.slow
def test_sharded_full_grid_is_recorded_by_the_task_that_finishes_a_model(cache_dir, monkeypatch):
    """--shard i/n splits the models x grid runs: run j = model index x grid size + grid point goes to task j mod n.
    Task 1 of 2 trains its run and finds the other unfinished (partial, no record); task 0 then trains the other,
    finds both finished and records the model, with the selection an unsharded grid makes of the same runs."""
    import modelrank.finetune.full as full_module
    from modelrank.finetune import run_full_grid
    from modelrank.finetune.full import FullConfig

    config = FullConfig(epochs=1, batch_size=16, per_class=8, input_size=32)
    grid = {"lrs": [0.1, 0.01], "wds": [0.0], "config": config, "device": "cpu", "cache_dir": cache_dir}
    models = ["random:test_resnet"]
    partial, trained = [], []
    finetune_full = full_module.finetune_full

    def counting(*args, train=True, **kwargs):
        result = finetune_full(*args, train=train, **kwargs)
        trained.append((kwargs["config"].lr, train, result is not None))
        return result

    monkeypatch.setattr(full_module, "finetune_full", counting)
    first = run_full_grid("digits", models, **grid, shard=(1, 2), on_partial=lambda *a: partial.append(a))
    assert first == [] and partial == [("random:test_resnet", 1, 2)] and len(read_records()) == 0
    assert trained == [(0.01, True, True), (0.1, False, False)]  # its own run first, then a look at the other
    trained.clear()
    second = run_full_grid("digits", models, **grid, shard=(0, 2), on_partial=lambda *a: partial.append(a))
    assert trained == [(0.1, True, True), (0.01, False, True)] and len(partial) == 1 and len(read_records()) == 1
    monkeypatch.setattr(full_module, "finetune_full", finetune_full)
    unsharded = run_full_grid("digits", models, **grid, force=True)  # every run finished: nothing is trained again
    assert {k: second[0][k] for k in ("selected", "val_curve", "test_metric")} == {
        k: unsharded[0][k] for k in ("selected", "val_curve", "test_metric")}
    partial.clear()
    none_here = run_full_grid("digits", models, **grid, force=True, shard=(2, 3), on_partial=lambda *a: partial.append(a))
    assert none_here == [] and partial == []  # runs 0 and 1 are tasks 0's and 1's: task 2 skips the model
    with pytest.raises(InvalidInputError, match="shard 2/2"):
        run_full_grid("digits", models, **grid, shard=(2, 2))


def test_launcher_shard_splits_a_shard_among_torchrun_processes():
    from modelrank.extraction import launcher_shard

    assert launcher_shard((1, 4), {}) == (1, 4) == launcher_shard((1, 4), {"RANK": "", "WORLD_SIZE": ""})
    covered = sorted(j for rank in range(3) for j in range(48)
                     if j % launcher_shard((1, 4), {"RANK": str(rank), "WORLD_SIZE": "3"})[1]
                     == launcher_shard((1, 4), {"RANK": str(rank), "WORLD_SIZE": "3"})[0])
    assert covered == [j for j in range(48) if j % 4 == 1]  # shard 1/4's items, each by one process
    with pytest.raises(InvalidInputError, match="RANK='3'"):
        launcher_shard((0, 1), {"RANK": "3", "WORLD_SIZE": "3"})


@pytest.mark.slow
def test_linear_probe_on_extracted_registry_features(cache_dir):
    from modelrank.finetune import job_from_registry

    job = job_from_registry("digits", "random:test_resnet", per_class=10, cache_dir=str(cache_dir))
    train, val, test = job.load()
    assert test.n_samples == 100  # 10 per class from the dataset's own test split
    assert train.n_samples + val.n_samples == 100 and abs(val.n_samples - 20) <= 1  # val carved from train
    record = run_probes([job], cs=FAST_CS, cache_dir=str(cache_dir))[0]
    assert record["test_metric"] > 0.3  # random conv features of 8x8 digits: far above chance (0.1)
    assert json.loads(record["params"])["per_class"] == 10


def test_a_metric_of_the_other_task_type_is_refused_before_any_extraction(cli, cache_dir):
    """`finetune -d digits -m MODEL --metric r2` extracted the features first (15 s here; hours on a real zoo)."""
    code, out, err = cli("finetune", "-d", "digits", "-m", "random:test_resnet", "--per-class", "10", "--metric", "r2")
    assert code == 2 and out == "" and "metric 'r2' does not fit a classification task" in err
    assert not list(cache_dir.rglob("*.parquet"))


def test_a_retrained_weights_file_is_probed_again_not_skipped(cache_dir, tmp_path):
    """`finetune -d DATASET -m ARCH@PATH` skipped the run as recorded after PATH was retrained, and kept the old
    weights' accuracy as the new ones' (the features were extracted anew; the record key named only the model)."""
    import timm
    import torch

    from modelrank.finetune import job_from_registry

    weights = tmp_path / "w.pth"
    statuses = []

    def probe():
        job = job_from_registry("digits", f"test_resnet@{weights}", per_class=5, cache_dir=str(cache_dir))
        return run_probes([job], cs=FAST_CS, cache_dir=str(cache_dir),
                          on_result=lambda status, record, job: statuses.append(status))[0]

    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        torch.save(timm.create_model("test_resnet").state_dict(), weights)
        record = probe()
    assert statuses == ["done", "skipped", "done"] and len(read_records()) == 2
    no_file = job_from_registry("digits", "random:test_resnet", per_class=5, cache_dir=str(cache_dir))
    assert "weights" not in no_file.split_params and "data" not in no_file.split_params  # keys as before
    assert json.loads(record["params"])["weights"] == json.loads(read_records()["params"].iloc[-1])["weights"]


def test_a_relabelled_folder_dataset_is_probed_again_not_skipped(cache_dir, tmp_path):
    """The same for a `folder:` dataset whose images moved to another class: its record was skipped as well."""
    from PIL import Image

    from modelrank.finetune import job_from_registry

    data = tmp_path / "data"  # not tmp_path, which holds the cache
    for c, name in enumerate("abc"):
        (data / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((9, 9, 3), 60 * c + 5 * i, np.uint8)).save(data / name / f"{i}.png")
    statuses = []

    def probe():
        job = job_from_registry(f"folder:{data}", "random:test_resnet", cache_dir=str(cache_dir))
        run_probes([job], cs=FAST_CS, cache_dir=str(cache_dir), on_result=lambda status, r, j: statuses.append(status))

    probe()
    probe()
    (data / "a" / "0.png").rename(data / "b" / "moved.png")
    probe()
    assert statuses == ["done", "skipped", "done"] and len(read_records()) == 2



def test_a_csv_split_column_gives_the_linear_probe_its_test_rows(cache_dir, tmp_path):
    """`finetune -d csv:PATH` cut every row of a CSV three ways, its split column unread: images it names as test
    were trained on (and `--protocol full` tested on exactly those rows)."""
    from PIL import Image

    from modelrank.finetune import job_from_registry

    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for c, name in enumerate("ab"):
        for i in range(10):
            Image.fromarray(np.full((9, 9, 3), 100 * c + 5 * i, np.uint8)).save(data / f"{name}{i}.png")
            rows.append(f"{name}{i}.png,{name},{'test' if i < 3 else 'train'}")
    (data / "split.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    job = job_from_registry(f"csv:{data / 'split.csv'}", "random:test_resnet", cache_dir=str(cache_dir))
    assert job.split_params["split"] == "train/test"
    train, val, test = job.load()
    assert test.n_samples == 6 and train.n_samples + val.n_samples == 14  # the 3 test rows of each class
    (data / "no_test.csv").write_text("path,label,split\n" + "\n".join(rows).replace(",test", ",val") + "\n")
    job = job_from_registry(f"csv:{data / 'no_test.csv'}", "random:test_resnet", cache_dir=str(cache_dir))
    assert job.split_params["split"] == "stratified"  # no test rows: a seeded cut of every row, as before


def test_a_diverging_full_finetune_stops_and_says_so():
    """lr = 1e12 made the loss non-finite in the first epoch; the run went on through every epoch on NaN weights,
    and was only outscored in the grid, without a word."""
    from modelrank.finetune.full import FullConfig, finetune_full

    config = FullConfig(epochs=4, batch_size=16, per_class=8, input_size=32, lr=1e12, patience=10)
    with pytest.warns(UserWarning, match=r"the loss diverged \(non-finite\) in epoch 0 at lr=1e\+12"):
        result = finetune_full("random:test_resnet", "digits", config=config, device="cpu")
    assert result.epochs_run == 1 and result.best_epoch == 0
    assert not np.isfinite(result.history[0]["loss"])


def test_too_few_samples_per_class_for_the_split_is_refused_before_extraction(cli, cache_dir):
    """--per-class 1 cannot be split stratified into train and val: that was found only once every model's features
    had been extracted."""
    from modelrank.cache import FeatureStore

    code, out, err = cli("finetune", "-d", "digits", "-m", "random:test_resnet", "--per-class", "1")
    assert code == 2 and "cannot hold out 0.2 of digits (10 samples)" in err and err.count("\n") == 1, err
    assert list(FeatureStore(cache_dir).entries()) == []  # nothing was extracted


def test_records_rm_of_an_unknown_protocol_is_a_usage_error(cli, cache_dir, digits):
    """`records rm --protocol Linear` matched nothing and said "0 record(s) match" with exit 0: a script took the
    runs for removed, and the rerun skipped them as recorded."""
    from modelrank.finetune import remove_records

    run_probes([job_from_features(digits)], cs=FAST_CS)
    code, out, err = cli("records", "rm", "--protocol", "Linear", "--yes")
    assert code == 2 and out == "" and "linear | full, not 'Linear'" in err and err.count("\n") == 1, err
    assert len(read_records()) == 1
    with pytest.raises(InvalidInputError, match="not 'lin'"):
        remove_records(protocol="lin", dry_run=True)
    code, out, err = cli("records", "rm", "--protocol", "linear", "--yes")
    assert code == 0 and "removed 1 record(s)" in err and read_records().empty, err


@pytest.mark.parametrize("grid", [("0.01,0.01", "0"), ("0.1,1e-1", "0"), ("0.01", "0,0.0")], ids=str)
def test_a_value_repeated_in_the_full_grid_is_refused_before_any_training(cli, cache_dir, monkeypatch, grid):
    """`--lrs 0.01,0.01` trained the point once but recorded it under another key than `--lrs 0.01`: the same runs
    became two records of one (dataset, model, protocol), which `evaluate --truth` refused as duplicates."""
    import modelrank.finetune.full

    monkeypatch.setattr(modelrank.finetune.full, "finetune_full", lambda *a, **k: pytest.fail("training started"))
    lrs, wds = grid
    code, out, err = cli("finetune", "-d", "digits", "-m", "random:test_vit", "--protocol", "full", "--device", "cpu",
                         "--lrs", lrs, "--wds", wds)
    assert code == 2 and out == "" and "more than once" in err and err.count("\n") == 1, err


def test_a_shard_without_runs_writes_an_empty_records_csv(cli, tmp_path, cache_dir, digits):
    """`--shard 1/2` of one feature file has no run: `--out` was a KeyError and exit 1 (a job array with more tasks
    than models failed in its idle tasks)."""
    path = tmp_path / "pixels.npz"
    np.savez(path, features=digits.features, labels=digits.labels)
    args = ["finetune", "--features", str(path), "--cs", "1e-3:1e2:6", "--shard", "1/2"]
    code, out, err = cli(*args, "--out", str(tmp_path / "run.csv"))
    assert code == 0 and "Traceback" not in err, err
    assert pd.read_csv(tmp_path / "run.csv").empty and "eval_accuracy" in pd.read_csv(tmp_path / "run.csv").columns
    code, out, err = cli(*args, "--out", "-")
    assert code == 0 and out.startswith("model,finetuned_dataset,") and len(out.splitlines()) == 1, (out, err)
