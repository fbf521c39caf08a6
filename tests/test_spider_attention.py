"""Task attention (modelrank.spider.task_attention) and the residual base of the graph learner and Model Spider."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelrank.errors import InvalidInputError
from modelrank.spider import Records, load_learner, make_learner
from modelrank.spider.protocols import evaluate, task_folds
from modelrank.spider.base import one_standard_error_choice
from modelrank.spider.task_attention import TaskAttentionCore, observed_correlation

FAST = {"graph": {"epochs": 150, "val_fraction": 0.0, "weight_decay": 1e-4, "dropout": 0.1},
        "spider": {"episodes": 150, "val_fraction": 0.0}}


def clustered_records(n_models: int = 12, n_tasks: int = 24, seed: int = 0, informative_features: bool = True,
                      score_noise: float | None = None, flip: bool = True) -> Records:
    """Two task clusters. A shared quality makes the model prior useful; with ``flip`` the clusters disagree on
    half the models, so the best ranking depends on the cluster. The task metadata names the cluster when
    ``informative_features``, else it is noise. ``score_noise``: add a score column = truth + that noise."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    tasks = [f"t{j}" for j in range(n_tasks)]
    cluster = np.arange(n_tasks) % 2
    quality = np.linspace(-1, 1, n_models)
    twist = rng.normal(0, 1.5, n_models) if flip else np.zeros(n_models)
    z = quality[None] + np.where(cluster[:, None] == 1, twist[None], -twist[None]) + rng.normal(0, 0.3, (n_tasks, n_models))
    acc = 0.7 + 0.05 * z + rng.normal(0, 0.05, n_tasks)[:, None]  # tasks differ in level too
    table = pd.DataFrame([(t, m, acc[j, i]) for j, t in enumerate(tasks) for i, m in enumerate(models)],
                         columns=["dataset", "model", "accuracy"])
    feature = cluster + rng.normal(0, 0.1, n_tasks) if informative_features else rng.normal(0, 1, n_tasks)
    task_meta = pd.DataFrame({"f": feature, "g": rng.normal(0, 1, n_tasks)}, index=tasks)
    side = {}
    if score_noise is not None:
        side["scores"] = table.rename(columns={"accuracy": "s"}).assign(s=lambda f: f["s"] + rng.normal(0, score_noise, len(f)))
    return Records(table, task_meta=task_meta, **side)


def mean_spearman(result, protocol: str = "cold_start") -> float:
    return float(result.per_task.query("protocol == @protocol")["spearman"].mean())


def test_one_standard_error_rule_prefers_the_simpler_candidate():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 40)
    noisy = {0: base, 1: base + 0.002 + 0.05 * (-1.0) ** np.arange(40)}  # better by far less than the noise
    assert one_standard_error_choice([0, 1], lambda c: noisy[c]) == 0
    clear = {0: base, 1: base + 0.1 + rng.normal(0, 0.01, 40)}
    assert one_standard_error_choice([0, 1], lambda c: clear[c]) == 1


def test_observed_correlation_matches_pearson_and_skips_undefined_rows():
    z = np.array([[1.0, 2.0, 3.0, np.nan], [3.0, 1.0, 2.0, 0.0], [np.nan, np.nan, 1.0, 2.0]])
    observed = np.array([0.1, 0.3, 0.2, np.nan])
    corr = observed_correlation(z, observed)
    assert corr[0] == pytest.approx(stats.pearsonr([1, 2, 3], [0.1, 0.3, 0.2]).statistic)
    assert corr[1] == pytest.approx(stats.pearsonr([3, 1, 2], [0.1, 0.3, 0.2]).statistic)
    assert corr[2] == 0.0  # only one model both observed and recorded


