"""`spider rank` for a new dataset, `spider eval`'s comparison table, `list learners`, learner files without pickle."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from modelrank.errors import InvalidInputError
from modelrank.spider import Records, TaskInfo, load_learner, make_learner
from modelrank.spider.describe import describe_task, prediction_ranks, rerank_by_metric, top_models
from modelrank.features import FeatureSet


def clustered(n_models: int = 8, n_tasks: int = 16, seed: int = 0) -> Records:
    """Two task clusters that rank the models in opposite orders: observed accuracies say which cluster a task is in."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    tasks = [f"t{j}" for j in range(n_tasks)]
    order = np.linspace(-1, 1, n_models)
    z = np.where((np.arange(n_tasks) % 2)[:, None] == 1, order[None], -order[None]) + rng.normal(0, 0.1, (n_tasks, n_models))
    table = pd.DataFrame([(t, m, 0.7 + 0.05 * z[j, i]) for j, t in enumerate(tasks) for i, m in enumerate(models)],
                         columns=["dataset", "model", "accuracy"])
    return Records(table)


def feature_set(model: str, n_classes: int = 3, dim: int = 6, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), 10)
    features = rng.normal(size=(labels.size, dim)) + labels[:, None]
    return FeatureSet(features, labels, model=model, dataset="new", class_names=[f"c{i}" for i in range(n_classes)])


def frame_of(out: str) -> pd.DataFrame:
    return pd.read_json(io.StringIO(out), orient="records")


def test_observed_accuracies_change_the_ranking_of_a_learner_that_uses_them(cli, tmp_path):
    records = clustered()
    csv = tmp_path / "records.csv"
    records.table.to_csv(csv, index=False)
    learner = tmp_path / "attention"
    assert cli("spider", "train", str(csv), "--learner", "task_attention", "--set", "inner_draws=3", "-o", str(learner))[0] == 0
    code, cold, _ = cli("spider", "rank", str(learner), "--format", "json")  # reads nothing about the task: no -d needed
    assert code == 0
    truth = records.truth("t1")  # a task of the cluster whose order is m0 < ... < m7
    observed = [f"--observed={m}={truth[m]}" for m in ("m0", "m3", "m7")]
    code, warm, _ = cli("spider", "rank", str(learner), *observed, "--format", "json")
    cold, warm = frame_of(cold), frame_of(warm)
    assert code == 0 and "observed" in warm.columns
    assert list(cold["model"]) != list(warm["model"])
    assert warm.set_index("model")["rank"]["m6"] < cold.set_index("model")["rank"]["m6"]  # m6 is good on t1's cluster
    code, prior_out, err = cli("spider", "rank", str(learner), "--observed", "m0=0.5")
    assert code == 0 and "2 or more" in err
    # Inner validation may give the observed accuracies no weight (beta_o = 0 for every count): they then changed
    # nothing, and a model observed at the top stayed where the prior put it without a word.
    text = (learner / "learner.json").read_text()
    weights = re.search(r'"beta_o": \{\s*"dict": (\{[^}]*\})', text)
    zeroed = json.dumps({k: 0.0 for k in json.loads(weights.group(1))})
    (learner / "learner.json").write_text(text[: weights.start(1)] + zeroed + text[weights.end(1) :])
    code, same, err = cli("spider", "rank", str(learner), *observed, "--format", "json")
    assert code == 0 and list(frame_of(same)["model"]) == list(cold["model"])
    assert "learned to give observed accuracies no weight" in err


