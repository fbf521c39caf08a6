"""Learned rankers (modelrank.spider): fitting, protocols, persistence, bad input, CLI, public records."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from modelrank.errors import InvalidInputError, ModelrankError
from modelrank.spider import Records, TaskInfo, load_learner, make_learner
from modelrank.spider.protocols import evaluate, seed_mixture_split, task_folds

# tiny tables: no early stopping, light regularisation (the defaults are tuned for hundreds of records)
FAST = {"graph": {"epochs": 150, "val_fraction": 0.0, "weight_decay": 1e-4, "dropout": 0.1},
        "spider": {"episodes": 150, "val_fraction": 0.0}}


def tiny_records(n_models: int = 6, n_tasks: int = 16, seed: int = 0, scores: bool = False) -> Records:
    """Models 0..2 are good on domain 'a', 3..5 on domain 'b': the best model depends on the task, so a fixed
    prior cannot rank every task right, while a learner that reads the task's domain can."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    tasks = [f"t{j}" for j in range(n_tasks)]
    domain = np.array(["a", "b"])[np.arange(n_tasks) % 2]
    affinity = np.where(np.arange(n_models)[:, None] < n_models // 2, 1.0, -1.0) * np.where(domain == "a", 1, -1)[None]
    quality = np.linspace(0, 0.1, n_models)[:, None] * rng.permutation(n_models)[:, None] / n_models
    acc = 0.6 + 0.15 * affinity + quality + rng.normal(0, 0.005, (n_models, n_tasks))
    table = pd.DataFrame([(t, m, acc[i, j]) for i, m in enumerate(models) for j, t in enumerate(tasks)],
                         columns=["dataset", "model", "accuracy"])
    task_meta = pd.DataFrame({"domain": domain, "num_classes": rng.integers(2, 20, n_tasks)}, index=tasks)
    model_meta = pd.DataFrame({"family": ["x", "y"] * (n_models // 2), "params": np.arange(1, n_models + 1) * 1e6},
                              index=models)
    side = {}
    if scores:
        side["scores"] = table.rename(columns={"accuracy": "logme"}).assign(
            logme=lambda f: f["logme"] + rng.normal(0, 0.05, len(f)))
    return Records(table, model_meta=model_meta, task_meta=task_meta, **side)


def spearman_on(learner, records: Records, task: str) -> float:
    truth = records.truth(task)
    return stats.spearmanr(truth, learner.predict(task).loc[truth.index]).statistic


@pytest.mark.parametrize("name", ["graph", "spider"])
def test_learners_overfit_a_tiny_table_beyond_the_prior(name):
    records = tiny_records()
    learner = make_learner(name, **FAST[name]).fit(records)
    prior = make_learner("model_prior").fit(records)
    ours = np.mean([spearman_on(learner, records, t) for t in records.record_tasks])
    base = np.mean([spearman_on(prior, records, t) for t in records.record_tasks])
    assert ours > 0.8
    assert ours > base + 0.3  # the prior ranks every task the same way and cannot fit both domains


def test_baselines_behave_as_documented():
    records = tiny_records(scores=True)
    lr = make_learner("metadata_lr").fit(records)
    a, b = lr.predict("t0"), lr.predict("t1")
    assert list(a.sort_values().index) == list(b.sort_values().index)  # same ranking for every task
    prior = make_learner("model_prior").fit(records)
    assert prior.predict("t0").equals(prior.predict("t5"))
    metric = make_learner("metric").fit(records)
    logme = records.scores.query("dataset == 't3'").set_index("model")["logme"]
    np.testing.assert_allclose(metric.predict("t3").loc[logme.index], logme)
    rnd = make_learner("random", seed=1).fit(records)
    assert rnd.predict("t2").equals(rnd.predict("t2")) and not rnd.predict("t2").equals(rnd.predict("t3"))


def test_cold_start_never_leaks_the_held_out_task():
    records = tiny_records()
    seen: list[set[str]] = []

    class Spy:
        def __init__(self):
            self.inner = make_learner("model_prior")

        def fit(self, train):
            seen.append(set(train.table["dataset"]))
            self.inner.fit(train)
            return self

        def __getattr__(self, item):
            return getattr(self.inner, item)

    folds = task_folds(records, "task", n_folds=4, seed=0)
    result = evaluate(Spy, records, "cold_start", folds)
    assert len(seen) == 4
    for held, tasks_in_fit in zip(folds, seen):
        assert not set(held) & tasks_in_fit
        assert set(records.record_tasks) - set(held) == tasks_in_fit
    assert sorted(result.per_task["task"]) == records.record_tasks
    # leave-one-domain-out holds out whole domains
    assert [len(f) for f in task_folds(records, "domain", column="domain")] == [8, 8]


def test_partial_protocol_measures_unobserved_models_only():
    records = tiny_records(n_models=8)
    result = evaluate(lambda: make_learner("model_prior"), records, "partial", [["t0", "t1"]], k_observed=3)
    part = result.per_task[result.per_task["protocol"] == "partial"]
    filled = result.per_task[result.per_task["protocol"].str.startswith("partial_filled")]
    assert (part["n_models"] == 5).all() and (filled["n_models"] == 8).all()


def test_graph_uses_observed_accuracies_and_edge_scores():
    records = tiny_records(scores=True)
    learner = make_learner("graph", **FAST["graph"]).fit(records.without_tasks(["t0"]))
    cold = learner.predict("t0")
    assert not np.allclose(cold, learner.predict("t0", observed={"m0": 0.9, "m5": 0.2}))
    info = records.task_info("t0")
    flipped = TaskInfo("t0-new", info.meta, scores=info.scores.assign(logme=-info.scores["logme"]))
    same = TaskInfo("t0-new", info.meta, scores=info.scores)
    assert not np.allclose(learner.predict(same), learner.predict(flipped))  # edge features reach the output


@pytest.mark.parametrize("name", ["random", "model_prior", "metadata_lr", "metric", "task_attention", "graph", "spider"])
def test_save_load_ranks_identically(name, tmp_path):
    records = tiny_records(scores=True)
    learner = make_learner(name, **FAST.get(name, {})).fit(records.without_tasks(["t1"]))
    restored = load_learner(learner.save(tmp_path / name))
    for task in ("t1", TaskInfo("new", {"domain": "b", "num_classes": 4}, scores=records.task_info("t1").scores)):
        pd.testing.assert_series_equal(learner.predict(task), restored.predict(task))


def test_spider_new_model_and_rerank():
    records = tiny_records()
    zoo = records.with_rows(records.table[records.table["model"] != "m5"])
    spider = make_learner("spider", **FAST["spider"]).fit(zoo)
    frozen = spider.net.encoder.state_dict()["layers.0.linear1.weight"].clone()
    spider.add_model("m5", records.table[(records.table["model"] == "m5") & records.table["dataset"].isin(["t0", "t1", "t2", "t3"])])
    assert spider.models[-1] == "m5"
    np.testing.assert_array_equal(frozen, spider.net.encoder.state_dict()["layers.0.linear1.weight"])
    # m5 is strong on domain 'b' (odd tasks): its learned token must rank it above the domain-'a' models there
    scores = spider.predict("t5")
    assert scores["m5"] > scores[["m0", "m1", "m2"]].max()

    rng = np.random.default_rng(0)
    protos = {(m, t): rng.normal(size=(3, 4 + i)) for i, m in enumerate(records.models) for t in records.record_tasks}
    with_own = Records(records.table, task_meta=records.task_meta, model_task_prototypes=protos)
    spider = make_learner("spider", rerank_k=3, episodes=60, val_fraction=0.0).fit(with_own)
    reranked = spider.predict("t0")
    spider.config["rerank_k"] = 1  # stage one only
    stage_one = spider.predict("t0")
    top = stage_one.nlargest(3).index
    assert set(reranked.nlargest(3).index) == set(top)  # re-ranking only reorders the top k
    assert sorted(reranked[top]) == sorted(stage_one[top])
    stage_one_scores = stage_one.to_numpy()
    np.testing.assert_array_equal(spider._rerank(stage_one_scores, None, None, {}), stage_one_scores)  # no features: no-op


def test_spider_task_tokens_from_class_prototypes():
    records = tiny_records()
    rng = np.random.default_rng(1)
    centre = {"a": 1.0, "b": -1.0}
    protos = {t: centre[d] + rng.normal(0, 0.3, (int(rng.integers(2, 6)), 8))
              for t, d in records.task_meta["domain"].items()}
    only_protos = Records(records.table, task_prototypes=protos)
    spider = make_learner("spider", **FAST["spider"]).fit(only_protos.without_tasks(["t0", "t1"]))
    for task, domain in (("t0", "a"), ("t1", "b")):
        truth = records.truth(task)
        new = TaskInfo(f"new-{domain}", prototypes=centre[domain] + rng.normal(0, 0.3, (3, 8)))
        assert stats.spearmanr(truth, spider.predict(new).loc[truth.index]).statistic > 0.6
        assert stats.spearmanr(truth, spider.predict(task).loc[truth.index]).statistic > 0.6
    with pytest.raises(InvalidInputError, match="8-d"):
        spider.predict(TaskInfo("wrong", prototypes=np.ones((3, 5))))


def test_class_prototypes_are_class_means():
    from modelrank.spider.prototypes import class_prototypes

    x = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 0.0]])
    np.testing.assert_allclose(class_prototypes(x, np.array(["b", "b", "a"])), [[10.0, 0.0], [1.0, 3.0]])