def test_no_signal_stays_at_the_model_prior():
    """Uninformative features and one shared ranking: the selection keeps β = γ = 0, i.e. the model prior."""
    records = clustered_records(informative_features=False, flip=False, score_noise=5.0)
    ta = make_learner("task_attention").fit(records.without_tasks(["t0"]))
    assert ta.core.beta_f == 0.0 and ta.core.gamma == 0.0
    prior = make_learner("model_prior").fit(records.without_tasks(["t0"]))
    np.testing.assert_allclose(ta.predict("t0"), prior.predict("t0"), atol=1e-9)
    # the residual learners on top of it stay close to it (early stopping keeps the base when nothing helps)
    for name in ("graph", "spider"):
        learner = make_learner(name).fit(records.without_tasks(["t0"]))
        assert stats.spearmanr(learner.predict("t0"), prior.predict("t0")).statistic > 0.9


@pytest.mark.parametrize("criterion", ["pearson", "weighted_tau"])
def test_task_features_are_learned_when_they_carry_signal(criterion):
    records = clustered_records()
    folds = task_folds(records, "task", n_folds=4, seed=0)
    ours = evaluate(lambda: make_learner("task_attention", criterion=criterion), records, "cold_start", folds)
    prior = evaluate(lambda: make_learner("model_prior"), records, "cold_start", folds)
    assert mean_spearman(ours) > 0.8
    assert mean_spearman(ours) > mean_spearman(prior) + 0.2


def test_observed_accuracies_pick_the_right_task_neighbours():
    """Features say nothing; k observed models reveal the cluster, and only unobserved models are measured."""
    records = clustered_records(informative_features=False)
    folds = task_folds(records, "task", n_folds=4, seed=0)
    ours = evaluate(lambda: make_learner("task_attention"), records, "partial", folds, k_observed=4)
    prior = evaluate(lambda: make_learner("model_prior"), records, "partial", folds, k_observed=4)
    assert mean_spearman(ours, "partial") > mean_spearman(prior, "partial") + 0.2
    fitted = make_learner("task_attention").fit(records.without_tasks(folds[0]))
    assert fitted.core.beta_observed(4) > 0


def test_scores_are_trusted_only_when_they_carry_signal():
    good = make_learner("task_attention").fit(clustered_records(informative_features=False, score_noise=0.005))
    assert good.core.gamma > 0
    useless = make_learner("task_attention").fit(clustered_records(informative_features=False, score_noise=5.0))
    assert useless.core.gamma == 0.0


def test_leave_one_task_out_base_never_reads_its_own_row():
    records = clustered_records()
    learner = make_learner("task_attention").fit(records)
    core = learner.core
    before = core.loo_cold()
    shuffled = learner.accuracy.copy()
    shuffled[3] = shuffled[3][::-1]  # another label for task 3 only
    other = TaskAttentionCore(shuffled, learner.task_features, core.scores_z)
    other.restore(core.state())
    after = other.loo_cold()
    np.testing.assert_allclose(after[3], before[3])
    assert not np.allclose(after[2], before[2])  # the other tasks do read it


@pytest.mark.parametrize("name", ["graph", "spider"])
@pytest.mark.parametrize("base", ["attention", "model", "none"])
def test_residual_learners_save_and_reload_on_every_base(name, base, tmp_path):
    records = clustered_records(n_models=8, n_tasks=12)
    learner = make_learner(name, **FAST[name], prior=base).fit(records.without_tasks(["t1"]))
    restored = load_learner(learner.save(tmp_path / f"{name}-{base}"))
    for observed in (None, {"m0": 0.7, "m3": 0.6, "m5": 0.65}):
        pd.testing.assert_series_equal(learner.predict("t1", observed=observed), restored.predict("t1", observed=observed))


def test_spider_reads_observed_accuracies_through_its_base():
    records = clustered_records(informative_features=False)
    spider = make_learner("spider", **FAST["spider"]).fit(records.without_tasks(["t0"]))
    truth = records.truth("t0")
    observed = truth.iloc[:4]
    assert not np.allclose(spider.predict("t0"), spider.predict("t0", observed=observed))


def test_bad_base_is_rejected():
    with pytest.raises(InvalidInputError, match="prior must be one of"):
        make_learner("graph", prior="mean", epochs=2).fit(clustered_records(n_models=4, n_tasks=6))
    with pytest.raises(InvalidInputError, match="criterion"):
        make_learner("task_attention", criterion="kendall").fit(clustered_records(n_models=4, n_tasks=6))


