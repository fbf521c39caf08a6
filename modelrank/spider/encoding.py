"""Turn model and task side information into fixed-length numeric vectors (node features / task tokens).

The encoders are fitted on the training records and saved with the learner (plain JSON), so a task that is
new at ranking time is encoded exactly like the training tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .records import Records, TaskInfo

MAX_ONE_HOT = 30  # text columns with more distinct values are free text (names, label lists): not one-hot encoded


@dataclass
class TableEncoder:
    """Metadata row -> numbers.

    Numeric columns: log10 first when all values are positive and span more than two decades (parameter
    counts, dataset sizes), then z-scored with the training mean/std; a missing value becomes 0 (the mean)
    plus a 1 in the column's "missing" indicator. Text columns with at most ``MAX_ONE_HOT`` distinct values
    are one-hot encoded (an unseen category is all zeros); other text columns are ignored.
    """

    numeric: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> {mean, std, log}
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> categories

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "TableEncoder":
        enc = cls()
        for col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce")
            present = frame[col].notna()
            if present.any() and values[present].notna().all():
                # An infinite value is missing, as ``transform`` takes it: in the mean it made every task's
                # encoding NaN, and the learner fitted on NaN.
                v = values[present & np.isfinite(values)].to_numpy(dtype=float)
                if not v.size:
                    continue
                log = bool(np.all(v > 0) and v.max() / v.min() > 100.0)
                v = np.log10(v) if log else v
                with np.errstate(over="ignore"):
                    mean, std = float(v.mean()), float(v.std())
                if not (np.isfinite(mean) and np.isfinite(std)):
                    raise InvalidInputError(f"metadata column {col!r} holds values too large to standardise "
                                            f"({np.abs(v).max():.3g}); rescale it")
                enc.numeric[str(col)] = {"mean": mean, "std": std if std > 0 else 1.0, "log": log}
            else:
                cats = sorted(frame[col].dropna().astype(str).unique())
                if 1 < len(cats) <= MAX_ONE_HOT:
                    enc.categorical[str(col)] = cats
        return enc

    @property
    def dim(self) -> int:
        return 2 * len(self.numeric) + sum(len(c) for c in self.categorical.values())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(n rows, dim) float32 array; raises if a column the encoder was fitted on is absent."""
        absent = [c for c in [*self.numeric, *self.categorical] if c not in frame.columns]
        if absent:
            raise InvalidInputError(f"metadata lacks column(s) {absent} that the learner was trained with")
        blocks = []
        for col, st in self.numeric.items():
            v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            missing = ~np.isfinite(v)
            if st["log"]:
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
                missing |= ~np.isfinite(v)
            with np.errstate(over="ignore"):
                z = np.where(missing, 0.0, (np.nan_to_num(v) - st["mean"]) / st["std"])
            if np.any(np.abs(z) > np.finfo(np.float32).max):  # became inf in float32, and the scores NaN
                raise InvalidInputError(f"metadata {col}={v[np.abs(z) > np.finfo(np.float32).max][0]:.3g} is far "
                                        "outside the training tasks' range (beyond float32 once standardised)")
            blocks += [z[:, None], missing[:, None].astype(float)]
        for col, cats in self.categorical.items():
            values = frame[col].astype(str).to_numpy()
            blocks.append((values[:, None] == np.asarray(cats)[None, :]).astype(float))
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def to_json(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_json(cls, data: Mapping) -> "TableEncoder":
        """The encoder ``to_json`` wrote; statistics no fit gives are refused (a saved learner's JSON edited by hand:
        a std of 0 divided by zero at ranking time, with a numpy warning before the error)."""
        numeric = {}
        for column, stats in dict(data["numeric"]).items():
            mean, std, log = stats["mean"], stats["std"], stats["log"]
            if not (isinstance(log, bool) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and np.isfinite(v) for v in (mean, std)) and std > 0):
                raise ValueError(f"metadata column {column!r}: mean {mean!r}, std {std!r}, log {log!r} are no fitted "
                                 "statistics (finite numbers, std > 0, log true or false)")
            numeric[column] = {"mean": float(mean), "std": float(std), "log": log}
        categorical = {}
        for column, values in dict(data["categorical"]).items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"metadata column {column!r}: categories {values!r} are not a list of names")
            categorical[column] = values
        return cls(numeric, categorical)