def test_bad_input_gets_clear_errors():
    records = tiny_records()
    learner = make_learner("graph", epochs=5, val_fraction=0.0).fit(records)
    with pytest.raises(InvalidInputError, match="not in the zoo"):
        learner.predict("t0", models=["m0", "unknown-model"])
    with pytest.raises(InvalidInputError, match="not in the trained zoo"):
        learner.predict("t0", observed={"unknown-model": 0.5})
    with pytest.raises(InvalidInputError, match="unknown task"):
        learner.predict("never-seen")
    with pytest.raises(InvalidInputError, match="no metadata"):
        learner.predict(TaskInfo("new"))
    one = Records(pd.concat([records.table, pd.DataFrame([["lonely", "m0", 0.5]], columns=records.table.columns)]))
    with pytest.raises(InvalidInputError, match="at least 2"):
        evaluate(lambda: make_learner("model_prior"), one, "cold_start", [["lonely"]])
    # a task whose models have no records elsewhere: the learner trained without it knows none of them
    apart = Records(pd.concat([records.table, pd.DataFrame([["apart", "x0", 0.5], ["apart", "x1", 0.6]],
                                                           columns=records.table.columns)]))
    with pytest.raises(InvalidInputError, match="no held-out task can be evaluated: apart: 0 of its 2 models have "
                                                "records on the other tasks"):
        evaluate(lambda: make_learner("model_prior"), apart, "cold_start", [["apart"]])
    # ... and among others it is left out, with the reason, instead of refusing the whole evaluation
    result = evaluate(lambda: make_learner("model_prior"), apart, "cold_start", [["t0"], ["apart"]])
    assert list(result.per_task["task"]) == ["t0"] and list(result.left_out) == ["apart"]
    few = Records(pd.concat([records.table, records.table[records.table["dataset"] == "t0"].head(4).assign(dataset="few")]))
    fits = []  # a task too small for the partial protocol refused the evaluation after the folds before it
    with pytest.raises(InvalidInputError, match="no held-out task can be evaluated: few .partial.: 4 of its models "
                                                "are known to the learner; partial with k=3 needs 5"):
        evaluate(lambda: fits.append(1) or make_learner("model_prior"), few, "partial", [["few"]])
    assert not fits
    result = evaluate(lambda: make_learner("model_prior"), few, ("cold_start", "partial"), [["t0"], ["few"]])
    assert result.left_out == {"few (partial)": "4 of its models are known to the learner; partial with k=3 needs 5"}
    evaluated = set(zip(result.per_task["task"], result.per_task["protocol"]))
    assert ("few", "cold_start") in evaluated and ("few", "partial") not in evaluated and ("t0", "partial") in evaluated
    with pytest.raises(InvalidInputError, match="no row for model"):
        Records(records.table, model_meta=records.model_meta.drop("m3"))
    with pytest.raises(InvalidInputError, match="no task has records for 2"):
        make_learner("model_prior").fit(records.with_rows(records.table.drop_duplicates("dataset")))
    with pytest.raises(InvalidInputError, match="needs model metadata"):
        make_learner("metadata_lr").fit(Records(records.table))
    with pytest.raises(InvalidInputError, match="duplicated"):
        Records(pd.concat([records.table, records.table.head(1)]))
    # A 1e308 became inf in the learners' float32 and they ranked the noise (exit 0, an overflow warning).
    huge = records.table.assign(accuracy=records.table["accuracy"].where(records.table.index != 3, 1e308))
    with pytest.raises(InvalidInputError, match=r"1 record\(s\) have an accuracy beyond \+-1e\+12"):
        Records(huge)
    assert len(Records(huge.assign(accuracy=huge["accuracy"].clip(upper=1e12))).table) == len(huge)
    with pytest.raises(ModelrankError):
        make_learner("spider", no_such_option=1)


