"""A pool of many sampled tasks for training and evaluating the learned rankers, cut from cached features.

Model Spider trains on many sampled tasks with ground truth, not on ten. Here a pool task is a class subset
("ways") of a source task with a number of training images per class ("shots"), sampled from the zoo's
cached features of that source task: no image is read again and no model is run. Its ground truth is cheap:
each zoo model's linear-probe accuracy on the task (a logistic-regression head on the shots, C = 1, scored on
``test_per_class`` other images per class), and it carries what a learner reads about a task: metadata
(source, ways, shots), transferability scores of every model on the shots and the class prototypes of one
encoder's features.

Held-out pool tasks are sampled from source tasks that no training pool task comes from, so their classes or
domains are disjoint from training (``split_sources``). ``build_pool`` is resumable: each task's rows are
appended to ``pool_records.csv`` / ``pool_scores.csv`` as soon as they are computed, and a rerun skips the
tasks already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..features import FeatureSet


@dataclass(frozen=True)
class PoolTask:
    """One sampled task: ``classes`` (label ids of ``source``) with ``shots`` training images per class."""

    name: str
    source: str
    classes: tuple[int, ...]
    shots: int
    seed: int
    held_out: bool


def split_sources(sources: Sequence[str], held_out_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training sources, held-out sources): a seeded share of the source tasks (at least one, never all)."""
    if len(sources) < 2:
        raise InvalidInputError("a pool with held-out tasks needs at least 2 source tasks")
    order = list(np.random.default_rng(seed).permutation(sorted(sources)))
    n_held = min(max(1, round(held_out_fraction * len(order))), len(order) - 1)
    return sorted(order[n_held:]), sorted(order[:n_held])


def sample_pool_tasks(class_counts: Mapping[str, Mapping[int, int]], training: Sequence[str], held_out: Sequence[str],
                      n_train: int, n_held: int, seed: int, ways: Sequence[int] = (2, 3, 5),
                      shots: Sequence[int] = (5, 10, 20), test_per_class: int = 10, max_draws: int = 3) -> list[PoolTask]:
    """``n_train`` tasks from the ``training`` sources and ``n_held`` from the ``held_out`` ones.

    ``class_counts``: source -> {class id: images}; a class can be drawn with ``s`` shots only when it has
    ``s + test_per_class`` images. A draw that fits no class subset is redrawn (with other ways / shots); the same
    classes and shots are drawn at most ``max_draws`` times (each time other images). Task names encode the
    draw, so the same seed gives the same pool.
    """
    rng = np.random.default_rng(seed)
    tasks: dict[str, PoolTask] = {}
    for sources, count, held in ((list(training), n_train, False), (list(held_out), n_held, True)):
        made, attempts = 0, 0
        while made < count:
            attempts += 1
            if attempts > 50 * max(count, 1):
                raise InvalidInputError(f"cannot sample {count} distinct {'held-out' if held else 'training'} pool "
                                        f"tasks from {len(sources)} source task(s): too few classes or images")
            source = sources[rng.integers(len(sources))]
            n_shots = int(rng.choice(shots))
            usable = sorted(c for c, n in class_counts[source].items() if n >= n_shots + test_per_class)
            n_ways = int(rng.choice(ways))
            if len(usable) < max(n_ways, 2):
                continue
            classes = tuple(sorted(int(c) for c in rng.choice(usable, n_ways, replace=False)))
            stem = f"pool/{source.removeprefix('task/')}/c{'-'.join(map(str, classes))}/{n_shots}shot"
            draw = sum(name.startswith(stem + "/") for name in tasks)  # the same classes again: other images
            if draw >= max_draws:
                continue
            name = f"{stem}/{'held' if held else 'train'}{draw}"
            tasks[name] = PoolTask(name, source, classes, n_shots, int(rng.integers(2**31)), held)
            made += 1
    return list(tasks.values())


