"""Task attention: a task-specific model prior learned from the training tasks (a small learner and the base
that the graph learner and Model Spider correct).

The model prior ranks every task the same way: each model's mean within-task z-score over ALL training
tasks. Task attention averages the z-scores over the training tasks with attention weights instead, so tasks
that resemble the new one count more, and adds the task's own transferability scores with a learned trust:

    score(m | T) = Σ_j α_j(T) z_jm / Σ_j α_j(T)  +  γ · s_m(T)
    log α_j(T)   = β_f · sim_features(T, j)  +  β_o · corr_observed(T, j)

* ``sim_features``: minus the RMS distance of the standardised task features (metadata, embedding), divided
  by the median distance between training tasks.
* ``corr_observed`` (partially observed tasks only): the Pearson correlation, over the k models already
  fine-tuned on T, between their accuracies on T and their z-scores on training task j: the observed
  models tell which training tasks rank the zoo like T does (collaborative filtering by task neighbours).
* ``s_m(T)``: the mean of T's transferability score columns (LogME, ...), z-scored across models (0 where
  a model has none).

β_f, γ and β_o (one β_o per number k of observed models) are chosen by inner leave-one-task-out
cross-validation over the training tasks only (``select``): each training task in turn is ranked from the
others (with k of its models revealed for β_o, ``inner_draws`` random draws per task, fewer when there
are more than ``INNER_CASES`` / ``inner_draws`` training tasks) and scored by the within-task Pearson
correlation with the truth (``criterion="weighted_tau"``: scipy's weighted tau, slower); the simplest grid
value within one standard error of the best wins (``one_standard_error_choice``: a larger β or γ must beat a smaller one by
more than the case-to-case noise). Every grid starts at 0, and β_f = β_o = γ = 0 is exactly the model
prior, so when neither the features, the observed accuracies nor the scores carry signal that generalises
across training tasks, the learner stays at the prior.

The graph learner and Model Spider use this prediction (leave-one-task-out for their training pairs) as the
base they add a learned correction to (``prior="attention"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from ..errors import InvalidInputError
from .base import LEARNERS, Learner, TaskView, model_prior, one_standard_error_choice, task_zscores
from .records import Records

# with many training tasks, fewer random observed sets per task suffice: about this many cases per k
INNER_CASES = 1000
CRITERIA = ("pearson", "weighted_tau")


def standardized_scores(scores: np.ndarray) -> np.ndarray:
    """(T, M, S) transferability scores -> (T, M): per task and column z-scored across models, averaged over the
    columns a pair has; 0 where a pair has no score (raw LogME values are not comparable across tasks)."""
    if scores.shape[-1] == 0:
        return np.zeros(scores.shape[:-1], np.float64)
    present = np.isfinite(scores)
    n = np.maximum(present.sum(-2, keepdims=True), 1)
    values = np.where(present, scores, 0.0).astype(np.float64)
    mean = values.sum(-2, keepdims=True) / n
    std = np.sqrt(np.where(present, (values - mean) ** 2, 0.0).sum(-2, keepdims=True) / n)
    z = np.where(present & (std > 0), (values - mean) / np.where(std > 0, std, 1.0), 0.0)
    return z.sum(-1) / np.maximum(present.sum(-1), 1)


def observed_correlation(z: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(T,) Pearson correlation between ``observed`` (M,) accuracies and each row of ``z`` (T, M), over the models
    observed and recorded on that row; 0 where fewer than 2 such models or a constant side."""
    obs = np.isfinite(observed)
    zo, o = z[:, obs], observed[obs].astype(np.float64)
    both = np.isfinite(zo)
    n = both.sum(1)
    zc = np.where(both, zo, 0.0)
    oc = np.where(both, o[None], 0.0)
    mz = zc.sum(1, keepdims=True) / np.maximum(n, 1)[:, None]
    mo = oc.sum(1, keepdims=True) / np.maximum(n, 1)[:, None]
    dz, do = np.where(both, zc - mz, 0.0), np.where(both, oc - mo, 0.0)
    denom = np.sqrt((dz**2).sum(1) * (do**2).sum(1))
    ok = (n >= 2) & (denom > 1e-12)
    return np.where(ok, (dz * do).sum(1) / np.where(ok, denom, 1.0), 0.0)