def test_infinite_or_out_of_range_task_metadata_is_missing_or_an_error():
    """One inf in a numeric metadata column made its mean inf, every task's encoding NaN and the learner a
    ranking of nothing (numpy warnings, exit 0); a --meta value beyond float32 once standardised did the same."""
    from modelrank.spider.encoding import TableEncoder

    records = tiny_records()
    meta = records.task_meta.assign(num_classes=records.task_meta["num_classes"].astype(float))
    with_inf = meta.assign(num_classes=meta["num_classes"].where(meta.index != "t3", np.inf))
    encoder = TableEncoder.fit(with_inf)
    assert encoder.numeric["num_classes"]["mean"] == pytest.approx(meta["num_classes"].drop("t3").mean())
    assert np.isfinite(encoder.transform(with_inf)).all()
    learner = make_learner("task_attention", inner_draws=2).fit(Records(records.table, task_meta=with_inf))
    assert learner.predict(TaskInfo("new", meta={"domain": "a", "num_classes": 4})).std() > 0
    with pytest.raises(InvalidInputError, match="num_classes=1e.308 is far outside"):
        encoder.transform(pd.DataFrame([{"domain": "a", "num_classes": 1e308}]))
    with pytest.raises(InvalidInputError, match="too large to standardise"):
        TableEncoder.fit(pd.DataFrame({"x": [-1e308, 1e308, 0.0]}))