def task_split(labels: np.ndarray, task: PoolTask, test_per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, test rows, new labels 0..k-1 of all rows of the task's classes) for one pool task."""
    rng = np.random.default_rng(task.seed)
    train, test = [], []
    for c in task.classes:
        rows = rng.permutation(np.flatnonzero(labels == c))
        train.append(rows[: task.shots])
        test.append(rows[task.shots: task.shots + test_per_class])
    relabel = np.full(int(labels.max()) + 1, -1)
    relabel[list(task.classes)] = np.arange(len(task.classes))
    return np.concatenate(train), np.concatenate(test), relabel


def _rows(fs: FeatureSet, idx: np.ndarray, relabel: np.ndarray, name: str) -> FeatureSet:
    return FeatureSet(fs.features[idx], relabel[np.asarray(fs.labels)[idx]], model=fs.model, dataset=name)


def build_pool(features: Mapping[tuple[str, str], FeatureSet], tasks: Sequence[PoolTask], out_dir: str | Path,
               metrics: Sequence[str] = ("logme",), test_per_class: int = 10,
               progress: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Linear-probe truth and scores of every model with features on each task's source (resumable, see module
    docstring). Returns (records: dataset, model, accuracy, held_out; scores: dataset, model, metrics...)."""
    from ..finetune.linear import linear_probe
    from ..scoring import score_feature_sets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records_path, scores_path = out / "pool_records.csv", out / "pool_scores.csv"
    done = set(pd.read_csv(records_path)["dataset"]) if records_path.is_file() else set()
    models_of: dict[str, list[str]] = {}
    for model, source in features:
        models_of.setdefault(source, []).append(model)
    for i, task in enumerate(tasks):
        if task.name not in done:
            rows, sets = [], []
            for model in sorted(models_of.get(task.source, [])):
                fs = features[model, task.source]
                train, test, relabel = task_split(np.asarray(fs.labels), task, test_per_class)
                shots, held = _rows(fs, train, relabel, task.name), _rows(fs, test, relabel, task.name)
                probe = linear_probe(shots, shots, held, cs=(1.0,), refit=False)
                rows.append({"dataset": task.name, "model": model, "accuracy": probe.test_metric, "held_out": task.held_out})
                sets.append(shots)
            scores = score_feature_sets(sets, list(metrics))[["Dataset", "Model", *metrics]]
            scores = scores.rename(columns={"Dataset": "dataset", "Model": "model"})
            # scores first: a task counts as done once its records are written, so they go last
            scores.to_csv(scores_path, mode="a", header=not scores_path.is_file(), index=False)
            pd.DataFrame(rows).to_csv(records_path, mode="a", header=not records_path.is_file(), index=False)
        if progress is not None:
            progress(i + 1, len(tasks))
    records = pd.read_csv(records_path)
    scores = pd.read_csv(scores_path).drop_duplicates(["dataset", "model"], keep="last")
    return records, scores


def pool_records(features: Mapping[tuple[str, str], FeatureSet], tasks: Sequence[PoolTask], records: pd.DataFrame,
                 scores: pd.DataFrame, encoder: str, test_per_class: int = 10):
    """``Records`` of a built pool for the learners: metadata (source, ways, shots), scores, the ``encoder``'s class
    prototypes on each task's shots; ``info["held_out"]``: the held-out task names."""
    from ..spider import Records
    from ..spider.prototypes import prototypes_of

    by_name = {t.name: t for t in tasks}
    names = sorted(set(records["dataset"]) & set(by_name))
    prototypes = {}
    for name in names:
        task = by_name[name]
        fs = features[encoder, task.source]
        train, _, relabel = task_split(np.asarray(fs.labels), task, test_per_class)
        prototypes[name] = prototypes_of(_rows(fs, train, relabel, name))
    meta = pd.DataFrame({"source": [by_name[n].source for n in names], "ways": [len(by_name[n].classes) for n in names],
                         "shots": [by_name[n].shots for n in names]}, index=names)
    table = records[records["dataset"].isin(names)][["dataset", "model", "accuracy"]]
    return Records(table, task_meta=meta, scores=scores[scores["dataset"].isin(names)].reset_index(drop=True),
                   task_prototypes=prototypes, name="pool",
                   info={"encoder": encoder, "held_out": sorted(n for n in names if by_name[n].held_out)})