def masked_pearson(truth: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(Q,) Pearson correlation of each row of ``truth`` and ``pred`` over ``mask``; NaN where undefined."""
    m = mask.astype(np.float64)
    n = m.sum(1, keepdims=True)
    t, p = np.where(mask, truth, 0.0), np.where(mask, pred, 0.0)
    dt = (t - (t * m).sum(1, keepdims=True) / np.maximum(n, 1)) * m
    dp = (p - (p * m).sum(1, keepdims=True) / np.maximum(n, 1)) * m
    denom = np.sqrt((dt**2).sum(1) * (dp**2).sum(1))
    ok = (n[:, 0] >= 2) & (denom > 1e-12)
    return np.where(ok, (dt * dp).sum(1) / np.where(ok, denom, 1.0), np.nan)


class TaskAttentionCore:
    """The attention-weighted prior (module docstring) over one training matrix; plain numpy, no training loop.

    ``accuracy`` (T, M) with NaN where no record, ``task_features`` (T, D), ``scores_z`` (T, M) from
    ``standardized_scores``. Parameters ``beta_f``, ``gamma`` and ``beta_o`` ({k: β_o}) are set by ``select``
    or restored from a saved learner.
    """

    def __init__(self, accuracy: np.ndarray, task_features: np.ndarray, scores_z: np.ndarray):
        self.z = task_zscores(accuracy)
        self.rows = np.flatnonzero(np.isfinite(self.z).sum(1) >= 2)  # training tasks that rank something
        self.scores_z = scores_z
        x = task_features.astype(np.float64)
        ref = x[self.rows] if self.rows.size else x
        mu, sd = ref.mean(0), ref.std(0)
        self.x = (x - mu) / np.where(sd > 1e-9, sd, 1.0)
        self.mu, self.sd = mu, np.where(sd > 1e-9, sd, 1.0)
        pair = self._distances(self.x[self.rows]) if self.x.shape[1] else np.zeros((0, 0))
        off = pair[~np.eye(pair.shape[0], dtype=bool)] if pair.size else np.zeros(0)
        self.scale = float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
        self.beta_f, self.gamma, self.beta_o = 0.0, 0.0, {}

    def _distances(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        b = a if b is None else b
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).mean(-1), 0.0))

    def feature_similarity(self, x: np.ndarray) -> np.ndarray:
        """(len(rows),) minus the scaled distance of standardised features ``x`` (raw, (D,)) to each training task."""
        if not self.x.shape[1]:
            return np.zeros(self.rows.size)
        xs = (x.astype(np.float64) - self.mu) / self.sd
        return -self._distances(xs[None], self.x[self.rows])[0] / self.scale

    def beta_observed(self, k: int) -> float:
        """β_o for k observed models (the nearest k that ``select`` calibrated; 0 when none)."""
        if k < 2 or not self.beta_o:
            return 0.0
        keys = np.asarray(sorted(self.beta_o))
        return float(self.beta_o[int(keys[np.argmin(np.abs(keys - k))])])

    def batch(self, queries: np.ndarray, similarity: np.ndarray, scores_z: np.ndarray, correlation: np.ndarray | None,
              beta_f: float, gamma: float, beta_o: float, groups: np.ndarray | None = None) -> np.ndarray:
        """(Q, M) scores of Q tasks at once.

        ``queries`` (Q,): each task's own row in the training matrix (-1 for a task without one), which gets no
        attention; ``similarity`` / ``correlation`` (Q, len(rows)): feature similarity / observed correlation to
        each training task; ``scores_z`` (Q, M); ``groups`` (T,): when given, a task gets no attention from its
        whole group either (grouped inner cross-validation). A model recorded on none of the attended tasks
        gets 0 + γ·s.
        """
        if not self.rows.size:  # no training task can be attended to (e.g. every accuracy table is constant)
            return gamma * scores_z
        logits = beta_f * similarity + (beta_o * correlation if correlation is not None and beta_o else 0.0)
        excluded = self.rows[None] == queries[:, None]
        if groups is not None:
            excluded |= groups[self.rows][None] == groups[queries][:, None]
        logits = np.where(excluded, -np.inf, logits)
        top = logits.max(1, keepdims=True)
        a = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
        z = self.z[self.rows]
        has = np.isfinite(z)
        total = a @ has
        mean = (a @ np.where(has, z, 0.0)) / np.where(total > 0, total, 1.0)
        return np.where(total > 0, mean, 0.0) + gamma * scores_z

    def predict(self, features: np.ndarray, observed: np.ndarray, scores_z: np.ndarray, exclude: int | None = None) -> np.ndarray:
        """(M,) scores of one task with the selected parameters; ``exclude``: its own row, if it has one (a
        known task never attends to its own records; they enter only as observed accuracies)."""
        k = int(np.isfinite(observed).sum())
        bo = self.beta_observed(k)
        correlation = observed_correlation(self.z[self.rows], observed)[None] if bo and k >= 2 else None
        query = np.asarray([-1 if exclude is None else exclude])
        return self.batch(query, self.feature_similarity(features)[None], scores_z[None], correlation,
                          self.beta_f, self.gamma, bo)[0]

    def _row_similarity(self) -> np.ndarray:
        """(T, len(rows)) feature similarity of every known task to each training task."""
        if not self.x.shape[1]:
            return np.zeros((self.z.shape[0], self.rows.size))
        return -self._distances(self.x, self.x[self.rows]) / self.scale

    def loo_cold(self, groups: np.ndarray | None = None) -> np.ndarray:
        """(T, M) cold-start prediction of every known task from the other training tasks (never its own row;
        ``groups`` (T,): nor any task of its group)."""
        return self.batch(np.arange(self.z.shape[0]), self._row_similarity(), self.scores_z, None,
                          self.beta_f, self.gamma, 0.0, groups)

    def select(self, feature_grid, score_grid, observed_grid, max_observed: int, draws: int, criterion: str,
               seed: int, groups: np.ndarray | None = None) -> None:
        """Choose β_f, γ and β_o[k] by leave-one-training-task-out cross-validation (module docstring);
        ``groups`` (T,): leave-one-group-out instead (a task is ranked without the tasks of its group)."""
        if self.rows.size < 3:  # nothing to cross-validate on: stay at the model prior
            return
        rows = self.rows
        sims = self._row_similarity()[rows]

        def values(pred: np.ndarray, cases: np.ndarray, hidden: np.ndarray) -> np.ndarray:
            if criterion == "pearson":
                return masked_pearson(self.z[cases], pred, hidden)
            return np.asarray([_weighted_tau(self.z[t, h], p[h]) for t, p, h in zip(cases, pred, hidden)])

        seen = np.isfinite(self.z[rows])
        features = sorted(feature_grid) if self.x.shape[1] else [0.0]
        scores = sorted(score_grid) if np.any(self.scores_z[rows] != 0) else [0.0]
        # simplest first: by the sum of grid positions (0, 0 = the model prior)
        pairs = sorted(((i, j) for i in range(len(features)) for j in range(len(scores))), key=lambda p: (sum(p), p))
        self.beta_f, self.gamma = one_standard_error_choice(
            [(features[i], scores[j]) for i, j in pairs],
            lambda p: values(self.batch(rows, sims, self.scores_z[rows], None, p[0], p[1], 0.0, groups), rows, seen),
            None if groups is None else groups[rows])
        rng = np.random.default_rng(seed)
        self.beta_o = {}
        counts = seen.sum(1)
        for k in range(2, int(max_observed) + 1):
            eligible = np.flatnonzero(counts >= k + 2)  # positions in rows
            if eligible.size < 3:
                break
            repeat = max(1, min(int(draws), round(INNER_CASES / eligible.size)))
            cases = np.repeat(eligible, repeat)
            hidden = np.zeros((cases.size, self.z.shape[1]), dtype=bool)
            correlation = np.zeros((cases.size, rows.size))
            for c, i in enumerate(cases):
                recorded = np.flatnonzero(seen[i])
                shown = rng.choice(recorded, k, replace=False)
                obs = np.full(self.z.shape[1], np.nan)
                obs[shown] = self.z[rows[i], shown]
                hidden[c, np.setdiff1d(recorded, shown)] = True
                correlation[c] = observed_correlation(self.z[rows], obs)
            self.beta_o[k] = float(one_standard_error_choice(sorted(observed_grid), lambda bo: values(
                self.batch(rows[cases], sims[cases], self.scores_z[rows[cases]], correlation, self.beta_f, self.gamma, bo,
                           groups), rows[cases], hidden), None if groups is None else groups[rows[cases]]))

    def state(self) -> dict[str, Any]:
        return {"beta_f": self.beta_f, "gamma": self.gamma, "beta_o": {str(k): v for k, v in self.beta_o.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.beta_f, self.gamma = float(state["beta_f"]), float(state["gamma"])
        self.beta_o = {int(k): float(v) for k, v in state["beta_o"].items()}


def _weighted_tau(truth: np.ndarray, score: np.ndarray) -> float:
    """scipy's weighted tau (the evaluation's convention), NaN where undefined (< 2 models or a constant side)."""
    if truth.size < 2 or np.ptp(truth) == 0 or np.ptp(score) == 0:
        return np.nan
    return float(stats.weightedtau(truth, score).statistic)


def attention_core(learner: Learner, use_scores: bool = True) -> TaskAttentionCore:
    """The core over a fitted learner's training matrix (scores left out when ``use_scores`` is off)."""
    scores = learner.scores if use_scores else learner.scores[..., :0]
    return TaskAttentionCore(learner.accuracy, learner.task_features, standardized_scores(scores))