def test_model_prior_ranks_with_nothing_and_a_learner_names_the_option_for_what_it_lacks(cli, tmp_path):
    records = clustered()
    meta = pd.DataFrame({"size": np.arange(16.0)}, index=records.record_tasks)
    with_meta = Records(records.table, task_meta=meta)
    prior = make_learner("model_prior").fit(with_meta).save(tmp_path / "prior")
    code, out, _ = cli("spider", "rank", str(prior), "--format", "csv", "--top", "0")
    ranking = pd.read_csv(io.StringIO(out))
    assert code == 0 and len(ranking) == 8 and (ranking["rank"] == ranking["prior_rank"]).all()
    # given a dataset, the same ranking was titled "ranking for digits" without saying it reads nothing of it
    code, out, err = cli("spider", "rank", str(prior), "-d", "digits", "--format", "csv")
    assert code == 0 and pd.read_csv(io.StringIO(out)).equals(ranking), err
    assert "note: model_prior reads nothing about a task (it ranks every task alike)" in err
    # --top trimmed only a terminal's table: piped, the table showed every model
    code, out, _ = cli("spider", "rank", str(prior), "--top", "2", "--out", str(tmp_path / "ranking.csv"))
    assert code == 0 and len(out.splitlines()) == 4 and len(pd.read_csv(tmp_path / "ranking.csv")) == 8, out
    attention = make_learner("task_attention", inner_draws=2).fit(with_meta).save(tmp_path / "attention")
    code, _, err = cli("spider", "rank", str(attention))
    assert code == 2 and "--meta" in err and "size" in err and "Traceback" not in err
    code, out, err = cli("spider", "rank", str(attention), "--meta", "size=3", "--format", "json")
    assert code == 0 and len(frame_of(out)) == 8 and "note" not in err
    # a misspelt column was dropped without a word
    code, out, err = cli("spider", "rank", str(attention), "--meta", "size=3", "--meta", "sise=4", "--format", "json")
    assert code == 0 and len(frame_of(out)) == 8 and "note: task_attention reads no task metadata sise" in err
    code, _, err = cli("spider", "rank", str(attention), "unknown-task")
    assert code == 2 and "-d DATASET" in err


def test_rank_a_new_dataset_from_feature_files_with_prototypes_and_rerank(cli, tmp_path):
    records = clustered()
    protos = {t: np.random.default_rng(j).normal(size=(3, 6)).astype(np.float32) for j, t in enumerate(records.record_tasks)}
    records = Records(records.table, task_prototypes=protos, info={"encoder": "m2"})
    learner = make_learner("spider", episodes=5, val_fraction=0.0).fit(records)
    assert learner.reads == ["prototypes"] and learner.recipe == {"encoder": "m2"}
    folder = learner.save(tmp_path / "spider")
    files = []
    for i in range(8):
        fs = feature_set(f"m{i}", seed=i)
        np.savez(tmp_path / f"m{i}.npz", features=fs.features, labels=fs.labels)
        files.append(tmp_path / f"m{i}.npz")
    code, _, err = cli("spider", "rank", str(folder), "--features", str(files[0]))
    assert code == 2 and "m2" in err and "--features" in err  # the encoder's features are what it reads
    code, out, err = cli("spider", "rank", str(folder), "--features", str(files[2]), "--format", "json")
    assert code == 0, err
    first = frame_of(out)
    expected = learner.predict(describe_task(learner, "custom", {"m2": feature_set("m2", seed=2)}))
    np.testing.assert_allclose(first.set_index("model")["score"].loc[expected.index], expected.to_numpy(), rtol=1e-5)
    args = [a for f in files for a in ("--features", str(f))]
    code, out, err = cli("spider", "rank", str(folder), *args, "--rerank", "3", "--out", "-")
    assert code == 0, err
    reranked = pd.read_csv(io.StringIO(out))
    assert set(reranked["model"][:3]) == set(first["model"][:3])  # only the top 3 may move
    assert list(reranked["model"][3:]) == list(first["model"][3:])


def test_learned_rerank_uses_the_top_models_own_prototypes(cli, tmp_path):
    """--rerank-metric learned: Model Spider's second stage, the top-K models' own class prototypes on the new
    dataset enrich the task tokens and only those K are re-ordered; a learner without it says what to use."""
    records = clustered()
    rng = np.random.default_rng(5)
    protos = {t: rng.normal(size=(3, 6)).astype(np.float32) for t in records.record_tasks}
    own = {(m, t): rng.normal(size=(3, 6)).astype(np.float32) for m in records.models for t in records.record_tasks}
    learner = make_learner("spider", episodes=5, val_fraction=0.0).fit(
        Records(records.table, task_prototypes=protos, model_task_prototypes=own, info={"encoder": "m2"}))
    assert learner.rerank_models == records.models
    folder = learner.save(tmp_path / "spider")
    sets = {f"m{i}": feature_set(f"m{i}", seed=i) for i in range(8)}
    for name, fs in sets.items():
        np.savez(tmp_path / f"{name}.npz", features=fs.features, labels=fs.labels)
    args = [a for name in sets for a in ("--features", str(tmp_path / f"{name}.npz"))]
    code, out, err = cli("spider", "rank", str(folder), *args, "--format", "json")
    first = frame_of(out)
    code, out, err = cli("spider", "rank", str(folder), *args, "--rerank", "4", "--rerank-metric", "learned",
                         "--format", "json")
    assert code == 0, err
    reranked = frame_of(out)
    assert set(reranked["model"][:4]) == set(first["model"][:4]) and list(reranked["model"][4:]) == list(first["model"][4:])
    from modelrank.spider.prototypes import prototypes_of

    top = list(first["model"][:4])
    task = describe_task(learner, "custom", {"m2": sets["m2"]})
    task.model_prototypes, task.rerank_k = {m: prototypes_of(sets[m]) for m in top}, 4
    expected = learner.predict(task)
    np.testing.assert_allclose(reranked.set_index("model")["score"].loc[expected.index], expected.to_numpy(), rtol=1e-5)
    assert not np.allclose(expected.to_numpy(), learner.predict(describe_task(learner, "custom", {"m2": sets["m2"]})))
    prior = make_learner("model_prior").fit(records).save(tmp_path / "prior")
    code, _, err = cli("spider", "rank", str(prior), *args, "--rerank", "3", "--rerank-metric", "learned")
    assert code == 2 and "--rerank-metric METRIC" in err


