"""The interface every learned ranker and baseline shares, and its save/load.

``fit(records)`` learns from fine-tune records; ``predict(task, observed=None)`` returns one score per zoo
model (higher = predicted to transfer better) for a task given by name (any task the records described,
held-out ones included) or as a ``TaskInfo`` (a task never seen); ``observed`` holds the accuracies of the
few models already fine-tuned on that task (partially observed protocol). ``save(path)`` writes a folder with
``learner.json`` (name, config, zoo, encoders, scalars) and ``state.npz`` (arrays; nothing pickled); ``load_learner(path)`` restores it
and it ranks identically.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import atomic_write_bytes
from ..errors import InvalidInputError, MissingResourceError, ModelrankError, error_reason
from ..metrics.base import Interval
from ..registry import Registry
from .encoding import Featurizer
from .records import Records, TaskInfo

LEARNERS: Registry[type["Learner"]] = Registry("learner")
FORMAT_VERSION = 2  # 1: state.pt (torch pickle); 2: state.npz + JSON, no pickle
# The networks here are tiny (hidden ~32): torch's intra-op thread pool costs far more than it gives, and on a
# shared machine it can make training 30x slower (measured: 34 s vs 0.9 s for 100 graph epochs).
TORCH_THREADS = 1
# Ties of predictions (``modelrank.evaluate.ties``): learners hold the records in float32, whose relative rounding
# of 6e-8 the within-task z-scores multiply by mean / spread of the task (~4 for accuracies 0.45-0.71: two models
# with swapped records scored 2.4e-7 apart and were ranked 1 and 2). Predictions are O(1), hence the same atol.
PREDICTION_RTOL = PREDICTION_ATOL = 1e-5


@contextmanager
def torch_threads(n: int = TORCH_THREADS) -> Iterator[None]:
    """Run torch ops with ``n`` intra-op threads, restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class TaskView:
    """A task as the learner sees it: encoded features, per-model scores and (optional) prototypes."""

    name: str
    index: int | None  # row in the learner's known tasks, None for a task given as TaskInfo
    features: np.ndarray  # (task_dim,)
    scores: np.ndarray  # (n_models, n_score_columns), NaN where a model has no score
    observed: np.ndarray  # (n_models,), accuracy of already fine-tuned models, NaN elsewhere
    prototypes: np.ndarray | None = None
    model_prototypes: dict[int, np.ndarray] | None = None
    rerank_k: int | None = None