def task_groups(learner: Learner, records: Records, column: str | None) -> np.ndarray | None:
    """(T,) value of the task-metadata ``column`` for each task the learner knows (None when no column is set)."""
    if column is None:
        return None
    if records.task_meta is None or column not in records.task_meta.columns:
        raise InvalidInputError(f"cv_group {column!r} is not a task metadata column")
    return records.task_meta.reindex(learner.tasks)[column].astype(str).to_numpy()


def view_scores(learner: Learner, view: TaskView, use_scores: bool = True) -> np.ndarray:
    """(M,) standardised transferability scores of the task in ``view`` (zeros when not used)."""
    if not use_scores:
        return np.zeros(len(learner.models))
    return standardized_scores(view.scores[None])[0]


def view_observed(learner: Learner, view: TaskView) -> np.ndarray:
    """Observed accuracies of the task: those given to ``predict`` plus, for a task with training records, its own
    records (the seed-mixture protocol trains on part of a task's models and ranks the rest)."""
    observed = view.observed.astype(np.float64)
    if view.index is not None:
        own = learner.accuracy[view.index].astype(np.float64)
        observed = np.where(np.isfinite(observed), observed, own)
    return observed


@LEARNERS.register("task_attention")
class TaskAttention(Learner):
    """Attention-weighted model prior with learned trust in task features, observed accuracies and scores.

    See the module docstring. Options: the three grids, ``max_observed`` (largest k calibrated),
    ``inner_draws`` (random observed sets per training task and k), ``criterion`` ("pearson" or
    "weighted_tau"), ``use_scores`` and ``cv_group``: a task metadata column (e.g. "domain") to make the inner
    cross-validation leave one group out, matching a leave-one-domain-out evaluation (default: leave one
    task out).
    """

    name = "task_attention"
    task_inputs = ("metadata", "embedding", "scores")
    defaults = {
        "feature_grid": [0.0, 0.5, 1.0, 2.0, 4.0], "score_grid": [0.0, 0.1, 0.25, 0.5, 1.0],
        "observed_grid": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0], "max_observed": 9, "inner_draws": 10,
        "criterion": "pearson", "use_scores": True, "cv_group": None, "seed": 0,
    }

    def _fit(self, records: Records) -> None:
        cfg = self.config
        if cfg["criterion"] not in CRITERIA:
            raise InvalidInputError(f"criterion must be one of {sorted(CRITERIA)}, not {cfg['criterion']!r}")
        self.core = attention_core(self, bool(cfg["use_scores"]))
        self.core.select(cfg["feature_grid"], cfg["score_grid"], cfg["observed_grid"], int(cfg["max_observed"]),
                         int(cfg["inner_draws"]), cfg["criterion"], int(cfg["seed"]),
                         task_groups(self, records, cfg["cv_group"]))

    def _scores(self, view: TaskView) -> np.ndarray:
        return self.core.predict(view.features, view_observed(self, view), view_scores(self, view, self.config["use_scores"]),
                                 exclude=view.index)

    def _state(self) -> dict[str, Any]:
        return {"core": self.core.state()}

    def _restore(self, state: dict[str, Any]) -> None:
        self.core = attention_core(self, bool(self.config["use_scores"]))
        self.core.restore(state["core"])


