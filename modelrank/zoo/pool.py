"""A pool of many sampled tasks for training and evaluating the learned rankers, cut from cached features.

Model Spider trains on many sampled tasks with ground truth, not on ten. Here a pool task is a class subset
("ways") of a source task with a number of training images per class ("shots"), sampled from the zoo's
cached features of that source task: no image is read again and no model is run. Its ground truth is cheap:
each zoo model's linear-probe accuracy on the task (a logistic-regression head on the shots, C = 1, scored on
``test_per_class`` other images per class, or all of them: the presets' choice, as scoring costs next to nothing
and ten images per class made the truth so noisy that two draws of the same classes and shots ranked the zoo
alike with weighted tau 0.13 on the demo zoo, 0.28 with all images), and it carries what a learner reads about a task: metadata
(source, ways, shots), transferability scores of every model on the shots and the class prototypes of one
encoder's features.

Held-out pool tasks are sampled from source tasks that no training pool task comes from and that share no
classes in one domain with a training source (``overlap_groups``, ``split_sources``). ``build_pool`` is resumable: each task's rows are
appended to ``pool_records.csv`` / ``pool_scores.csv`` as soon as they are computed, and a rerun skips the
tasks already there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..features import FeatureSet

if TYPE_CHECKING:
    from .tasks import DerivedSpec


@dataclass(frozen=True)
class PoolTask:
    """One sampled task: ``classes`` (label ids of ``source``) with ``shots`` training images per class."""

    name: str
    source: str
    classes: tuple[int, ...]
    shots: int
    seed: int
    held_out: bool


def overlap_groups(specs: Mapping[str, "DerivedSpec"]) -> dict[str, str]:
    """Source task -> group: tasks cut from the same base dataset in the same domain (shift) with a class in common
    may share classes and images in one domain, so they go to the same side of ``split_sources`` (transitively)."""
    names = sorted(specs)
    group = {name: name for name in names}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = specs[a], specs[b]
            shared = x.classes is None or y.classes is None or bool(set(x.classes) & set(y.classes))
            if x.base == y.base and x.shift == y.shift and shared:
                group[root(b)] = root(a)
    return {name: root(name) for name in names}


def split_sources(sources: Sequence[str], held_out_fraction: float, seed: int,
                  groups: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(training sources, held-out sources): a seeded share of the source tasks (at least one, never all).

    ``groups`` (source -> group, e.g. ``overlap_groups``): sources of one group are held out together or not at all,
    so no held-out task shares classes in the same domain with a training task."""
    group_of = dict(groups) if groups is not None else {s: s for s in sources}
    keys = sorted({group_of[s] for s in sources})
    if len(keys) < 2:
        raise InvalidInputError("a pool with held-out tasks needs source tasks of at least 2 groups "
                                "(different datasets, domains or classes)")
    wanted = max(1, round(held_out_fraction * len(sources)))
    held: list[str] = []
    for k in np.random.default_rng(seed).permutation(len(keys))[: len(keys) - 1]:  # never every group
        if len(held) >= wanted:
            break
        held += [s for s in sources if group_of[s] == keys[k]]
    return sorted(set(sources) - set(held)), sorted(held)


def sample_pool_tasks(class_counts: Mapping[str, Mapping[int, int]], training: Sequence[str], held_out: Sequence[str],
                      n_train: int, n_held: int, seed: int, ways: Sequence[int] = (2, 3, 5),
                      shots: Sequence[int] = (5, 10, 20), test_per_class: int | None = 10,
                      max_draws: int = 3) -> list[PoolTask]:
    """``n_train`` tasks from the ``training`` sources and ``n_held`` from the ``held_out`` ones.

    ``class_counts``: source -> {class id: images}; a class can be drawn with ``s`` shots only when it has
    ``s + test_per_class`` images (``s + 1`` with ``test_per_class=None``: every other image is a test image). A
    draw that fits no class subset is redrawn (with other ways / shots); the same classes and shots are drawn at
    most ``max_draws`` times (each time other images). Task names encode the draw, so the same seed gives the
    same pool.
    """
    rng = np.random.default_rng(seed)
    tasks: dict[str, PoolTask] = {}
    for sources, count, held in ((list(training), n_train, False), (list(held_out), n_held, True)):
        # Refused at once when more tasks are asked than distinct draws exist (the draws below would never end):
        # per source, shots and ways, the class subsets a draw can take (as below: usable >= max(ways, 2)).
        usable = {(source, s): sum(n >= s + (test_per_class or 1) for n in class_counts[source].values())
                  for source in set(sources) for s in set(shots)}
        distinct = max_draws * sum(math.comb(u, w) for u in usable.values() for w in set(ways) if u >= max(w, 2))
        if count > distinct:
            raise InvalidInputError(f"cannot sample {count} distinct {'held-out' if held else 'training'} pool tasks "
                                    f"from {len(sources)} source task(s): at most {distinct} exist")
        made, attempts = 0, 0
        while made < count:
            attempts += 1
            if attempts > 50 * max(count, 1):
                raise InvalidInputError(f"cannot sample {count} distinct {'held-out' if held else 'training'} pool "
                                        f"tasks from {len(sources)} source task(s): too few classes or images")
            source = sources[rng.integers(len(sources))]
            n_shots = int(rng.choice(shots))
            usable = sorted(c for c, n in class_counts[source].items() if n >= n_shots + (test_per_class or 1))
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