def test_grouped_inner_cross_validation_never_attends_to_the_query_group():
    records = clustered_records()
    groups = np.asarray(["a", "b"] * 12)
    learner = make_learner("task_attention").fit(records)
    core = learner.core
    sims = core._row_similarity()[core.rows]
    shuffled = core.z.copy()
    grouped = core.batch(core.rows, sims, core.scores_z[core.rows], None, 1.0, 0.0, 0.0, groups)
    core.z[0::2] = shuffled[0::2][:, ::-1]  # new labels for group "a" only
    again = core.batch(core.rows, sims, core.scores_z[core.rows], None, 1.0, 0.0, 0.0, groups)
    np.testing.assert_allclose(again[0::2], grouped[0::2])  # group "a" queries only read group "b"
    assert not np.allclose(again[1::2], grouped[1::2])
    with pytest.raises(InvalidInputError, match="cv_group"):
        make_learner("task_attention", cv_group="nope").fit(records)



def test_grouped_validation_and_training_base_leave_whole_groups_out():
    """cv_group: validation tasks are whole groups (never all of them), and the base a network trains on is
    computed without the task's group, so a task's base ignores every record of its group."""
    from modelrank.spider.base import model_prior, split_validation_tasks, task_zscores

    rng = np.random.default_rng(3)
    accuracy = rng.random((30, 6))
    accuracy[4, 1:] = np.nan  # one record: not rankable, never a validation task
    groups = np.repeat(np.array(["a", "b", "c", "d", "e"]), 6)
    rankable = np.arange(30) != 4
    for seed in range(5):
        val = split_validation_tasks(accuracy, 0.2, seed, groups=groups)
        held = np.isin(groups, groups[val])
        assert np.array_equal(val, held & rankable) and 1 <= len(set(groups[val])) < 5 and val.sum() >= 6
    assert not split_validation_tasks(accuracy, 0.2, 0, groups=np.zeros(30)).any()  # one group: nothing to hold

    z = task_zscores(accuracy)
    _, loo = model_prior(accuracy, groups)
    for t in (0, 13, 29):
        np.testing.assert_allclose(loo[t], np.nanmean(z[groups != groups[t]], axis=0))
    _, task_loo = model_prior(accuracy)
    np.testing.assert_allclose(task_loo[13], np.nanmean(np.delete(z, 13, axis=0), axis=0))

    features = rng.normal(size=(30, 2))
    scrambled = accuracy.copy()
    scrambled[1:6] = np.where(np.isfinite(accuracy[1:6]), rng.random((5, 6)), np.nan)  # the rest of task 0's group
    bases = []
    for acc in (accuracy, scrambled):
        core = TaskAttentionCore(acc, features, np.zeros_like(acc))
        core.beta_f = 1.0
        bases.append(core.loo_cold(groups)[0])
    np.testing.assert_allclose(bases[0], bases[1])
    core.beta_f = 1.0
    assert not np.allclose(core.loo_cold()[0], bases[0])  # leave-one-task-out does see the group


def test_early_stopping_keeps_the_untrained_base_unless_training_beats_it_beyond_noise():
    import torch

    from modelrank.spider.base import EarlyStopping

    rng = np.random.default_rng(5)
    reference = rng.normal(0.5, 0.2, 40)
    for gain, expect_trained in ((0.002 + 0.05 * (-1.0) ** np.arange(40), False), (0.1 + rng.normal(0, 0.01, 40), True)):
        module = torch.nn.Linear(1, 1)
        stopper = EarlyStopping(module, patience=3)
        untrained = module.weight.detach().clone()
        stopper.update(reference)
        with torch.no_grad():
            module.weight.add_(1.0)
        stopper.update(reference + gain)  # the best mean so far, by a margin within or beyond the noise
        with torch.no_grad():
            module.weight.add_(1.0)
        stopper.update(reference - 1.0)  # worse: never kept
        stopper.restore()
        assert torch.equal(module.weight, untrained + 1.0 if expect_trained else untrained)