PRIORS = ("attention", "model", "none")


class PriorBase:
    """What the graph learner and Model Spider add their learned correction to (their ``prior`` option).

    "attention": the task-attention prediction (parameters selected on the training tasks by inner
    cross-validation, as in the ``task_attention`` learner); "model": the model prior (mean within-task
    z-score); "none": zeros (the network alone). ``training()`` gives the leave-one-task-out values for the
    training pairs (a pair never sees its own label), ``of(view)`` the value for a task being ranked.
    """

    def __init__(self, learner: Learner, kind: str, use_scores: bool):
        if kind not in PRIORS:
            raise InvalidInputError(f"prior must be one of {PRIORS}, not {kind!r}")
        self.learner, self.kind, self.use_scores = learner, kind, use_scores
        self.core = attention_core(learner, use_scores) if kind == "attention" else None
        self.prior, self.loo = model_prior(learner.accuracy)
        self.groups: np.ndarray | None = None

    def select(self, seed: int, groups: np.ndarray | None = None) -> "PriorBase":
        """Select the task-attention parameters (the ``task_attention`` defaults). ``groups`` (see ``cv_group``):
        the selection and the training values (``training``) leave one group out instead of one task."""
        self.groups = groups
        if self.core is not None:
            grids = TaskAttention.defaults
            self.core.select(grids["feature_grid"], grids["score_grid"], grids["observed_grid"], grids["max_observed"],
                             grids["inner_draws"], grids["criterion"], seed, groups)
        return self

    def training(self) -> np.ndarray:
        """(T, M) base of every known task, from the other training tasks only (other groups only, when
        ``select`` was given groups): the base a network is trained and validated on is as cold as the
        evaluation's."""
        if self.kind == "none":
            return np.zeros_like(self.loo, dtype=np.float32)
        if self.core is not None:
            return self.core.loo_cold(self.groups).astype(np.float32)
        loo = self.loo if self.groups is None else model_prior(self.learner.accuracy, self.groups)[1]
        return loo.astype(np.float32)

    def of(self, view: TaskView) -> np.ndarray:
        """(M,) base of the task being ranked (task attention reads its observed accuracies and scores)."""
        if self.kind == "none":
            return np.zeros(len(self.learner.models), np.float32)
        if self.core is None:
            return (self.loo[view.index] if view.index is not None else self.prior).astype(np.float32)
        return self.core.predict(view.features, view_observed(self.learner, view),
                                 view_scores(self.learner, view, self.use_scores), exclude=view.index).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return self.core.state() if self.core is not None else {}

    def restore(self, state: dict[str, Any]) -> "PriorBase":
        if self.core is not None:
            self.core.restore(state)
        return self
