"""The sampled task pool (modelrank.zoo.pool): many tasks from cached features, linear-probe truth, resumable,
held-out tasks from other sources, and the learners' paired comparison on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelrank.errors import InvalidInputError
from modelrank.features import FeatureSet
from modelrank.spider import make_learner
from modelrank.spider.protocols import evaluate, paired_difference
from modelrank.zoo.pool import (
    build_pool,
    evaluate_pool,
    overlap_groups,
    pool_records,
    read_pool,
    sample_pool_tasks,
    split_sources,
    task_split,
    unfinished_tasks,
)


def zoo_features(n_models: int = 4, n_sources: int = 4, n_classes: int = 6, per_class: int = 30, seed: int = 0):
    """Model m separates the classes with strength that depends on the source's kind (even / odd): the best model
    depends on the task, and which kind a task is shows in its class prototypes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(size=(n_sources, n_classes, 8))
    features = {}
    for s in range(n_sources):
        for m in range(n_models):
            strength = 0.3 + 0.4 * (m if s % 2 else n_models - 1 - m) / n_models
            x = strength * centres[s][labels] * 3 + rng.normal(size=(labels.size, 8))
            x[:, 0] += 5.0 * (s % 2)  # the kind of source, visible in any model's features
            features[f"m{m}", f"task/s{s}"] = FeatureSet(x, labels, model=f"m{m}", dataset=f"task/s{s}")
    return features


def test_a_pool_larger_than_the_distinct_draws_is_refused_at_once():
    """Two 3-class sources with 30 images per class: C(3, 2) + C(3, 3) class subsets x 2 shots x 3 draws = 24
    distinct tasks each. Asking for more used to redraw 50 times per task before giving up (forever for 10**9)."""
    counts = {"a": {0: 30, 1: 30, 2: 30}, "b": {0: 30, 1: 30, 2: 30}}
    tasks = sample_pool_tasks(counts, ["a"], ["b"], n_train=24, n_held=24, seed=0, ways=(2, 3), shots=(5, 10),
                              test_per_class=10)
    assert len({t.name for t in tasks}) == 48
    for n_train, n_held, which in ((25, 1, "training"), (1, 10**9, "held-out")):
        with pytest.raises(InvalidInputError, match=f"cannot sample {n_train if which == 'training' else n_held} "
                                                    f"distinct {which} pool tasks .*at most 24 exist"):
            sample_pool_tasks(counts, ["a"], ["b"], n_train=n_train, n_held=n_held, seed=0, ways=(2, 3),
                              shots=(5, 10), test_per_class=10)


def test_pool_is_sampled_probed_resumable_and_held_out_by_source(tmp_path):
    features = zoo_features()
    sources = sorted({s for _, s in features})
    training, held = split_sources(sources, 0.5, seed=0)
    assert len(held) == 2 and not set(training) & set(held)
    counts = {s: dict(zip(*np.unique(features["m0", s].labels, return_counts=True))) for s in sources}
    tasks = sample_pool_tasks(counts, training, held, n_train=12, n_held=4, seed=0, ways=(2, 3), shots=(5, 10))
    assert len({t.name for t in tasks}) == 16 and all((t.source in held) == t.held_out for t in tasks)
    labels = np.asarray(features["m0", tasks[0].source].labels)
    train, test, relabel = task_split(labels, tasks[0], None)  # None: every other image of the classes is a test image
    assert len(train) == tasks[0].shots * len(tasks[0].classes) and not set(train) & set(test)
    assert len(test) == np.isin(labels, tasks[0].classes).sum() - len(train)
    assert sorted(set(relabel[labels[test]])) == list(range(len(tasks[0].classes)))
    calls = []

    def interrupt_after_ten(i: int, n: int) -> None:
        calls.append((i, n))
        if i == 10:
            raise KeyboardInterrupt  # Ctrl-C: the tasks finished so far are kept

    with pytest.raises(KeyboardInterrupt):
        build_pool(features, tasks, tmp_path, progress=interrupt_after_ten)
    assert len(pd.read_csv(tmp_path / "pool_records.csv")) == 10 * 4
    records, scores = build_pool(features, tasks[:10], tmp_path, progress=lambda i, n: calls.append((i, n)))
    assert len(records) == 10 * 4 and calls[-1] == (10, 10) and records["accuracy"].between(0, 1).all()
    before = (tmp_path / "pool_records.csv").read_text()
    records, scores = build_pool(features, tasks, tmp_path)  # resumes: the first 10 are not computed again
    assert (tmp_path / "pool_records.csv").read_text().startswith(before) and len(records) == 16 * 4
    assert set(scores.columns) == {"dataset", "model", "logme"} and len(scores) == 16 * 4
    models = ["m0", "m1", "m2", "m3"]
    assert unfinished_tasks(tasks, tmp_path, models) == [] and len(unfinished_tasks(tasks, tmp_path, models[:3])) == 16
    whole = (tmp_path / "pool_records.csv").read_bytes()
    (tmp_path / "pool_records.csv").write_bytes(whole[:-3])  # killed while writing the last task's last row
    assert unfinished_tasks(tasks, tmp_path, models) == [tasks[-1]]
    assert len(read_pool(tmp_path)[0]) == 16 * 4 - 1  # the torn line is gone, not read as a row
    pool = pool_records(features, tasks, records, scores, encoder="m0")
    held_tasks = pool.info["held_out"]
    assert len(held_tasks) == 4 and pool.task_prototypes[held_tasks[0]].shape[1] == 8

    per_task = []
    for name, cfg in (("model_prior", {}), ("task_attention", {"inner_draws": 2})):
        result = evaluate(lambda: make_learner(name, **cfg), pool, "cold_start", [held_tasks])
        per_task.append(result.per_task.assign(learner=name))
    paired = paired_difference(pd.concat(per_task), "task_attention", "model_prior", "weighted_tau")
    assert paired["tasks"] == 4 and np.isfinite(paired["diff"])