class Learner:
    """Base class: stores the zoo, the encoded task/model side information and the training accuracies.

    Subclasses implement ``_fit(records)``, ``_scores(view) -> (n_models,)``, ``_state()`` / ``_restore()``.
    """

    name: ClassVar[str] = "learner"
    defaults: ClassVar[dict[str, Any]] = {}
    #: what the learner reads about the task being ranked, among "metadata", "embedding", "prototypes" and "scores"
    #: (``reads``, which narrows it to what the training records had); whether it reads observed accuracies
    task_inputs: ClassVar[tuple[str, ...]] = ("metadata", "embedding", "prototypes", "scores")
    uses_observed: ClassVar[bool] = True

    def __init__(self, **config: Any):
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise InvalidInputError(f"{self.name} has no option(s) {sorted(unknown)}; options: {sorted(self.defaults)}")
        self.config: dict[str, Any] = {**self.defaults, **{k: _option_value(self.name, k, v, self.defaults[k])
                                                            for k, v in config.items()}}
        _check_ranges(self.name, self.config)
        self.fitted = False

    # ------------------------------------------------------------------------------------ fitting
    def fit(self, records: Records, progress: Callable[[int, int], None] | None = None) -> "Learner":
        """Learn from ``records``; ``progress(done, total)`` is called as training epochs pass (learners that train)."""
        self.progress = progress
        self.check(records)
        self.models: list[str] = records.models
        # how the training tasks were described, so that a new dataset is described alike (``spider.describe``)
        self.recipe: dict[str, Any] = {k: records.info[k] for k in ("encoder", "task_text") if records.info.get(k)}
        self.tasks: list[str] = records.tasks
        self.featurizer = Featurizer.fit(records)
        self.model_features = self.featurizer.model_matrix(records, self.models)
        self.task_features = self.featurizer.task_matrix(records, self.tasks) if self.featurizer.task_dim else \
            np.zeros((len(self.tasks), 0), dtype=np.float32)
        self.accuracy = records.matrix(self.tasks, self.models).to_numpy(dtype=np.float32)  # NaN = no record
        self.score_columns: list[str] = records.score_columns
        self.scores = np.full((len(self.tasks), len(self.models), len(self.score_columns)), np.nan, np.float32)
        if records.scores is not None:
            rows = records.scores[records.scores["model"].isin(self.models)]
            ti = pd.Index(self.tasks).get_indexer(rows["dataset"])
            mi = pd.Index(self.models).get_indexer(rows["model"])
            self.scores[ti, mi] = rows[self.score_columns].to_numpy(dtype=np.float32)
        with torch_threads():
            self._fit(records)
        self.fitted = True
        del self.progress
        return self

    def check(self, records: Records) -> None:
        """Raise when ``records`` lack what this learner needs, before any training (``spider eval`` asks every
        learner first: a baseline without its input failed after the learners before it had been evaluated)."""
        if not isinstance(records, Records):
            raise InvalidInputError(f"fit needs Records, got {type(records).__name__}")
        records.rankable_tasks()  # raises when no task has 2 models to rank

    def _fit(self, records: Records) -> None:
        raise NotImplementedError

    @property
    def rerank_models(self) -> list[str]:
        """Models this learner can re-rank with their own features on a task (Model Spider's second stage)."""
        return []

    @property
    def reads(self) -> list[str]:
        """What this fitted learner reads about a task: ``task_inputs`` that its training records had."""
        had = {"metadata": self.featurizer.task_encoder is not None and self.featurizer.task_encoder.dim > 0,
               "embedding": self.featurizer.task_embed_dim > 0, "prototypes": bool(getattr(self, "proto_dim", 0)),
               "scores": bool(self.score_columns)}
        return [what for what in self.task_inputs if had[what]]

    # ---------------------------------------------------------------------------------- predicting
    def view(self, task: str | TaskInfo, observed: Mapping[str, float] | pd.Series | None = None) -> TaskView:
        """Resolve a task name or TaskInfo (+ observed accuracies) into what ``_scores`` consumes."""
        if not self.fitted:
            raise InvalidInputError(f"{self.name} learner is not fitted; call fit(records) or load_learner(path)")
        obs = np.full(len(self.models), np.nan, np.float32)
        if observed is not None:
            observed = pd.Series(observed, dtype=float)
            unknown = sorted(set(observed.index) - set(self.models))
            if unknown:
                raise InvalidInputError(f"observed accuracies for model(s) {unknown[:5]} that are not in the trained zoo")
            if not np.all(np.isfinite(observed.to_numpy())):
                raise InvalidInputError("observed accuracies must be finite numbers")
            obs[pd.Index(self.models).get_indexer(observed.index)] = observed.to_numpy(dtype=np.float32)
        if isinstance(task, str):
            if task not in self.tasks:
                known = _known_as(task, self.tasks)
                raise InvalidInputError(
                    f"unknown task {task!r}: the learner knows {len(self.tasks)} tasks ({known}); "
                    "describe a new one by its data (`spider rank DIR -d DATASET` or --features; in Python a "
                    "TaskInfo, see spider.describe)"
                )
            i = self.tasks.index(task)
            return TaskView(task, i, self.task_features[i], self.scores[i], obs, *self._stored_prototypes(task))
        if not isinstance(task, TaskInfo):
            raise InvalidInputError(f"task must be a name or a TaskInfo, got {type(task).__name__}")
        reads = self.reads
        if "metadata" in reads or "embedding" in reads:
            features = self.featurizer.task_vector(task)
        else:  # the ranking does not depend on them: a task needs no description
            features = np.zeros(self.featurizer.task_dim, np.float32)
        scores = np.full((len(self.models), len(self.score_columns)), np.nan, np.float32)
        if task.scores is not None and self.score_columns:
            absent = [c for c in self.score_columns if c not in task.scores.columns]
            if absent:
                raise InvalidInputError(f"task {task.name!r} lacks score column(s) {absent} the learner was trained with")
            known = task.scores.reindex(self.models)[self.score_columns]
            scores = known.to_numpy(dtype=np.float32)
        model_prototypes = None
        if task.model_prototypes:
            model_prototypes = {self.models.index(m): np.asarray(p, np.float32)
                                for m, p in task.model_prototypes.items() if m in self.models}
        prototypes = None if task.prototypes is None else np.asarray(task.prototypes, np.float32)
        return TaskView(task.name, None, features, scores, obs, prototypes, model_prototypes, task.rerank_k)

    def _stored_prototypes(self, task: str) -> tuple[np.ndarray | None, dict[int, np.ndarray] | None]:
        return None, None

    def predict(self, task: str | TaskInfo, observed: Mapping[str, float] | pd.Series | None = None,
                models: Sequence[str] | None = None) -> pd.Series:
        """Scores per model (higher = better), indexed by model name, for ``models`` (default: the whole zoo)."""
        view = self.view(task, observed)
        with torch_threads():
            raw = self._scores(view)
        scores = pd.Series(np.asarray(raw, dtype=np.float64), index=self.models, name=view.name)
        if not np.all(np.isfinite(scores.to_numpy())):
            raise InvalidInputError(f"{self.name} produced non-finite scores for task {view.name!r}")
        if models is None:
            return scores
        models = list(models)
        unknown = sorted(set(models) - set(self.models))
        if unknown:
            raise InvalidInputError(
                f"model(s) {unknown[:5]} are not in the zoo this learner was trained on ({len(self.models)} models)"
            )
        if len(models) < 2:
            raise InvalidInputError(f"ranking needs at least 2 models, got {len(models)}")
        return scores.loc[models]

    def _scores(self, view: TaskView) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> Path:
        """Write ``learner.json`` (name, config, zoo, encoders, the non-array state) + ``state.npz`` (arrays) into
        the folder ``path`` (created if needed). Nothing in it is pickled: loading runs no code. Each file is
        written to a temporary name and renamed, the JSON last, so an interrupted save leaves no learner. The JSON
        holds the SHA-256 of the arrays' file: a save interrupted between the two renames over an older learner
        (new arrays, old JSON), or two saves into one folder at once, leave a pair ``load_learner`` refuses."""
        if not self.fitted:
            raise InvalidInputError("cannot save a learner that is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        state = _split_arrays({
            "model_features": self.model_features, "task_features": self.task_features, "accuracy": self.accuracy,
            "scores": self.scores, "learner": self._state(),
        }, arrays, "")
        meta = {
            "format": FORMAT_VERSION,
            "learner": self.name,
            "config": self.config,
            "models": self.models,
            "tasks": self.tasks,
            "score_columns": self.score_columns,
            "recipe": self.recipe,
            "featurizer": self.featurizer.to_json(),
            "state": state,
        }
        buffer = io.BytesIO()  # a file object: np.savez would append ".npz" to a file name
        np.savez(buffer, **arrays)
        state_bytes = buffer.getvalue()
        meta["state_sha256"] = hashlib.sha256(state_bytes).hexdigest()
        # Temporaries with unique names, renamed into place: concurrent saves never write into each other's file.
        atomic_write_bytes(path / "state.npz", state_bytes)
        atomic_write_bytes(path / "learner.json", json.dumps(meta, indent=1).encode())
        return path