@dataclass
class Featurizer:
    """Model / task side information -> vectors: [encoded metadata, embedding].

    Fitted on the records given to ``fit``; ``task_vector`` encodes any ``TaskInfo`` (also one unseen at
    training time) and raises a clear error when the task lacks what the learner was trained with.
    """

    model_encoder: TableEncoder | None = None
    task_encoder: TableEncoder | None = None
    model_embed_dim: int = 0
    task_embed_dim: int = 0

    @classmethod
    def fit(cls, records: Records) -> "Featurizer":
        return cls(
            TableEncoder.fit(records.model_meta) if records.model_meta is not None else None,
            TableEncoder.fit(records.task_meta) if records.task_meta is not None else None,
            0 if records.model_embed is None else records.model_embed.shape[1],
            0 if records.task_embed is None else records.task_embed.shape[1],
        )

    @property
    def model_dim(self) -> int:
        return (self.model_encoder.dim if self.model_encoder else 0) + self.model_embed_dim

    @property
    def task_dim(self) -> int:
        return (self.task_encoder.dim if self.task_encoder else 0) + self.task_embed_dim

    def model_matrix(self, records: Records, models: list[str]) -> np.ndarray:
        """(len(models), model_dim) features; raises if a model lacks metadata the featurizer needs."""
        blocks = []
        if self.model_encoder is not None:
            if records.model_meta is None:
                raise InvalidInputError("the learner was trained with model metadata but these records have none")
            lacking = [m for m in models if m not in records.model_meta.index]
            if lacking:
                raise InvalidInputError(f"no metadata for model(s) {lacking[:5]}")
            blocks.append(self.model_encoder.transform(records.model_meta.loc[models]))
        if self.model_embed_dim:
            if records.model_embed is None or any(m not in records.model_embed.index for m in models):
                raise InvalidInputError("the learner was trained with model embeddings; some models have none")
            blocks.append(records.model_embed.loc[models].to_numpy(dtype=np.float32))
        if not blocks:
            return np.zeros((len(models), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)

    def task_vector(self, info: TaskInfo) -> np.ndarray:
        """(task_dim,) features of one task."""
        blocks = []
        if self.task_encoder is not None:
            if info.meta is None:
                raise InvalidInputError(f"task {info.name!r} has no metadata; the learner was trained with task metadata")
            blocks.append(self.task_encoder.transform(pd.DataFrame([dict(info.meta)]))[0])
        if self.task_embed_dim:
            if info.embedding is None or np.asarray(info.embedding).shape != (self.task_embed_dim,):
                raise InvalidInputError(
                    f"task {info.name!r} needs a {self.task_embed_dim}-d embedding like the training tasks"
                )
            blocks.append(np.asarray(info.embedding, dtype=np.float32))
        if not blocks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(blocks).astype(np.float32)

    def task_matrix(self, records: Records, tasks: list[str]) -> np.ndarray:
        """(len(tasks), task_dim) features of tasks described in ``records``."""
        blocks = [np.zeros((len(tasks), 0), dtype=np.float32)]
        for frame, used, what in ((records.task_meta, self.task_encoder is not None, "metadata"),
                                  (records.task_embed, self.task_embed_dim > 0, "embedding")):
            if not used:
                continue
            lacking = tasks if frame is None else [t for t in tasks if t not in frame.index]
            if lacking:
                raise InvalidInputError(f"task(s) {list(lacking)[:5]} have no {what}; the learner was trained with task {what}")
            rows = frame.loc[tasks]
            blocks.append(self.task_encoder.transform(rows) if what == "metadata" else rows.to_numpy(dtype=np.float32))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "model_encoder": self.model_encoder.to_json() if self.model_encoder else None,
            "task_encoder": self.task_encoder.to_json() if self.task_encoder else None,
            "model_embed_dim": self.model_embed_dim,
            "task_embed_dim": self.task_embed_dim,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "Featurizer":
        return cls(
            TableEncoder.from_json(data["model_encoder"]) if data["model_encoder"] else None,
            TableEncoder.from_json(data["task_encoder"]) if data["task_encoder"] else None,
            int(data["model_embed_dim"]),
            int(data["task_embed_dim"]),
        )