def test_paired_difference_counts_rounding_as_a_tie():
    """A learner 5.6e-17 above the prior on every task (one tau computed in another order) "beat" it: 3 wins,
    beyond 2 SE of 0."""
    per_task = pd.DataFrame({"learner": ["a"] * 3 + ["prior"] * 3, "task": ["t1", "t2", "t3"] * 2,
                             "weighted_tau": [0.31972789115646266] * 3 + [0.3197278911564626] * 3})
    paired = paired_difference(per_task, "a", "prior", "weighted_tau")
    assert (paired["wins"], paired["losses"], paired["diff"], paired["verdict"]) == (0, 0, 0.0, "ties")


def test_held_out_sources_share_no_classes_in_one_domain_with_training_sources():
    from modelrank.zoo.presets import get_preset
    from modelrank.zoo.tasks import DERIVED

    targets = get_preset("demo").tasks
    groups = overlap_groups({t: DERIVED[t] for t in targets})
    # bear appears in both blurred animal tasks: one group; the same animal images inverted are another domain
    blurred = [t for t in targets if DERIVED[t].base == "animal-mnist" and DERIVED[t].shift == "blur"]
    assert len(blurred) == 2 and groups[blurred[0]] == groups[blurred[1]]
    assert groups["task/animals-mix5"] != groups["task/animals-invert4"]
    assert len(set(groups.values())) == len(targets) - 1
    for seed in range(20):
        training, held = split_sources(list(targets), 0.3, seed, groups)
        assert held and training and sorted(training + held) == sorted(targets)
        for a in held:
            for b in training:
                x, y = DERIVED[a], DERIVED[b]
                assert x.base != y.base or x.shift != y.shift or not set(x.classes or ()) & set(y.classes or ())
    with pytest.raises(InvalidInputError, match="at least 2 groups"):  # one group: nothing can be held out
        split_sources(list(targets), 0.3, 0, {t: "all" for t in targets})


def test_pool_evaluation_pairs_each_learner_with_the_prior_the_best_metric_and_its_base(tmp_path):
    """On a pool whose best model does not depend on the task, no task feature can help: every learner is its
    base within noise (item 3: never worse than the base), and the table says so."""
    features = zoo_features(seed=1)
    noise = np.random.default_rng(1)
    for (model, source), fs in features.items():  # every source ranks the models alike
        strength = 0.3 + 0.2 * int(model[1:])
        x = strength * 3 * np.eye(8)[np.asarray(fs.labels)] + noise.normal(size=fs.features.shape)
        features[model, source] = FeatureSet(x, fs.labels, model=model, dataset=source)
    sources = sorted({s for _, s in features})
    training, held = split_sources(sources, 0.5, seed=0)
    counts = {s: dict(zip(*np.unique(features["m0", s].labels, return_counts=True))) for s in sources}
    tasks = sample_pool_tasks(counts, training, held, n_train=12, n_held=6, seed=0, ways=(2, 3), shots=(5, 10))
    records, scores = build_pool(features, tasks, tmp_path, metrics=("logme", "hscore_reg"))
    pool = pool_records(features, tasks, records, scores, encoder="m0")
    learners = {"model_prior": ("model_prior", {}), "metric:logme": ("metric", {"column": "logme"}),
                "metric:hscore_reg": ("metric", {"column": "hscore_reg"}),
                "task_attention": ("task_attention", {"inner_draws": 2}), "graph": ("graph", {"epochs": 10, "prior": "model"}),
                "random": ("random", {})}
    seen = []
    per_task, table = evaluate_pool(pool, learners, k_observed=2, progress=lambda row, i, n: seen.append(row))
    assert seen == [*learners, "done"]
    assert set(per_task["task"]) == set(pool.info["held_out"]) and set(per_task["protocol"]) == {"cold_start", "partial"}
    cold = table[table["protocol"] == "cold_start"].set_index(["learner", "versus"])
    means = per_task[per_task["protocol"] == "cold_start"].groupby("learner")["weighted_tau"].mean()
    best = means[["metric:logme", "metric:hscore_reg"]].idxmax()
    assert cold.loc[("model_prior", best), "role"] == "best metric"
    assert cold.loc[("task_attention", "model_prior"), "role"] == "model prior, base"
    assert cold.loc[("graph", "model_prior"), "role"] == "model prior, base"
    assert set(cold.loc["random", "role"]) == {"model prior", "best metric"}  # no base
    assert not any(learner == versus for learner, versus in cold.index)
    bases = table[table["role"].str.contains("base")]
    assert len(bases) == 2 * 2 and (bases["verdict"] != "loses").all()
    assert (table["tasks"] <= len(pool.info["held_out"])).all() and (table["se"] >= 0).all()
