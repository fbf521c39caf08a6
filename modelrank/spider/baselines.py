"""Baselines every learned ranker must beat: random, model prior, metadata regression, one transferability score."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .base import LEARNERS, Learner, TaskView, model_prior
from .encoding import Featurizer
from .records import Records


@LEARNERS.register("random")
class RandomRanker(Learner):
    """Uniform random scores, seeded by (seed, task name) so a task always gets the same ranking."""

    name = "random"
    defaults = {"seed": 0}
    task_inputs = ()
    uses_observed = False

    def _fit(self, records: Records) -> None:
        pass

    def _scores(self, view: TaskView) -> np.ndarray:
        rng = np.random.default_rng([int(self.config["seed"]), zlib.crc32(view.name.encode())])
        return rng.random(len(self.models))


@LEARNERS.register("model_prior")
class ModelPrior(Learner):
    """Fixed prior: each model's average accuracy over the training tasks, the same ranking for every task.

    ``normalize="zscore"`` (default) z-scores each training task's accuracies first (tasks differ in
    difficulty, and a model fine-tuned only on easy tasks would otherwise look strong), then averages per
    model; ``normalize="mean"`` averages raw accuracies. A model whose tasks all have a single record gets
    the average prior (0 z-score / mean accuracy). Observed accuracies are ignored.
    """

    name = "model_prior"
    defaults = {"normalize": "zscore"}
    task_inputs = ()
    uses_observed = False

    def _fit(self, records: Records) -> None:
        if self.config["normalize"] == "zscore":
            self.prior = model_prior(self.accuracy)[0]
        elif self.config["normalize"] == "mean":
            acc = self.accuracy.astype(np.float64)
            present = np.isfinite(acc)
            fallback = float(acc[present].mean())
            counts = present.sum(0)
            self.prior = np.where(counts > 0, np.where(present, acc, 0.0).sum(0) / np.maximum(counts, 1), fallback)
        else:
            raise InvalidInputError(f"normalize must be 'zscore' or 'mean', not {self.config['normalize']!r}")

    def _scores(self, view: TaskView) -> np.ndarray:
        return self.prior.copy()

    def _state(self) -> dict[str, Any]:
        return {"prior": torch.from_numpy(self.prior)}

    def _restore(self, state: dict[str, Any]) -> None:
        self.prior = state["prior"].numpy()


@LEARNERS.register("metadata_lr")
class MetadataRegression(Learner):
    """Ridge regression of accuracy on [model features, task features] (the graph seed's LR baseline).

    accuracy ≈ w_m·x_model + w_t·x_task + b, fitted in closed form ((XᵀX + αI)⁻¹Xᵀy) on every training record.
    Because the model is additive, the task term is the same constant for every model of a task: this
    baseline ranks the models IDENTICALLY FOR EVERY TASK (it is a metadata-based model prior); only the
    predicted accuracy level changes between tasks, which matters for Pearson across tasks, not for ranking.
    Observed accuracies are ignored.
    """

    name = "metadata_lr"
    defaults = {"alpha": 1.0}
    task_inputs = ()
    uses_observed = False

    def check(self, records: Records) -> None:
        super().check(records)
        if Featurizer.fit(records).model_dim == 0:
            raise InvalidInputError("metadata_lr needs model metadata (spider train --model-meta M.csv) or model "
                                    "embeddings; these records have none")

    def _fit(self, records: Records) -> None:
        ti, mi = np.nonzero(np.isfinite(self.accuracy))
        x = np.concatenate([self.model_features[mi], self.task_features[ti], np.ones((ti.size, 1), np.float32)], 1)
        y = self.accuracy[ti, mi].astype(np.float64)
        gram = x.T.astype(np.float64) @ x + float(self.config["alpha"]) * np.eye(x.shape[1])
        gram[-1, -1] -= float(self.config["alpha"])  # the intercept is not shrunk
        self.coef = np.linalg.solve(gram, x.T.astype(np.float64) @ y)

    def _scores(self, view: TaskView) -> np.ndarray:
        d_m = self.model_features.shape[1]
        return self.model_features @ self.coef[:d_m] + float(view.features @ self.coef[d_m:-1]) + self.coef[-1]

    def _state(self) -> dict[str, Any]:
        return {"coef": torch.from_numpy(self.coef)}

    def _restore(self, state: dict[str, Any]) -> None:
        self.coef = state["coef"].numpy()
        expected = (self.model_features.shape[1] + self.task_features.shape[1] + 1,)
        if self.coef.shape != expected:  # an edited state.npz: a matmul traceback at ranking time
            raise ValueError(f"coef has shape {self.coef.shape}, the features need {expected}")


@LEARNERS.register("metric")
class MetricScore(Learner):
    """Rank by one transferability score column of the task (e.g. LogME), as computed, no learning.

    ``column``: the score column (default: the first one in the records). Models without a score on the task
    are ranked last (score = lowest present score - 1); a task with no score at all is an error.
    """

    name = "metric"
    defaults = {"column": None}
    task_inputs = ("scores",)
    uses_observed = False

    def check(self, records: Records) -> None:
        super().check(records)
        if not records.score_columns:
            raise InvalidInputError("the metric baseline needs transferability scores in the records (none given)")
        if self.config["column"] not in (None, *records.score_columns):
            raise InvalidInputError(f"score column {self.config['column']!r} not in the records; have "
                                    f"{records.score_columns}")

    def _fit(self, records: Records) -> None:
        self.config["column"] = self.config["column"] or self.score_columns[0]

    def _scores(self, view: TaskView) -> np.ndarray:
        values = view.scores[:, self.score_columns.index(self.config["column"])].astype(np.float64)
        present = np.isfinite(values)
        if not present.any():
            raise InvalidInputError(f"task {view.name!r} has no {self.config['column']} scores")
        return np.where(present, values, values[present].min() - 1.0)