def test_seed_mixture_split_matches_the_seed_blocks():
    records = tiny_records(n_models=10, n_tasks=20)
    train, observed = seed_mixture_split(records, seed=0)
    counts = sorted(len(v) for v in observed.values())
    assert counts == sorted([9, 9, 8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0])
    assert len(train.table) == sum(counts)
    cold = {task for task, models in observed.items() if not models}
    assert len(cold) == 2 and cold <= train.held_out  # known by name, as a fold's held-out tasks are


def test_seed_mixture_ranks_the_tasks_of_which_nothing_is_observed_without_metadata():
    """Records without task metadata: the tasks of the 0.0 block left the training records, and ranking them raised
    "unknown task" (exit 2 of `spider eval --protocol seed_mixture` on any plain records CSV)."""
    from modelrank.spider.protocols import seed_mixture

    records = tiny_records(n_models=10, n_tasks=20)
    mixed = seed_mixture(lambda: make_learner("model_prior"), Records(records.table))
    assert (mixed.per_task["protocol"] == "cold").sum() == 2 and len(set(mixed.per_task["task"])) == 20


def test_records_of_two_protocols_are_refused_not_the_best_of_both(tmp_path, cli):
    """`records export` of a cache with linear probes and full fine-tunes was read as the best of the two per model:
    `spider train` learned from a probe's accuracy for one model and a fine-tune's for the next."""
    from modelrank.spider import read_records_csv

    csv = tmp_path / "export.csv"
    pd.DataFrame({"model": ["a", "b", "a", "b"], "finetuned_dataset": "d", "protocol": ["linear", "linear", "full", "full"],
                  "eval_accuracy": [0.7, 0.6, 0.2, 0.9]}).to_csv(csv, index=False)
    with pytest.raises(InvalidInputError, match=r"2 \(dataset, model\) pair\(s\) have runs of several protocols "
                                                r"\(full, linear\), e.g. \('d', 'a'\)"):
        read_records_csv(csv)
    code, out, err = cli("spider", "train", str(csv), "-o", str(tmp_path / "learner"), "-l", "model_prior")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "learner").exists(), err
    one = pd.read_csv(csv).query("protocol == 'full'")
    one.to_csv(csv, index=False)
    assert read_records_csv(csv).truth("d").to_dict() == {"a": 0.2, "b": 0.9}