def task_split(labels: np.ndarray, task: PoolTask, test_per_class: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, test rows, new labels 0..k-1 of all rows of the task's classes) for one pool task; the test rows
    are ``test_per_class`` other images per class (None: all of them)."""
    rng = np.random.default_rng(task.seed)
    train, test = [], []
    for c in task.classes:
        rows = rng.permutation(np.flatnonzero(labels == c))
        train.append(rows[: task.shots])
        test.append(rows[task.shots:][:test_per_class])
    relabel = np.full(int(labels.max()) + 1, -1)
    relabel[list(task.classes)] = np.arange(len(task.classes))
    return np.concatenate(train), np.concatenate(test), relabel


def _rows(fs: FeatureSet, idx: np.ndarray, relabel: np.ndarray, name: str) -> FeatureSet:
    return FeatureSet(fs.features[idx], relabel[np.asarray(fs.labels)[idx]], model=fs.model, dataset=name)


def _cut_torn_line(path: Path) -> None:
    """Drop a last line that a killed run left without its newline (appending after it would run two rows
    together); the task it belonged to has incomplete records and is computed again."""
    if path.is_file():
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)


def _append_rows(frame: pd.DataFrame, path: Path) -> None:
    """Append ``frame`` to a CSV in one write (the header when the file is new or empty)."""
    text = frame.to_csv(index=False, header=not path.is_file() or path.stat().st_size == 0)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def _read_rows(path: Path, complete: bool) -> pd.DataFrame:
    """A pool CSV, the last copy of each (dataset, model) row kept; ``complete``: without rows that miss a field."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["dataset", "model"])
    frame = pd.read_csv(path)
    frame = frame.dropna() if complete else frame.dropna(subset=["dataset", "model"])
    return frame.drop_duplicates(["dataset", "model"], keep="last").reset_index(drop=True)


def build_pool(features: Mapping[tuple[str, str], FeatureSet], tasks: Sequence[PoolTask], out_dir: str | Path,
               metrics: Sequence[str] = ("logme",), test_per_class: int | None = 10,
               progress: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Linear-probe truth and scores of every model with features on each task's source (resumable, see module
    docstring: a task counts as done when its records cover exactly the models that have features on its source).
    Returns (records: dataset, model, accuracy, held_out; scores: dataset, model, metrics...) of every task in the
    folder, ``tasks`` and those of earlier runs."""
    from ..finetune.linear import linear_probe
    from ..scoring import score_feature_sets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records_path, scores_path = out / "pool_records.csv", out / "pool_scores.csv"
    recorded = _recorded_models(out)
    models_of: dict[str, list[str]] = {}
    for model, source in features:
        models_of.setdefault(source, []).append(model)
    for i, task in enumerate(tasks):
        models = sorted(models_of.get(task.source, []))
        if models and recorded.get(task.name) != frozenset(models):
            rows, sets = [], []
            for model in models:
                fs = features[model, task.source]
                train, test, relabel = task_split(np.asarray(fs.labels), task, test_per_class)
                shots, held = _rows(fs, train, relabel, task.name), _rows(fs, test, relabel, task.name)
                probe = linear_probe(shots, shots, held, cs=(1.0,), refit=False)
                rows.append({"dataset": task.name, "model": model, "accuracy": probe.test_metric, "held_out": task.held_out})
                sets.append(shots)
            scores = score_feature_sets(sets, list(metrics))[["Dataset", "Model", *metrics]]
            # scores first: a task counts as done once its records are written, so they go last
            _append_rows(scores.rename(columns={"Dataset": "dataset", "Model": "model"}), scores_path)
            _append_rows(pd.DataFrame(rows), records_path)
        if progress is not None:
            progress(i + 1, len(tasks))
    return read_pool(out)


def _recorded_models(out: Path) -> pd.Series:
    """Task name -> the models its complete records cover, after cutting the lines a killed run tore."""
    for name in ("pool_records.csv", "pool_scores.csv"):
        _cut_torn_line(out / name)
    return _read_rows(out / "pool_records.csv", complete=True).groupby("dataset")["model"].agg(frozenset)


def unfinished_tasks(tasks: Sequence[PoolTask], out_dir: str | Path, models: Sequence[str]) -> list[PoolTask]:
    """The ``tasks`` that ``build_pool`` would compute for ``models`` (so that a caller loads only their features)."""
    recorded = _recorded_models(Path(out_dir))
    return [t for t in tasks if recorded.get(t.name) != frozenset(models)]


def read_pool(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, scores) of every task built in ``out_dir`` (see ``build_pool``)."""
    out = Path(out_dir)
    return _read_rows(out / "pool_records.csv", complete=True), _read_rows(out / "pool_scores.csv", complete=False)


def pool_records(features: Mapping[tuple[str, str], FeatureSet], tasks: Sequence[PoolTask], records: pd.DataFrame,
                 scores: pd.DataFrame, encoder: str, test_per_class: int | None = 10):
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


def base_of(kind: str, config: Mapping[str, object]) -> str | None:
    """The learner that a learned ranker corrects, which it must not fall below: task attention's all-zero grid
    point is the model prior; graph and Spider add a correction to their ``prior`` option's base."""
    if kind == "task_attention":
        return "model_prior"
    from ..spider import LEARNERS

    prior = {**LEARNERS.get(kind).defaults, **config}.get("prior")
    return {"attention": "task_attention", "model": "model_prior"}.get(str(prior))


POOL_PROTOCOLS = ("cold_start", "partial")


def evaluate_pool(pool, learners: Mapping[str, tuple[str, dict]], k_observed: int = 3, seed: int = 0,
                  tau_protocol: str = "model_spider",
                  progress: Callable[[str, int, int], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every learner fitted on the training pool tasks, measured on the held-out ones (``pool.info["held_out"]``),
    cold start and with ``k_observed`` models observed (``spider.protocols.evaluate``).

    ``learners``: row name -> (registered learner, options); a ``model_prior`` row and ``metric`` rows (one per
    score column: the single metrics) are the references. Returns (per task: learner, task, protocol, measures;
    comparison: one row per learner, protocol and reference it is paired with: the model prior, the best single
    metric on these held-out tasks (the strongest one, chosen after the fact) and the learner's own base
    (``base_of``): mean difference of weighted tau ± standard error over tasks, wins / losses and the verdict,
    "beats" / "loses" only beyond 2 standard errors (``paired_difference``)."""
    from ..spider import make_learner
    from ..spider.protocols import evaluate, paired_difference

    held = list(pool.info["held_out"])
    per_task = []
    for i, (row, (kind, config)) in enumerate(learners.items()):
        if progress is not None:
            progress(row, i, len(learners))
        result = evaluate(lambda: make_learner(kind, **config), pool, POOL_PROTOCOLS, [held], k_observed, seed,
                          tau_protocol)
        part = result.per_task[result.per_task["protocol"].isin(POOL_PROTOCOLS)]
        per_task.append(part.assign(learner=row, fit_s=sum(result.fit_seconds)))
    if progress is not None:
        progress("done", len(learners), len(learners))
    per_task = pd.concat(per_task, ignore_index=True)
    metric_rows = [row for row, (kind, _) in learners.items() if kind == "metric"]
    rows = []
    for protocol, group in per_task.groupby("protocol", sort=False):
        means = group.groupby("learner", sort=False)["weighted_tau"].mean()
        best_metric = means[metric_rows].idxmax() if metric_rows and means[metric_rows].notna().any() else None
        for row, (kind, config) in learners.items():
            base = next((r for r, (k, _) in learners.items() if k == base_of(kind, config)), None)
            roles: dict[str, list[str]] = {}  # reference -> its roles (the model prior can be the base too)
            for role, reference in (("model prior", "model_prior"), ("best metric", best_metric), ("base", base)):
                if reference not in (None, row):
                    roles.setdefault(reference, []).append(role)
            for reference, role in roles.items():
                paired = paired_difference(group, row, reference, "weighted_tau")
                if paired is not None:
                    rows.append({"learner": row, "protocol": protocol, "weighted_tau": means[row], "versus": reference,
                                 "role": ", ".join(role), **paired})
    return per_task, pd.DataFrame(rows)