def test_rank_ties_predictions_equal_within_precision_and_says_when_nothing_is_ranked(cli, tmp_path):
    """`spider rank` ranked by exact comparison: last-bit differences were a ranking, and a learner with nothing
    to go on (one training task: no other task to draw on) printed rank 1 for every model without a word."""
    near = pd.Series([0.3, 0.1 + 0.2, 0.2, 0.5], index=["a", "b", "c", "d"])  # 0.1 + 0.2 = 0.30000000000000004
    ranks, reason = prediction_ranks(near)
    assert reason is None and list(ranks) == [2, 2, 4, 1]
    assert top_models(near, 2) == ["d", "b", "a"]  # a and b tie for second
    ranks, reason = prediction_ranks(pd.Series([0.7, 0.7 * (1 + 1e-14), 0.7], index=["a", "b", "c"]))
    assert np.isnan(ranks).all() and "equal within the metric's precision" in reason
    records = clustered()
    csv = tmp_path / "one_task.csv"
    records.table[records.table["dataset"] == "t0"].to_csv(csv, index=False)
    assert cli("spider", "train", str(csv), "-o", str(tmp_path / "attention"))[0] == 0
    code, out, err = cli("spider", "rank", str(tmp_path / "attention"), "t0", "--format", "json")
    assert code == 0 and frame_of(out)["rank"].isna().all() and "no ranking: task_attention on t0" in err


def test_rank_ties_models_whose_records_differ_only_in_float32_rounding(cli, tmp_path):
    """alpha and beta have swapped accuracies on two tasks (t2 is t1 shifted by 0.1): equal priors in exact
    arithmetic, 2.4e-7 apart from the learners' float32 records, which `spider rank` ranked 1 and 2 (and
    prior_rank with them)."""
    csv = tmp_path / "swapped.csv"
    csv.write_text("dataset,model,accuracy\nt1,alpha,0.71\nt1,beta,0.62\nt1,gamma,0.45\n"
                   "t2,alpha,0.52\nt2,beta,0.61\nt2,gamma,0.35\n")
    assert cli("spider", "train", str(csv), "-o", str(tmp_path / "prior"), "--learner", "model_prior")[0] == 0
    code, out, _ = cli("spider", "rank", str(tmp_path / "prior"), "--format", "json")
    ranks = frame_of(out).set_index("model")
    assert code == 0 and ranks["rank"].to_dict() == {"alpha": 1, "beta": 1, "gamma": 3}
    assert ranks["prior_rank"].to_dict() == {"alpha": 1, "beta": 1, "gamma": 3}
    assert sorted(top_models(ranks["score"], 1)) == ["alpha", "beta"]  # --rerank's top 1 holds both


def test_eval_says_which_tasks_rank_nothing_and_why(cli, tmp_path):
    """A task with a constant ground truth is left out of `n` (as `evaluate` does), which said nothing of why."""
    table = clustered().table
    table.loc[table["dataset"] == "t3", "accuracy"] = 0.5
    table.to_csv(tmp_path / "records.csv", index=False)
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior,random",
                         "--format", "csv")
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["n"]) == {15}
    assert "no ranking: t3 (ground truth): all 8 scores are equal (0.5)" in err and "t4" not in err