def test_read_records_csv_takes_the_public_export_layout(tmp_path):
    from modelrank.spider import read_records_csv

    csv = tmp_path / "export.csv"
    pd.DataFrame({"model": ["a", "a", "b", "a"], "finetuned_dataset": ["d", "d", "d", "e"],
                  "selected": [True, False, True, True], "eval_accuracy": [0.5, 0.9, 0.7, 0.6]}).to_csv(csv, index=False)
    records = read_records_csv(csv)
    assert records.truth("d").to_dict() == {"a": 0.5, "b": 0.7}  # the validation-selected run, not the best test one
    assert records.record_tasks == ["d", "e"]
    pd.DataFrame({"Dataset": ["d", "d"], "MODEL": ["a", "b"], "Accuracy": [0.5, 0.7]}).to_csv(csv, index=False)
    assert read_records_csv(csv).truth("d").to_dict() == {"a": 0.5, "b": 0.7}  # as `evaluate --truth` reads it
    # 0/1 marks with a blank cell are read as floats: "1.0" was no mark, and the best test run was taken
    csv.write_text("dataset,model,accuracy,selected\nd,a,0.5,1\nd,a,0.9,0\nd,b,0.7,1\ne,a,0.6,\ne,a,0.4,1\n")
    assert read_records_csv(csv).truth("d").to_dict() == {"a": 0.5, "b": 0.7}
    # a pair none of whose runs is marked vanished with the unmarked runs of the others
    csv.write_text("dataset,model,accuracy,selected\nd,a,0.5,True\nd,a,0.9,False\nd,b,0.7,True\ne,a,0.6,\n")
    with pytest.raises(InvalidInputError, match="1 \\(dataset, model\\) pair\\(s\\) have no run marked selected.*'e', 'a'"):
        read_records_csv(csv)
    csv.write_text("dataset,model,accuracy\nd,a,0.5\nd,,0.6\n,b,0.7\n")  # were dropped without a word
    with pytest.raises(InvalidInputError, match="2 record\\(s\\) without a dataset or model name"):
        read_records_csv(csv)


def test_record_names_lose_their_surrounding_spaces(tmp_path):
    """ "a " was a model of its own beside "a" (as `evaluate --truth` reads the table, it is "a"), and a name of
    spaces only a task called "  "; the metadata files' names are read the same way."""
    from modelrank.spider import read_records_csv
    from modelrank.spider.loaders import load_records

    csv, meta = tmp_path / "records.csv", tmp_path / "meta.csv"
    csv.write_text("dataset, model, accuracy\nd, a, 0.5\nd,b,0.7\ne,a ,0.6\ne,b,0.4\n")
    records = read_records_csv(csv)
    assert sorted(records.models) == ["a", "b"] and records.truth("e").to_dict() == {"a": 0.6, "b": 0.4}
    meta.write_text("model,size\n a,1\nb ,2\n")
    assert sorted(load_records(str(csv), model_meta=meta).model_meta.index) == ["a", "b"]
    csv.write_text("dataset,model,accuracy\nd,a,0.5\n  ,b,0.7\n")
    with pytest.raises(InvalidInputError, match="1 record\\(s\\) without a dataset or model name"):
        read_records_csv(csv)


@pytest.mark.parametrize("name", ["", "   "])
def test_a_metadata_row_without_a_name_is_an_input_error(tmp_path, name):
    """A blank first cell of --task-meta was a NaN among the task names, and sorting them a traceback (exit 1)."""
    from modelrank.spider.loaders import load_records

    csv, meta = tmp_path / "records.csv", tmp_path / "tasks.csv"
    csv.write_text("dataset,model,accuracy\nd,a,0.5\nd,b,0.7\ne,a,0.6\ne,b,0.4\n")
    meta.write_text(f"task,domain\nd,x\ne,y\n{name},z\n")
    with pytest.raises(InvalidInputError, match="task_meta has 1 row\\(s\\) without a name"):
        load_records(str(csv), task_meta=meta)
    with pytest.raises(InvalidInputError, match="model_meta has 1 row\\(s\\) without a name"):
        load_records(str(csv), model_meta=meta)


