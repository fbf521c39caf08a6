"""The learned rankers never fall below their base without evidence: validation of the learned correction on few tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelrank.spider import Records, TaskInfo, make_learner
from modelrank.spider.base import validation_folds

QUICK = {"graph": {"epochs": 60, "eval_every": 5, "patience": 3}, "spider": {"episodes": 60, "eval_every": 5, "patience": 3}}


def noise_records(n_tasks: int, n_models: int = 8, seed: int = 0) -> Records:
    """A shared model quality plus independent per-task noise, task metadata and scores that are pure noise: no
    correction to the base can generalise from one task to another."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    tasks = [f"t{j}" for j in range(n_tasks)]
    acc = 0.7 + 0.03 * np.linspace(-1, 1, n_models)[None] + rng.normal(0, 0.04, (n_tasks, n_models))
    table = pd.DataFrame([(t, m, acc[j, i]) for j, t in enumerate(tasks) for i, m in enumerate(models)],
                         columns=["dataset", "model", "accuracy"])
    task_meta = pd.DataFrame({"f": rng.normal(size=n_tasks), "g": rng.normal(size=n_tasks)}, index=tasks)
    scores = table.rename(columns={"accuracy": "s"}).assign(s=rng.normal(size=len(table)))
    return Records(table, task_meta=task_meta, scores=scores)


def same_order(a: pd.Series, b: pd.Series) -> bool:
    return bool(stats.spearmanr(a, b.loc[a.index]).statistic > 1 - 1e-9)


@pytest.mark.parametrize("name", ["graph", "spider"])
@pytest.mark.parametrize("prior, base", [("attention", "task_attention"), ("model", "model_prior")])
def test_learner_returns_its_base_where_the_correction_cannot_help(name, prior, base):
    """7 training tasks: before, too few to hold any back, so the trained correction was kept unvalidated and
    ranked below the prior on Model Spider's 8-task records; now every task is validated once across folds."""
    records = noise_records(7)
    learner = make_learner(name, prior=prior, **QUICK[name]).fit(records)
    reference = make_learner(base).fit(records)
    new = TaskInfo("new", meta={"f": 0.3, "g": -1.0},
                   scores=pd.DataFrame({"s": np.linspace(1, 0, 8)}, index=[f"m{i}" for i in range(8)]))
    assert same_order(learner.predict(new), reference.predict(new))
    for task in records.record_tasks:  # a known task's base never reads its own records
        own = reference if base == "task_attention" else make_learner(base).fit(records.without_tasks([task]))
        assert same_order(learner.predict(task), own.predict(task))
    observed = records.truth("t3").iloc[:3]
    assert same_order(learner.predict("t3", observed=observed), reference.predict("t3", observed=observed))


def test_a_correction_that_cannot_be_validated_is_not_used():
    records = noise_records(2)  # 2 training tasks: no fold can hold one back and still learn
    for name in ("graph", "spider"):
        learner = make_learner(name, prior="model", **QUICK[name]).fit(records)
        assert same_order(learner.predict("t0"), make_learner("model_prior").fit(records.without_tasks(["t0"])).predict("t0"))


def test_validation_folds_hold_every_rankable_task_out_once():
    rng = np.random.default_rng(0)
    accuracy = rng.random((12, 5))
    accuracy[3, 1:] = np.nan  # one record: never validated
    folds = validation_folds(accuracy, 0.2, seed=0)
    assert len(folds) == 5
    counts = np.sum(folds, axis=0)
    assert counts[3] == 0 and np.all(np.delete(counts, 3) == 1)
    groups = np.repeat(np.array(["a", "b", "c"]), 4)
    grouped = validation_folds(accuracy, 0.2, seed=0, groups=groups)
    assert len(grouped) == 3 and all(len(set(groups[f])) == 1 for f in grouped)
    assert validation_folds(accuracy[:2], 0.2, seed=0) == []
    big = rng.random((60, 5))
    (single,) = validation_folds(big, 0.2, seed=0)
    assert single.sum() == 12


@pytest.mark.parametrize("n_tasks", [12, 60])  # several folds, and one validation split (>= 40 tasks)
def test_training_reports_progress_within_each_run(n_tasks):
    """Progress moves as validation checks pass inside a fold, not only when a whole fold ends."""
    calls = []
    make_learner("spider", **QUICK["spider"]).fit(noise_records(n_tasks), progress=lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    total = calls[-1][1]
    assert done == sorted(done) and done[-1] == total and all(t == total for _, t in calls)
    assert any(d % QUICK["spider"]["episodes"] for d in done)  # a value between two run boundaries


def test_one_standard_error_rule_counts_held_out_groups_not_their_tasks():
    """A gain on the tasks of one held-out group only is one piece of evidence, not 25: by groups it is noise."""
    from modelrank.spider.base import one_standard_error_choice

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(4), 25)
    simple = rng.normal(0.5, 0.01, 100)
    complex_ = simple + np.array([0.2, 0.0, 0.0, -0.02])[groups] + rng.normal(0, 0.005, 100)
    values = {"simple": simple, "complex": complex_}
    assert one_standard_error_choice(["simple", "complex"], values.get) == "complex"
    assert one_standard_error_choice(["simple", "complex"], values.get, groups) == "simple"
    assert one_standard_error_choice(["simple", "complex"], values.get, np.zeros(100)) == "complex"  # one group: by task