def test_eval_leaves_out_a_task_too_small_for_partial_and_says_so_once(cli, tmp_path):
    """A task with fewer than k + 2 models refused the whole `--protocol both` evaluation (after the other learners'
    checks); it is evaluated cold and left out of partial, with one note."""
    table = clustered().table
    small = table[table["dataset"] == "t0"].head(4).assign(dataset="small")
    pd.concat([table, small]).to_csv(tmp_path / "records.csv", index=False)
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior,random",
                         "--protocol", "both", "--format", "csv")
    summary = pd.read_csv(io.StringIO(out)).set_index(["learner", "protocol"])
    assert code == 0 and summary.loc[("random", "cold_start"), "tasks"] == 17, err
    assert summary.loc[("random", "partial"), "tasks"] == 16
    assert err.count("small") == 1 and "left out: small (partial): 4 of its models are known to the learner; " \
        "partial with k=3 needs 5" in err


def test_eval_leaves_out_a_task_of_one_model_and_trains_on_it(cli, tmp_path):
    """A task with the record of a single model made the whole evaluation a usage error; `evaluate` leaves such a
    dataset out (one model ranks nothing), so spider eval does too, naming it once, and trains on its record."""
    from modelrank.spider.protocols import evaluate, seed_mixture

    table = pd.concat([clustered().table, pd.DataFrame({"dataset": ["solo"], "model": ["m0"], "accuracy": [0.5]})])
    table.to_csv(tmp_path / "records.csv", index=False)
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior,random",
                         "--protocol", "both", "--format", "csv")
    summary = pd.read_csv(io.StringIO(out))
    assert code == 0 and set(summary["tasks"]) == {16}, err
    assert err.count("solo") == 1 and "no ranking: solo (ground truth): only 1 model has a record" in err
    records, trained = Records(table), []

    def factory():
        learner = make_learner("model_prior")
        fit = learner.fit
        learner.fit = lambda records: trained.append(set(records.record_tasks)) or fit(records)
        return learner

    assert "solo" not in set(evaluate(factory, records).per_task["task"])
    assert all("solo" in tasks for tasks in trained) and len(trained) == 16
    meta = pd.DataFrame({"f": 0.0}, index=records.tasks)  # the cold block's tasks are known by their metadata
    mixed = seed_mixture(factory, Records(table, task_meta=meta))
    assert "solo" not in set(mixed.per_task["task"]) and len(set(mixed.per_task["task"])) == 16
    (tmp_path / "single.csv").write_text("dataset,model,accuracy\nt1,m0,0.5\nt2,m1,0.6\n")
    code, out, err = cli("spider", "eval", str(tmp_path / "single.csv"), "--learners", "model_prior")
    assert code == 2 and out == "" and err == "error: no task has records for 2 or more models: there is no ranking " \
        "to learn from\n", err


def test_eval_reads_the_metadata_files_train_reads(cli, tmp_path):
    """`spider eval` had no --task-meta / --model-meta: on a records CSV the learners that read metadata were
    evaluated without it (and metadata_lr not at all), though `spider train` gives it to them."""
    records = clustered(n_tasks=12)
    records.table.to_csv(tmp_path / "records.csv", index=False)
    cluster = [int(task[1:]) % 2 for task in records.record_tasks]  # clustered()'s two orders of the models
    pd.DataFrame({"cluster": cluster}, index=records.record_tasks).rename_axis("task").to_csv(tmp_path / "tasks.csv")
    pd.DataFrame({"size": np.arange(8.0)}, index=records.models).rename_axis("model").to_csv(tmp_path / "models.csv")
    args = ["spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior,task_attention",
            "--set", "inner_draws=2", "--format", "csv"]
    code, out, err = cli(*args)
    blind = pd.read_csv(io.StringIO(out)).set_index("learner")
    code_meta, out, err = cli(*args, "--task-meta", str(tmp_path / "tasks.csv"))
    seeing = pd.read_csv(io.StringIO(out)).set_index("learner")
    assert code == code_meta == 0, err
    # the metadata name the tasks' cluster: without them task attention has nothing but the prior to go on
    assert blind.loc["task_attention", "spearman"] == blind.loc["model_prior", "spearman"]
    assert seeing.loc["task_attention", "spearman"] > seeing.loc["model_prior", "spearman"]
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "metadata_lr",
                         "--model-meta", str(tmp_path / "models.csv"), "--format", "csv")
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 1, err
    for extra, message in ((["--task-meta", str(tmp_path / "none.csv")], "task_meta file"),
                           (["--task-meta", str(tmp_path / "tasks.csv"), "--out", str(tmp_path / "tasks.csv")],
                            "is also the --task-meta file")):
        code, out, err = cli(*args, *extra)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, err