def test_cli_train_rank_eval(tmp_path, cache_dir):
    from modelrank.cli import app

    records = tiny_records()
    csv = tmp_path / "records.csv"
    records.table.to_csv(csv, index=False)
    meta = tmp_path / "tasks.csv"
    records.task_meta.to_csv(meta)
    runner = CliRunner()
    out = tmp_path / "learner"
    res = runner.invoke(app, ["spider", "train", str(csv), "--out", str(out), "--learner", "spider",
                              "--task-meta", str(meta), "--set", "episodes=30"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["spider", "rank", str(out), "t3", "--top", "3"])
    assert res.exit_code == 0 and "ranking for t3" in res.output and res.output.count("m") >= 3
    res = runner.invoke(app, ["spider", "eval", str(csv), "--learners", "random,model_prior,task_attention", "--folds",
                              "4", "--set", "inner_draws=2"])  # fmt: skip
    assert res.exit_code == 0 and "cold_start" in res.output and "task_attention" in res.output, res.output
    res = runner.invoke(app, ["spider", "eval", str(csv), "--learners", "random", "--set", "epochs=3"])
    assert res.exit_code != 0 and "no learner among random has option(s) epochs" in str(res.exception)
    res = runner.invoke(app, ["spider", "rank", str(out), "t3", "--observed", "nobody=0.5"])
    assert isinstance(res.exception, InvalidInputError)


def test_spider_eval_keeps_finished_learners_and_folds_and_an_interrupted_run_resumes(tmp_path, cache_dir, cli,
                                                                                       monkeypatch):
    import modelrank.spider.baselines as baselines
    from modelrank.spider.kept import KEPT_FOLDER

    csv = tmp_path / "records.csv"
    tiny_records().table.to_csv(csv, index=False)
    base = ["spider", "eval", str(csv), "--learners", "random,model_prior", "--format", "csv", "--protocol", "both",
            "--k", "2"]  # both: the partial protocol's random draws must go on where they stopped
    command = [*base, "--folds", "4"]
    code, whole, _ = cli(*command, "--cache-dir", str(tmp_path / "other-cache"))  # the evaluation, uninterrupted
    assert code == 0
    fits: list[str] = []
    real_fit = {name: cls._fit for name, cls in (("random", baselines.RandomRanker),
                                                  ("model_prior", baselines.ModelPrior))}

    def counting(name, interrupt_at=None):
        def fit(self, records):
            fits.append(name)
            if fits.count(name) == interrupt_at:
                raise KeyboardInterrupt
            return real_fit[name](self, records)
        return fit

    monkeypatch.setattr(baselines.RandomRanker, "_fit", counting("random"))
    monkeypatch.setattr(baselines.ModelPrior, "_fit", counting("model_prior", interrupt_at=3))
    code, out, err = cli(*command)  # Ctrl-C while the second learner trains its third fold
    assert code == 130 and "learners and folds evaluated before the interruption are kept" in err, err
    assert fits == ["random"] * 4 + ["model_prior"] * 3
    kept = sorted(path.name.partition("-")[2] for path in (cache_dir / KEPT_FOLDER).iterdir())
    assert kept == ["", "fold0.parquet", "fold1.parquet"]  # random whole, model_prior's first two folds
    fits.clear()
    monkeypatch.setattr(baselines.ModelPrior, "_fit", counting("model_prior"))
    code, resumed, err = cli(*command)
    assert code == 0 and fits == ["model_prior"] * 2 and "kept    random: evaluated by an earlier run" in err, err
    untimed = lambda text: pd.read_csv(io.StringIO(text)).drop(columns="fit_s")  # noqa: E731
    pd.testing.assert_frame_equal(untimed(resumed), untimed(whole))  # the same as without the interruption
    assert len(list((cache_dir / KEPT_FOLDER).iterdir())) == 2  # the folds' files are gone with the whole kept
    fits.clear()
    code, again, err = cli(*command)  # everything kept: the same table, nothing fitted
    assert code == 0 and fits == [] and again == resumed
    code, forced, err = cli(*command, "--force")
    assert code == 0 and fits == ["random"] * 4 + ["model_prior"] * 4
    fits.clear()
    for path in (cache_dir / KEPT_FOLDER).iterdir():  # a damaged result is evaluated again, not used
        path.write_bytes(path.read_bytes()[:100])
    assert cli(*command)[0] == 0 and fits == ["random"] * 4 + ["model_prior"] * 4
    fits.clear()
    import pyarrow.parquet as pq

    for path in (cache_dir / KEPT_FOLDER).iterdir():  # readable, but not all that is kept with a result (exit 1)
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata({b"modelrank.spider_eval": b'{"fit_seconds": []}'}), path)
    assert cli(*command)[0] == 0 and fits == ["random"] * 4 + ["model_prior"] * 4
    fits.clear()
    for changed in ([*command, "--seed", "1"], [*base, "--folds", "3"], [*command, "--tau-protocol", "model_spider"]):
        assert cli(*changed)[0] == 0 and len(fits) > 0, changed  # other evaluations: nothing of them is kept
        fits.clear()
    table = tiny_records().table
    table.loc[0, "accuracy"] += 1e-9  # other records content under the same file name
    table.to_csv(csv, index=False)
    assert cli(*command)[0] == 0 and fits == ["random"] * 4 + ["model_prior"] * 4