def _known_as(name: str, known: Sequence[str]) -> str:
    """The closest of ``known`` to a misspelt task name (any letter case), or the first few when none is close:
    `spider rank DIR Pets` said only "the learner knows 8 tasks", and their names were in learner.json alone."""
    import difflib

    lower = {k.lower(): k for k in known}
    close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"{', '.join(known[:5])}{', ...' if len(known) > 5 else ''}"


def _split_arrays(value: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    """The JSON-able tree of ``value`` with every tensor / array moved into ``arrays`` (a ``{"array": key}`` marker
    stays in its place)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        arrays[key] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return {"array": key}
    if isinstance(value, Mapping):
        return {"dict": {str(k): _split_arrays(v, arrays, f"{key}/{k}" if key else str(k)) for k, v in value.items()}}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _join_arrays(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of ``_split_arrays``; arrays come back as torch tensors."""
    if isinstance(value, dict) and "array" in value:
        return torch.from_numpy(np.array(arrays[value["array"]]))
    if isinstance(value, dict):
        return {k: _join_arrays(v, arrays) for k, v in value["dict"].items()}
    return value


def load_learner(path: str | Path) -> Learner:
    """Restore a learner written by ``Learner.save`` (no pickle: JSON and ``np.load(allow_pickle=False)``).

    A folder whose files were damaged or edited is refused with one line naming the folder.
    """
    path = Path(path)
    if not (path / "learner.json").is_file():
        raise MissingResourceError(f"no saved learner in {path} (expected learner.json and state.npz)")
    try:
        meta = json.loads((path / "learner.json").read_text())
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise InvalidInputError(f"saved learner in {path} is damaged: {path / 'learner.json'} is not valid JSON ({exc})") from None
    # the format before the arrays: a format-1 learner (learner.json + state.pt, a pickle never opened here) was
    # "no saved learner" instead of the version to retrain
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InvalidInputError(f"saved learner format {found!r} is not supported (expected {FORMAT_VERSION}); "
                                "retrain it with `modelrank spider train`")
    if not (path / "state.npz").is_file():
        raise MissingResourceError(f"no saved learner in {path} (expected learner.json and state.npz)")
    try:
        state_bytes = (path / "state.npz").read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"saved learner in {path}: cannot read state.npz ({error_reason(exc)})") from None
    # Saves before the checksum was written have none: their pair is taken as it is.
    expected = meta.get("state_sha256")
    if expected is not None and hashlib.sha256(state_bytes).hexdigest() != expected:
        raise InvalidInputError(f"saved learner in {path}: state.npz is not the one learner.json was saved with (a "
                                "save interrupted over an older learner, or two saves into one folder at once); "
                                "train it again")
    try:
        with np.load(io.BytesIO(state_bytes), allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except Exception as exc:  # truncated, garbage, or object arrays (refused: they would unpickle)
        raise InvalidInputError(f"saved learner in {path}: cannot read state.npz ({error_reason(exc)})") from None
    # NaN marks a missing record or score; anything else non-finite, or a NaN in what was learned, comes from an
    # edit, and the ranking computed from it failed with a numpy warning line before the error (or ranked nothing).
    for key, array in arrays.items():
        if array.dtype.kind in "fc" and (np.isinf(array).any() or key not in ("accuracy", "scores") and
                                         np.isnan(array).any()):
            raise InvalidInputError(f"saved learner in {path} is damaged or was edited: state.npz {key} holds "
                                    "non-finite values")
    try:
        return _restore_learner(meta, arrays)
    except ModelrankError:
        raise
    except Exception as exc:  # any edit of either file shows up as one of many exception types here
        raise InvalidInputError(
            f"saved learner in {path} is damaged or was edited ({type(exc).__name__}: {error_reason(exc)})"
        ) from None


def _restore_learner(meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Learner:
    cls = LEARNERS.get(meta["learner"])
    learner = cls(**meta["config"])
    for what in ("models", "tasks"):
        # a name listed twice (an edited file) ranked one model twice: a table of two lengths, a traceback
        names = meta[what]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
            raise InvalidInputError(f"learner.json: {what} must be a list of distinct names")
    learner.models, learner.tasks = list(meta["models"]), list(meta["tasks"])
    learner.score_columns = list(meta["score_columns"])
    learner.recipe = dict(meta.get("recipe", {}))
    learner.featurizer = Featurizer.from_json(meta["featurizer"])
    state = _join_arrays(meta["state"], arrays)
    learner.model_features = state["model_features"].numpy()
    learner.task_features = state["task_features"].numpy()
    learner.accuracy = state["accuracy"].numpy()
    learner.scores = state["scores"].numpy()
    n_models, n_tasks = len(learner.models), len(learner.tasks)
    if (learner.model_features.shape[:1] != (n_models,) or learner.task_features.shape[:1] != (n_tasks,)
            or learner.accuracy.shape != (n_tasks, n_models)
            or learner.scores.shape != (n_tasks, n_models, len(learner.score_columns))):
        raise InvalidInputError(f"state.npz does not fit {n_models} models x {n_tasks} tasks of learner.json")
    learner._restore(state["learner"])
    learner.fitted = True
    return learner


def learner_rows() -> tuple[list[str], list[list[str]]]:
    """(columns, rows) describing every registered learner: what it reads about a task, whether it uses observed
    accuracies, its options and the first line of its documentation (``modelrank list learners``)."""
    rows = []
    for spec in LEARNERS:
        cls = spec.obj
        rows.append([spec.name, ", ".join(cls.task_inputs) or "nothing", "yes" if cls.uses_observed else "no",
                     ", ".join(cls.defaults), (cls.__doc__ or "").strip().splitlines()[0]])
    return ["name", "reads about a task", "observed", "options (--set)", "what it is"], rows


def make_learner(name: str, **config: Any) -> Learner:
    """A fresh learner by registry name (``random``, ``model_prior``, ``metadata_lr``, ``metric``, ``graph``, ``spider``)."""
    return LEARNERS.get(name)(**config)


def _option_value(learner: str, key: str, value: Any, default: Any) -> Any:
    """``value`` of option ``key`` in the type of its default (options arrive as text from the command line);
    a value that does not fit is an input error naming the option."""
    kind = type(default)
    try:
        # `--set epochs=null` (JSON null) is no value for an option whose default is one: it passed through and was
        # a traceback in `int(None)` mid-training. A list is checked element by element below: `["a"]` passed as
        # a list and failed in the range check with a TypeError.
        exact = isinstance(value, kind) and kind is not list and not (kind is int and isinstance(value, bool))
        if default is None or exact:
            return value
        if value is None:  # not str(None), "None"
            raise ValueError
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if kind is int:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return int(value)
            raise ValueError
        if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if kind is list and isinstance(value, (list, tuple)):
            if any(isinstance(v, (bool, str)) or v is None for v in value):  # float(True) is 1.0, float("1") 1.0
                raise ValueError
            return [float(v) for v in value]
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise InvalidInputError(f"{learner} option {key} must be {kind.__name__} like its default {default!r}, not {value!r}")


#: Allowed values of the learners' numeric options, by option name (the same name means the same thing in every
#: learner), as ``Interval``s (a list option holds values in its interval). Only types were checked: lr=-1,
#: hidden=1 or eval_every=0 were tracebacks mid-training, epochs=-1, patience=0 or feature_grid=[] trained something
#: other than what was asked.
OPTION_RANGES = {key: Interval.parse(text) for key, text in {
    "seed": "[0, 4294967295]", "epochs": "[1, inf)", "episodes": "[1, inf)", "eval_every": "[1, inf)",
    "patience": "[1, inf)", "lr": "(0, inf)", "weight_decay": "[0, inf)", "alpha": "(0, inf)",
    "hidden": "[1, 4096]", "heads": "[1, 64]", "layers": "[1, 64]", "dropout": "[0, 1)", "proto_dropout": "[0, 1)",
    "val_fraction": "[0, 1)", "task_knn": "[1, inf)", "message_fraction": "[0, 1]", "cold_task_fraction": "[0, 1]",
    "rank_weight": "[0, inf)", "tasks_per_episode": "[1, inf)", "models_per_subtask": "[2, inf)",
    "rerank_k": "[0, inf)", "max_observed": "[0, inf)", "inner_draws": "[1, inf)",
    "feature_grid": "[0, inf)", "score_grid": "[0, inf)", "observed_grid": "[0, inf)",
}.items()}


def _check_ranges(learner: str, config: dict[str, Any]) -> None:
    """Every numeric option inside its ``OPTION_RANGES`` interval (a list: non-empty, every value inside), and
    ``hidden`` divisible by ``heads`` (the attention splits the width among the heads); else an input error."""
    for key, interval in OPTION_RANGES.items():
        value = config.get(key)
        if value is None or isinstance(value, (bool, str)):
            continue
        values = value if isinstance(value, list) else [value]
        if not values or not all(v in interval for v in values):
            what = "a non-empty list of values" if isinstance(value, list) else ""
            raise InvalidInputError(f"{learner} option {key} must be {what}{' ' if what else ''}{interval}, "
                                    f"not {value!r}")
    if "hidden" in config and "heads" in config and config["hidden"] % config["heads"]:
        raise InvalidInputError(f"{learner} option hidden ({config['hidden']}) must be a multiple of heads "
                                f"({config['heads']})")


# --------------------------------------------------------------------------- training helpers
def masked_row_pearson(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(rows,) Pearson correlation of pred and truth in each row, restricted to ``mask``; NaN for rows with
    < 2 entries or a constant side.

    Used as the early-stopping criterion: the within-task agreement the evaluation measures, vectorised.
    """
    m = mask.float()
    n = m.sum(1)
    ok = n >= 2
    pred, truth = torch.where(mask, pred, 0.0), torch.where(mask, truth, 0.0)  # NaN outside the mask
    mean_p = (pred * m).sum(1) / n.clamp(min=1)
    mean_t = (truth * m).sum(1) / n.clamp(min=1)
    dp = (pred - mean_p[:, None]) * m
    dt = (truth - mean_t[:, None]) * m
    denom = (dp.pow(2).sum(1) * dt.pow(2).sum(1)).sqrt()
    r = (dp * dt).sum(1) / denom.clamp(min=1e-12)
    ok = ok & (denom > 1e-12)
    return torch.where(ok, r, torch.nan).detach().double().numpy()


def one_standard_error_choice(candidates: list, values: Callable[[Any], np.ndarray],
                              groups: np.ndarray | None = None) -> Any:
    """One-standard-error rule over candidates ordered from simplest (e.g. the model prior) to most complex.

    ``values(c)``: the criterion on each case (NaN where undefined). The best candidate has the highest mean;
    the choice is the first candidate whose mean is within one standard error of the paired difference (case
    by case) from the best, so a more complex candidate must beat a simpler one by more than the case-to-case
    noise of the validation to be chosen. ``groups`` (one label per case, from a leave-one-group-out
    validation): the cases of a group share what was left out, so they are not independent; the means and
    the standard error are then taken over the groups' means (with 5 held-out domains, 5 values, not 200).
    """
    table = np.stack([values(c) for c in candidates])  # (candidates, cases)
    ok = np.isfinite(table).all(0)
    if not ok.any():
        return candidates[0]
    table = table[:, ok]
    if groups is not None:
        _, members = np.unique(np.asarray(groups)[ok], return_inverse=True)
        if members.max() > 0:
            sizes = np.bincount(members)
            table = np.stack([np.bincount(members, weights=row) / sizes for row in table])
    means = table.mean(1)
    best = int(np.argmax(means))
    diff = table[best][None] - table
    se = diff.std(1, ddof=1) / np.sqrt(table.shape[1]) if table.shape[1] > 1 else np.zeros(len(candidates))
    return candidates[int(np.flatnonzero(means >= means[best] - se - 1e-12)[0])]


#: with at least this many rankable training tasks, one held-back split validates the correction; with fewer,
#: every training task is validated once across ``VALIDATION_FOLDS`` folds (a split of a few tasks cannot tell a
#: correction from noise, and below ~8 tasks it would hold back none at all)
SINGLE_SPLIT_FROM = 40
VALIDATION_FOLDS = 5


def split_validation_tasks(accuracy: np.ndarray, fraction: float, seed: int, min_tasks: int = 8,
                           groups: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of training tasks held back for early stopping (cold-start style); none when too few tasks.

    ``groups`` (T,): hold back whole groups (in a seeded random order, until ``fraction`` of the tasks is
    reached, never every group), so that validation is as cold as a leave-one-group-out evaluation: a
    validation task has no training task of its own group.
    """
    rankable = np.flatnonzero(np.isfinite(accuracy).sum(1) >= 2)
    chosen = np.zeros(accuracy.shape[0], dtype=bool)
    n_val = int(round(fraction * rankable.size))
    if rankable.size < min_tasks or n_val < 1:
        return chosen
    rng = np.random.default_rng(seed)
    if groups is None:
        chosen[rng.choice(rankable, n_val, replace=False)] = True
        return chosen
    names = np.unique(groups[rankable])
    for name in rng.permutation(names)[: names.size - 1]:
        chosen[rankable[groups[rankable] == name]] = True
        if chosen.sum() >= n_val:
            break
    return chosen


def validation_folds(accuracy: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Masks of the training tasks held back to validate a learned correction, one per fold.

    ``SINGLE_SPLIT_FROM`` rankable tasks or more: one split of ``fraction`` of them (``split_validation_tasks``).
    Fewer: the rankable tasks (whole ``groups`` when given) are dealt into up to ``VALIDATION_FOLDS`` folds in a
    seeded order, so each is a validation case exactly once. No fold (the correction cannot be validated)
    with fewer than 3 rankable tasks or 2 groups.
    """
    rankable = np.flatnonzero(np.isfinite(accuracy).sum(1) >= 2)
    if rankable.size >= SINGLE_SPLIT_FROM:
        split = split_validation_tasks(accuracy, fraction, seed, groups=groups)
        return [split] if split.any() else []
    units = rankable if groups is None else np.unique(groups[rankable])
    if rankable.size < 3 or units.size < 2:
        return []
    order = np.random.default_rng(seed).permutation(units)
    folds = []
    for part in np.array_split(order, min(VALIDATION_FOLDS, units.size)):
        mask = np.zeros(accuracy.shape[0], dtype=bool)
        mask[part if groups is None else rankable[np.isin(groups[rankable], part)]] = True
        folds.append(mask)
    return folds


class Correctable(Protocol):
    """What ``train_validated`` drives: a learner whose network adds a learned correction to a base and
    predicts exactly the base before training."""

    net: torch.nn.Module

    def _new_net(self) -> None: ...  # a fresh, seeded, untrained network (= the base)

    def _train(self, val: np.ndarray, epochs: int, check: Callable[[], bool] | None) -> None: ...

    def _validate(self, val: np.ndarray) -> np.ndarray: ...  # per validation task criterion (NaN: undefined)


def train_validated(learner: Correctable, accuracy: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None,
                    epochs: int, eval_every: int, patience: int) -> None:
    """Train ``learner.net`` and keep the correction only where held-out training tasks show it beats the base.

    ``fraction <= 0``: no validation, the trained network is kept (an explicit choice). Otherwise, with the
    folds of ``validation_folds``: none -> the untrained network, i.e. the base (nothing shows the correction
    helps); one -> early stopping on it, the best state kept only beyond one standard error over the untrained
    one (``EarlyStopping``); several -> each fold trains with early stopping and records its validation curve,
    the number of epochs with the best mean over every validation task is chosen, and the network is
    retrained on all tasks for that long only if that beats the untrained state beyond one standard error
    of the per-task differences (``one_standard_error_choice``).
    """
    everything = np.zeros(accuracy.shape[0], dtype=bool)
    folds = validation_folds(accuracy, fraction, seed, groups) if fraction > 0 else []
    runs = 1 if fraction <= 0 or len(folds) == 1 else 0 if not folds else len(folds) + 1  # the last: the final fit
    report = getattr(learner, "progress", None)
    done = 0

    def stage_done() -> None:  # a run that stopped early counts as complete
        nonlocal done
        done = (done // epochs + 1) * epochs if epochs else done
        if report is not None:
            report(done, epochs * runs)

    def checked(checks: int) -> None:  # within a run: its validation checks so far, eval_every episodes each
        if report is not None:
            report(done + min(checks * eval_every, epochs), epochs * runs)

    learner._new_net()
    if fraction <= 0:
        learner._train(everything, epochs, None)
        return stage_done()
    if not folds:
        return
    if len(folds) == 1:
        stopper = EarlyStopping(learner.net, patience, None if groups is None else groups[folds[0]])
        stopper.update(learner._validate(folds[0]))
        checks = 0

        def check_single() -> bool:
            nonlocal checks
            checks += 1
            checked(checks)
            return stopper.update(learner._validate(folds[0]))

        learner._train(folds[0], epochs, check_single)
        stopper.restore()
        return stage_done()
    curves = []
    for val in folds:
        learner._new_net()
        curve = [learner._validate(val)]
        best, bad = -np.inf, 0

        def check() -> bool:
            nonlocal best, bad
            curve.append(learner._validate(val))
            checked(len(curve) - 1)
            value = float(np.nanmean(curve[-1])) if np.isfinite(curve[-1]).any() else -np.inf
            best, bad = (value, 0) if value > best + 1e-4 else (best, bad + 1)
            return bad >= patience

        learner._train(val, epochs, check)
        curves.append(curve)
        stage_done()
    checks = max(len(c) for c in curves)  # a fold that stopped early keeps its last state's values
    table = np.stack([np.concatenate([c[min(i, len(c) - 1)] for c in curves]) for i in range(checks)])
    means = np.asarray([np.nanmean(row) if np.isfinite(row).any() else -np.inf for row in table])
    best_check = int(np.argmax(means))
    case_groups = None if groups is None else np.concatenate([groups[val] for val in folds])
    chosen = one_standard_error_choice([0, best_check], lambda i: table[i], case_groups) if best_check else 0
    learner._new_net()
    if chosen:
        learner._train(everything, chosen * eval_every, None)
    stage_done()


class EarlyStopping:
    """Keeps the best state of a module by the mean of per-task validation values (higher is better); stops
    after ``patience`` checks without improvement.

    The first state recorded (the untrained network, which predicts its base) is the reference: ``restore``
    keeps the best trained state only if it beats the reference by more than one standard error of the
    per-task differences (``one_standard_error_choice``), so a correction that helps the validation tasks by
    less than their task-to-task noise is dropped.
    """

    def __init__(self, module: torch.nn.Module, patience: int, groups: np.ndarray | None = None):
        self.module, self.patience, self.groups = module, patience, groups  # groups: of the validation tasks
        self.best, self.best_state, self.bad = -np.inf, None, 0
        self.best_values: np.ndarray | None = None
        self.reference: tuple[dict, np.ndarray] | None = None

    def update(self, values: np.ndarray) -> bool:
        """Record the per-task validation values (NaN where undefined); returns True when training should stop."""
        value = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        state = None
        if self.reference is None:
            state = self._snapshot()
            self.reference = (state, values)
        if value > self.best + 1e-4:
            self.best, self.bad, self.best_values = value, 0, values
            self.best_state = state or self._snapshot()
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        if self.best_state is None:
            return
        reference_state, reference_values = self.reference
        trained = one_standard_error_choice([False, True], lambda t: self.best_values if t else reference_values,
                                            self.groups)
        self.module.load_state_dict(self.best_state if trained else reference_state)

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}


def task_zscores(accuracy: np.ndarray) -> np.ndarray:
    """Accuracy z-scored within each task (row) over its recorded models; NaN where undefined (< 2 records, or all equal)."""
    acc = accuracy.astype(np.float64)
    present = np.isfinite(acc)
    n = np.maximum(present.sum(1, keepdims=True), 1)
    mean = np.where(present, acc, 0.0).sum(1, keepdims=True) / n
    std = np.sqrt(np.where(present, (acc - mean) ** 2, 0.0).sum(1, keepdims=True) / n)
    usable = (present.sum(1, keepdims=True) >= 2) & (std > 0)
    return np.where(usable & present, (np.where(present, acc, 0.0) - mean) / np.where(usable, std, 1.0), np.nan)


def model_prior(accuracy: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model prior = mean within-task z-score of each model over the tasks (0 for a model with none).

    Returns (prior (M,), leave-one-task-out prior (T, M)): the second excludes task t's own record, so a
    learner that uses the prior as an input is not shown the label of the pair it is trained on.
    ``groups`` (T,): leave-one-group-out instead (task t's whole group is excluded).
    """
    z = task_zscores(accuracy)
    has = np.isfinite(z)
    values = np.where(has, z, 0.0)
    sums, counts = values.sum(0), has.sum(0)
    prior = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    if groups is None:
        own_sums, own_counts = values, has.astype(np.int64)
    else:
        _, group_of = np.unique(groups, return_inverse=True)
        member = np.eye(group_of.max() + 1)[group_of]  # (T, G) one-hot
        own_sums, own_counts = member @ (member.T @ values), (member @ (member.T @ has)).round().astype(np.int64)
    loo_counts = counts[None] - own_counts
    loo = np.where(loo_counts > 0, (sums[None] - own_sums) / np.maximum(loo_counts, 1), 0.0)
    return prior, loo