def test_eval_by_domain_reads_the_domain_column_of_the_task_metadata(cli, tmp_path):
    """`--by domain` (help: "needs a domain column in task metadata") found no column unless the records' loader named
    it (DomainNet's): a --task-meta or benchmark tasks.csv with a `domain` column was refused, "(got None)"."""
    from modelrank.spider.protocols import task_folds

    records = clustered(n_tasks=12)
    records.table.to_csv(tmp_path / "records.csv", index=False)
    meta = pd.DataFrame({"domain": [f"d{int(t[1:]) % 3}" for t in records.record_tasks], "size": 1.0},
                        index=records.record_tasks)
    meta.rename_axis("task").to_csv(tmp_path / "tasks.csv")
    assert task_folds(Records(records.table, task_meta=meta), "domain") == [
        sorted(f"t{j}" for j in range(d, 12, 3)) for d in range(3)]
    args = ["spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior,random", "--by", "domain",
            "--format", "csv"]
    code, out, err = cli(*args, "--task-meta", str(tmp_path / "tasks.csv"))
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["tasks"]) == {12}, err
    meta.drop(columns="domain").rename_axis("task").to_csv(tmp_path / "tasks.csv")
    code, out, err = cli(*args, "--task-meta", str(tmp_path / "tasks.csv"))
    assert code == 2 and out == "" and err == ("error: leave-one-domain-out needs a task metadata column 'domain' "
                                               "naming each task's domain; it has size\n"), err


def test_eval_refuses_a_learner_named_twice_before_any_work(cli, tmp_path, monkeypatch):
    """`--learners random,random,model_prior` evaluated random twice (a spider run can take minutes) and printed two
    identical rows."""
    import modelrank.spider.loaders

    clustered().table.to_csv(tmp_path / "records.csv", index=False)
    monkeypatch.setattr(modelrank.spider.loaders, "load_records", lambda *a, **k: pytest.fail("records were read"))
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "random,random,model_prior")
    assert code == 2 and out == "" and err == "error: --learners names 'random' more than once\n", err


@pytest.mark.parametrize("args, message", [
    (("--by", "Task"), "--by must be task or domain, not 'Task'"),
    (("--by", "domain", "--folds", "3"), "--folds goes with --by task"),  # the folds were ignored without a word
    (("--protocol", "seed_mixture", "--folds", "3"), "--protocol seed_mixture makes its own split"),
    (("--protocol", "seed_mixture", "--by", "domain"), "--protocol seed_mixture makes its own split"),
], ids=["unknown", "folds", "seed_mixture_folds", "seed_mixture_by"])
def test_eval_checks_by_before_the_records_are_read(cli, tmp_path, monkeypatch, args, message):
    import modelrank.spider.loaders

    clustered().table.to_csv(tmp_path / "records.csv", index=False)
    monkeypatch.setattr(modelrank.spider.loaders, "load_records", lambda *a, **k: pytest.fail("records were read"))
    code, out, err = cli("spider", "eval", str(tmp_path / "records.csv"), "--learners", "model_prior", *args)
    assert code == 2 and out == "" and err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_rerank_orders_the_top_k_by_the_metric_and_keeps_the_rest():
    scores = pd.Series([0.9, 0.8, 0.7, 0.1], index=["a", "b", "c", "d"])
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 20)
    good = FeatureSet(np.c_[labels * 4.0, rng.normal(size=40)] + rng.normal(0, 0.1, (40, 2)), labels, model="c")
    bad = [FeatureSet(rng.normal(size=(40, 2)), labels, model=m) for m in ("a", "b")]
    out = rerank_by_metric(scores, 3, {fs.model: fs for fs in [good, *bad]}, "logme")
    assert out.idxmax() == "c" and out["d"] == 0.1 and sorted(out) == sorted(scores)
    tied = pd.Series([0.9, 0.5, 0.5, 0.1], index=["a", "b", "c", "d"])
    assert top_models(tied, 2) == ["a", "b", "c"]  # which of two tied models is "second" would be noise