def test_a_kept_fold_is_read_back_exactly_and_one_with_a_random_state_numpy_refuses_is_not_used(tmp_path):
    from modelrank.spider.kept import KeptFolds, keep
    from modelrank.spider.protocols import EvalResult

    part = EvalResult(pd.DataFrame({"fold": [0, 0], "task": ["t", "u"], "protocol": "cold_start",
                                    "pearson": [0.1 + 1e-17, np.nan]}), [0.25], [0.01, 0.02])
    state = np.random.default_rng(3).bit_generator.state
    keep("k-fold0", part, tmp_path, state)
    kept, kept_state = KeptFolds("k", tmp_path).get(0)
    pd.testing.assert_frame_equal(kept.per_task, part.per_task)
    assert (kept.fit_seconds, kept.rank_seconds, kept_state) == (part.fit_seconds, part.rank_seconds, state)
    assert KeptFolds("k", tmp_path, force=True).get(0) is None
    keep("k-fold1", part, tmp_path, {"bit_generator": "PCG64"})  # a state numpy refuses: a crash (exit 1) otherwise
    assert KeptFolds("k", tmp_path).get(1) is None and KeptFolds("k", tmp_path).get(2) is None


@pytest.mark.anchors
def test_public_records_load_and_logme_matches_transfergraph(anchors):
    from modelrank.spider import load_domainnet, load_transfergraph

    dn = load_domainnet(anchors / "graph")
    assert len(dn.models) == 10 and len(dn.record_tasks) == 270 and dn.task_embed.shape == (270, 533)
    assert [len(f) for f in task_folds(dn, "domain")] == [45] * 6
    image = load_transfergraph(anchors / "transfergraph", "image")
    assert len(image.models) == 180 and image.score_columns == ["log_me", "reg_h_score"]
    # LogME's published TransferGraph weighted tau (0.310, spread-weighted average over 8 targets) from our loader
    targets = image.info["targets"]
    metric = make_learner("metric", column="log_me").fit(image)  # reads scores only, never accuracies
    taus, weights = [], []
    for task in targets:
        truth = image.truth(task)
        logme = image.task_info(task).scores["log_me"].dropna()
        common = truth.index.intersection(logme.index)
        taus.append(stats.weightedtau(metric.predict(task).loc[common], truth.loc[common]).statistic)
        weights.append(truth.max() - truth.mean())
    assert np.average(taus, weights=weights) == pytest.approx(0.3099, abs=2e-3)


def test_spider_measures_treat_predictions_equal_within_precision_as_ties():
    from modelrank.spider.protocols import measure_all

    truth = np.array([0.9, 0.8, 0.7, 0.6])
    noisy = measure_all(truth, np.array([0.5, 0.5 + 1e-14, 0.2, 0.1]))
    tied = measure_all(truth, np.array([0.5, 0.5, 0.2, 0.1]))
    for name in ("weighted_tau", "spearman", "rel@1", "regret@1"):
        assert noisy[name] == pytest.approx(tied[name], nan_ok=True), name
    float32 = measure_all(truth, np.array([0.5, 0.5 + 3e-7, 0.2, 0.1]))  # the rounding of float32 records
    assert float32["weighted_tau"] == pytest.approx(tied["weighted_tau"]) and float32["rel@1"] == tied["rel@1"]
    constant = measure_all(truth, np.full(4, 0.3) + np.array([0, 1e-15, 2e-15, 3e-15]))
    assert np.isnan(constant["weighted_tau"]) and np.isnan(constant["rel@1"])  # no ranking, not a perfect pick
    # truths equal but for rounding (0.7 and 0.1 + 0.2 + 0.4): the order of two such models is no merit
    near = np.array([0.7, 0.1 + 0.2 + 0.4, 0.5])
    one, other = measure_all(near, np.array([2.0, 3.0, 1.0])), measure_all(near, np.array([3.0, 2.0, 1.0]))
    assert one["weighted_tau"] == other["weighted_tau"] and one["spearman"] == other["spearman"]
    flat = measure_all(np.array([0.7, 0.1 + 0.2 + 0.4]), np.array([1.0, 2.0]))
    assert np.isnan(flat["weighted_tau"]) and np.isnan(flat["rel@1"])  # every model is the best: nothing to pick


def test_records_of_datasets_and_models_named_as_missing_values(tmp_path):
    """pandas read a dataset "NA" or a model "None" as missing: "record(s) without a dataset or model name"."""
    from modelrank.spider import read_records_csv
    from modelrank.spider.loaders import load_model_spider

    csv = tmp_path / "records.csv"
    csv.write_text("dataset,model,accuracy\nNA,None,0.5\nNA,null,0.7\n")
    assert read_records_csv(csv).truth("NA").to_dict() == {"None": 0.5, "null": 0.7}
    csv.write_text("dataset,model,accuracy\nNA,None,0.5\nnan,None,NA\n")  # "NA" is still no accuracy
    with pytest.raises(InvalidInputError, match="1 record\\(s\\) have a missing .* \\[\\['nan', 'None'\\]\\]"):
        read_records_csv(csv, aggregate=None)
    (tmp_path / "finetune_accuracy.csv").write_text("dataset,model,accuracy\nNA,None,0.5\nNA,null,0.7\n")
    (tmp_path / "baseline_results.csv").write_text("Dataset,Model,LogME\nNA,None,1.0\nNA,null,2.0\n")
    assert load_model_spider(tmp_path).truth("NA").to_dict() == {"None": 0.5, "null": 0.7}


def _published_folder(folder: Path) -> Path:
    """Small stand-ins of Model Spider's and the graph seed's published files (the real ones: tests marked anchors)."""
    folder.mkdir()
    rows = [(t, m, 0.5 + 0.1 * i + 0.01 * j) for j, t in enumerate(["Pets", "DTD"]) for i, m in enumerate(["a1", "b2"])]
    pd.DataFrame(rows, columns=["dataset", "model", "accuracy"]).to_csv(folder / "finetune_accuracy.csv", index=False)
    pd.DataFrame([(t, m, acc) for t, m, acc in rows], columns=["Dataset", "Model", "LogME"]).to_csv(
        folder / "baseline_results.csv", index=False)
    pd.DataFrame([(*row, "resnet", "src") for row in rows], columns=["dataset", "model", "accuracy", "architecture",
                                                                     "source_dataset"]).to_csv(
        folder / "finetune_accuracy_multisource.csv", index=False)
    tasks = ["task0_real_5", "task1_sketch_5"]
    pd.DataFrame([[0.5, 0.6], [0.7, 0.4]], index=pd.Index(["m1", "m2"], name=""), columns=tasks).to_csv(
        folder / "record_domainnet_10_270.csv")
    pd.DataFrame({"model name": ["m1", "m2"], "params": [1, 2]}).to_csv(folder / "source_model_meta_data.csv",
                                                                        index=False)
    pd.DataFrame({"domain": ["real", "sketch"], "Labels": ["a_b", "c"]}).to_csv(
        folder / "target_dataset_meta_data.csv", index=False)
    np.save(folder / "DomainNet_target_embedding.npy", np.zeros((2, 852)))
    return folder


@pytest.mark.parametrize("kind, file, edit, message", [
    ("model-spider", "finetune_accuracy.csv", lambda d: d.drop(columns=["dataset"]), "lacks column(s) ['dataset']"),
    ("model-spider", "baseline_results.csv", lambda d: d.drop(columns=["Model"]), "lacks column(s) ['Model']"),
    ("model-spider-multi", "finetune_accuracy_multisource.csv", lambda d: d.drop(columns=["architecture"]),
     "lacks column(s) ['architecture']"),
    ("domainnet", "source_model_meta_data.csv", lambda d: d.drop(columns=["model name"]),
     "lacks column(s) ['model name']"),
    ("domainnet", "target_dataset_meta_data.csv", lambda d: d.drop(columns=["domain"]), "lacks column(s) ['domain']"),
    ("domainnet", "DomainNet_target_embedding.npy", lambda a: a[:1], "holds an array of shape (1, 852)"),
    ("domainnet", "DomainNet_target_embedding.npy", lambda a: a[:, :10], "holds an array of shape (2, 10)"),  # none
    ("domainnet", "record_domainnet_10_270.csv", lambda d: d.rename(columns={"task0_real_5": "t0"}),
     "record columns must be named task<k>_<domain>_<samples per class>, not ['t0']"),  # an IndexError
])
def test_edited_published_records_are_one_line_errors(tmp_path, cli, kind, file, edit, message):
    """A published records file edited, or another file under its name, was a KeyError, IndexError or pandas
    ValueError traceback (exit 1) where the loader first used what was missing."""
    from modelrank.spider import load_records

    folder = _published_folder(tmp_path / "published")
    load_records(f"{kind}:{folder}")  # as written, the folder loads
    path = folder / file
    if file.endswith(".npy"):
        np.save(path, edit(np.load(path)))
    else:
        index = 0 if file.startswith("record_") else None
        edit(pd.read_csv(path, index_col=index)).to_csv(path, index=index is not None)
    code, out, err = cli("spider", "train", f"{kind}:{folder}", "--out", str(tmp_path / "learner"))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