def test_rerank_by_a_metric_that_ranks_nothing_keeps_the_first_stage():
    """H-Score saturates at C - 1 when N <= D + 1: argsort of its last bits re-ordered the top k (noise as a ranking),
    and with one model unsaturated a saturated score beat every model the metric could still tell apart."""
    scores = pd.Series([0.9, 0.8, 0.7, 0.6, 0.1], index=["a", "b", "c", "d", "e"])
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 4)  # 12 samples, 30 dimensions: saturated for every model
    sets = {m: FeatureSet(rng.normal(size=(12, 30)), labels, model=m) for m in "abcd"}
    with pytest.warns(UserWarning, match="hscore ranks none of the top 4 models .saturated for all 4"):
        out = rerank_by_metric(scores, 4, sets, "hscore")
    assert out.equals(scores)
    # c and d unsaturated (2 dimensions; d separates the classes): they swap places, a and b (saturated) stay put
    separated = np.c_[labels * 3.0, rng.normal(size=12)] + rng.normal(0, 0.1, (12, 2))
    sets.update(c=FeatureSet(rng.normal(size=(12, 2)), labels, model="c"), d=FeatureSet(separated, labels, model="d"))
    out = rerank_by_metric(scores, 4, sets, "hscore")
    assert list(out.sort_values(ascending=False).index) == ["a", "b", "d", "c", "e"]


def test_describe_task_builds_what_the_learner_read():
    records = clustered()
    meta = pd.DataFrame({"classes": [3.0, 5.0] * 8, "domain": ["none", "blur"] * 8}, index=records.record_tasks)
    learner = make_learner("task_attention", inner_draws=2).fit(Records(records.table, task_meta=meta))
    info = describe_task(learner, "new", {"m0": feature_set("m0", n_classes=5)})
    assert info.meta == {"classes": 5, "domain": "none"} and info.prototypes is None and info.scores is None
    assert np.isfinite(learner.predict(info).to_numpy()).all()
    with pytest.raises(InvalidInputError, match="--meta"):
        describe_task(learner, "new", {})


def test_eval_prints_one_comparison_table_with_paired_differences(cli, tmp_path):
    records = clustered(n_tasks=8)
    csv = tmp_path / "records.csv"
    records.table.to_csv(csv, index=False)
    args = ["spider", "eval", str(csv), "--learners", "model_prior,task_attention", "--set", "inner_draws=2",
            "--protocol", "both"]
    code, out, err = cli(*args, "--format", "json")
    assert code == 0, err
    table = frame_of(out)
    assert set(table["learner"]) == {"model_prior", "task_attention"}
    assert {"cold_start", "partial"} <= set(table["protocol"])
    row = table[(table["learner"] == "task_attention") & (table["protocol"] == "partial")].iloc[0]
    assert row["verdict"] == "beats" and row["wins"] > row["losses"]  # observed accuracies name the cluster
    assert table[table["learner"] == "model_prior"]["verdict"].isna().all()
    code, out, _ = cli(*args, "--tau-protocol", "model_spider", "--out", str(tmp_path / "table.csv"))
    other = pd.read_csv(tmp_path / "table.csv")
    assert code == 0 and "task_attention" in out and len(other) == len(table)  # the table on screen, the data in --out
    assert not np.allclose(other["weighted_tau[model_spider]"], table["weighted_tau[scipy]"])
    assert all(pd.api.types.is_integer_dtype(other[c]) for c in ("n", "tasks")), other.dtypes  # counts, not 8.0


@pytest.mark.parametrize("args, message", [
    (["spider", "train", "x.csv", "-o", "o", "--learner", "graph", "--set", "epochs=abc"], "epochs must be int"),
    (["spider", "train", "x.csv", "-o", "o", "--learner", "foo"], "unknown learner"),
    (["spider", "eval", "x.csv", "--tau-protocol", "nope"], "--tau-protocol"),
    (["spider", "eval", "x.csv", "--learners", "graph", "--set", "hidden=big"], "hidden must be int"),
    # Only types were checked: tracebacks mid-training (lr, hidden, eval_every), or another training than asked.
    (["spider", "train", "x.csv", "-o", "o", "--learner", "graph", "--set", "lr=-1"], "lr must be > 0, not -1"),
    (["spider", "train", "x.csv", "-o", "o", "--learner", "graph", "--set", "lr=nan"], "lr must be > 0"),
    (["spider", "train", "x.csv", "-o", "o", "--learner", "graph", "--set", "epochs=-1"], "epochs must be >= 1"),
    (["spider", "train", "x.csv", "-o", "o", "--learner", "graph", "--set", "heads=3"], "multiple of heads (3)"),
    (["spider", "train", "x.csv", "-o", "o", "--learner", "spider", "--set", "seed=-1"], "seed must be in [0, 4294967295]"),
    (["spider", "eval", "x.csv", "--learners", "task_attention", "--set", "feature_grid=[]"],
     "feature_grid must be a non-empty list of values >= 0"),
])
def test_bad_learner_options_are_one_line_errors_before_any_work(cli, args, message):
    code, _, err = cli(*args)  # x.csv does not exist: the option is checked first
    assert code == 2 and message in err and "Traceback" not in err


def test_eval_learner_and_baseline_choices_are_checked(cli, tmp_path):
    csv = tmp_path / "records.csv"
    clustered(n_models=3, n_tasks=4).table.to_csv(csv, index=False)
    for args, message in ((["--learners", " , "], "names no learner"), (["--baseline", "bogus"], "unknown learner 'bogus'")):
        code, out, err = cli("spider", "eval", str(csv), *args)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, err
    # each learner's input is checked before the first fit: `metric` failed after the learners before it had been
    # evaluated fold by fold (40 s of graph on Model Spider's records)
    for learners, message in (("model_prior,metric", "the metric baseline needs transferability scores"),
                              ("model_prior,metadata_lr", "metadata_lr needs model metadata")):
        code, out, err = cli("spider", "eval", str(csv), "--learners", learners)
        assert code == 2 and out == "" and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    code, out, err = cli("spider", "eval", str(csv), "--learners", "random", "--format", "csv")
    assert code == 0 and "--baseline model_prior is not among --learners" in err
    assert "diff_vs" not in out and len(pd.read_csv(io.StringIO(out))) == 1  # no column of Nones


def test_rank_checks_meta_and_observed_before_saying_anything(cli, tmp_path):
    prior = make_learner("model_prior").fit(clustered()).save(tmp_path / "prior")
    for args, message in ((["t1", "--meta", "size=3"], "--meta describes a new task"),
                          (["--meta", "size"], "--meta expects key=value"),
                          (["t1", "--observed", "bogus=0.5", "--observed", "m1=0.3"], "not in the trained zoo"),
                          # the last of two values won without a word
                          (["t1", "--observed", "m1=0.5", "--observed", "m1=0.6", "--observed", "m2=0.3"],
                           "--observed gives m1 two values, 0.5 and 0.6"),
                          # model_prior reads nothing about the task: the dataset was never looked at
                          (["-d", "digitz"], "unknown dataset 'digitz'"),
                          (["-d", "digits", "--split", "val"], "dataset digits has splits")):
        code, out, err = cli("spider", "rank", str(prior), *args)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, (args, err)
    (tmp_path / "file").write_text("")
    code, _, err = cli("spider", "train", str(tmp_path / "records.csv"), "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file; spider train saves the learner in a folder" in err
    code, _, err = cli("spider", "train", str(tmp_path / "records.csv"), "--out", "")  # an unset shell variable
    assert code == 2 and "--out needs a folder name" in err and err.count("\n") == 1
    # the folder's parent is a file: the error came after training, from the save
    clustered(n_models=3, n_tasks=4).table.to_csv(tmp_path / "records.csv", index=False)
    code, _, err = cli("spider", "train", str(tmp_path / "records.csv"), "--out", str(tmp_path / "file" / "l"),
                       "--learner", "bogus")
    assert code == 2 and f"directory {tmp_path / 'file'} does not exist" in err and err.count("\n") == 1, err
    code, _, err = cli("spider", "train", f"domainnet:{tmp_path}", "--task-meta", str(tmp_path / "tasks.csv"),
                       "--out", str(tmp_path / "l"))  # was silently ignored: the folder brings its own metadata
    assert code == 2 and "metadata files go with a records CSV" in err and err.count("\n") == 1


def test_list_learners(cli):
    code, out, _ = cli("list", "learners")
    assert code == 0 and all(name in out for name in ("model_prior", "task_attention", "graph", "spider"))


def test_saved_learner_is_json_and_npz_without_pickle(tmp_path):
    learner = make_learner("graph", epochs=3, val_fraction=0.0).fit(clustered())
    folder = learner.save(tmp_path / "g")
    assert sorted(p.name for p in folder.iterdir()) == ["learner.json", "state.npz"]
    with np.load(folder / "state.npz", allow_pickle=False) as arrays:
        assert "learner/net/model_id.weight" in arrays.files
    meta = json.loads((folder / "learner.json").read_text())
    meta["format"] = 1
    (folder / "learner.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="retrain"):
        load_learner(folder)


def test_rank_a_registered_dataset_described_from_the_feature_cache(cli, cache_dir):
    """-d: the encoder's features of the dataset come from the feature cache (extracted there when missing)."""
    from modelrank.extraction import load_features
    from modelrank.spider.prototypes import prototypes_of

    encoder = "random:test_resnet"
    features = load_features(encoder, "digits", "test", per_class=3, cache_dir=str(cache_dir))
    records = clustered()
    width = features.features.shape[1]
    protos = {t: np.random.default_rng(j).normal(size=(3, width)).astype(np.float32) for j, t in enumerate(records.record_tasks)}
    learner = make_learner("spider", episodes=3, val_fraction=0.0).fit(
        Records(records.table, task_prototypes=protos, info={"encoder": encoder}))
    folder = learner.save(cache_dir.parent / "learner")
    code, out, err = cli("spider", "rank", str(folder), "-d", "digits", "--split", "test", "--per-class", "3",
                         "--format", "json", "--quiet")
    assert code == 0, err
    ranking = frame_of(out).set_index("model")["score"]
    expected = learner.predict(TaskInfo("digits", prototypes=prototypes_of(features)))
    np.testing.assert_allclose(ranking.loc[expected.index], expected.to_numpy(), rtol=1e-5)


@pytest.mark.parametrize("learner, pair, message", [
    # JSON null passed through as None: a traceback in int(None) once training began (graph), "None" as a prior
    ("graph", "epochs=null", "epochs must be int like its default 300, not None"),
    ("graph", "prior=null", "prior must be str"),
    # a list option's values were never converted: ["a"] was a TypeError in the range check, [true] a weight of 1.0
    ("task_attention", 'score_grid=["a"]', "score_grid must be list"),
    ("task_attention", "feature_grid=[true, 1]", "feature_grid must be list"),
])
def test_learner_option_values_of_the_wrong_kind_are_one_line_errors(cli, tmp_path, learner, pair, message):
    csv = tmp_path / "records.csv"
    clustered(n_models=3, n_tasks=4).table.to_csv(csv, index=False)
    code, out, err = cli("spider", "train", str(csv), "-o", str(tmp_path / "out"), "--learner", learner, "--set", pair)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    assert make_learner("task_attention", score_grid=[0, 1]).config["score_grid"] == [0.0, 1.0]  # ints still fine


def test_ctrl_c_while_rank_extracts_says_the_features_are_kept(cli, tmp_path, cache_dir, monkeypatch):
    """spider rank -d extracts missing features into the cache, chunk by chunk: interrupted, it said "nothing was
    written" while the finished chunks were kept (and a rerun resumes from them)."""
    import modelrank.extraction

    records = clustered(n_models=3, n_tasks=4)
    scores = records.table.rename(columns={"accuracy": "logme"})
    learner = make_learner("metric").fit(Records(records.table, scores=scores)).save(tmp_path / "metric")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelrank.extraction, "load_feature_pairs", interrupted)
    code, out, err = cli("spider", "rank", str(learner), "-d", "digits")
    assert code == 130 and out == "" and err.count("\n") == 1, err
    assert "kept in the feature cache" in err and "rerun the same command to resume" in err


def test_an_unknown_task_names_the_closest_known_ones(cli, tmp_path):
    """`spider rank DIR Pets` said only "the learner knows 8 tasks": their names were in learner.json alone."""
    table = pd.DataFrame([(t, m, 0.5 + 0.1 * i + 0.01 * j) for j, t in enumerate(["Pet", "DTD", "CIFAR10", "CIFAR100"])
                          for i, m in enumerate(["a", "b"])], columns=["dataset", "model", "accuracy"])
    learner = make_learner("model_prior").fit(Records(table)).save(tmp_path / "prior")
    for task, hint in (("Pets", "(did you mean Pet?)"), ("cifar-10", "(did you mean CIFAR10, CIFAR100?)"),
                       ("zzz", "(CIFAR10, CIFAR100, DTD, Pet)")):
        code, out, err = cli("spider", "rank", str(learner), task)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"unknown task {task!r}: the learner knows 4 tasks {hint}; describe a new one" in err, err
