"""`modelrank benchmark`: every (zoo model x target task) through extract → score → fine-tune → evaluate.

Stages, each reusing the cache so that a rerun after an interruption does only what is missing:

1. ``zoo`` — ``build_zoo`` (skips finished models, resumes an interrupted one);
2. ``extract`` — features of every zoo model on every task into the feature cache (missing chunks only);
3. ``score`` — every metric on every (model, task) (``score_feature_sets``); one CSV per task under
   ``<out>/scores/``, reused when it holds the same models (by weights, not only names) and metrics;
4. ``finetune`` — ground truth: a linear probe per (model, task) for each of ``probe_seeds`` train/val/test
   split seeds (``run_probes``: each run goes to the cache's records table as it finishes, and a recorded run
   is skipped); with ``task_finetuning``, fine-tuning too (``finetune_full``, recorded as protocol "full");
5. ``evaluate`` — weighted Kendall's tau of every metric against the ground truth on every task (Model
   Spider's convention), the mean over tasks and each metric's seconds: the Model Spider-style table;
6. ``pool`` — the preset's pool of sampled tasks (``modelrank.zoo.pool``, ``Preset.pool``): class subsets x shots
   of the target tasks cut from their cached features, linear-probe truth and scores per task (resumable:
   ``<out>/pool/pool_records.csv``), held-out tasks from target tasks that no training task shares classes and a
   domain with;
7. ``pool_eval`` — the learned rankers trained on the training pool tasks and compared on the held-out ones with
   the model prior, the best single metric and their own base (``evaluate_pool``; ``<out>/pool/comparison.csv``).

Sanity of the benchmark itself (``sanity.csv``): per task, the spread of the ground truth across models against
its seed-to-seed noise (the std over probe seeds), and which model is best.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..cache import atomic_write, atomic_write_bytes, cache_root
from ..progress import ProgressFn, epoch_reporter, report
from .presets import PoolConfig, Preset, get_preset

STAGES = ("zoo", "extract", "score", "finetune", "evaluate", "pool", "pool_eval")
PROBE_COLUMNS = ["dataset", "model", "protocol", "seed", "accuracy", "val_accuracy", "seconds"]
#: on_stage(stage, message) reports progress in words; the CLI prints it.
StageFn = Callable[[str, str], None]


@dataclass
class BenchmarkResult:
    preset: str
    out_dir: Path
    #: metrics x (tasks, mean, weighted_mean, s/task, ranked): weighted tau against the linear-probe ground truth
    table: pd.DataFrame
    scores: pd.DataFrame
    #: dataset, model, accuracy (mean over probe seeds), accuracy_std, protocol: what `spider` trains on
    records: pd.DataFrame
    sanity: pd.DataFrame
    zoo: pd.DataFrame
    tasks: pd.DataFrame
    stage_seconds: dict[str, float]
    #: the same table against full fine-tuning, when the preset fine-tunes
    full_table: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    #: the pool stage's tasks (name, source, classes, shots, held_out) and held-out comparison (``evaluate_pool``)
    pool_tasks: pd.DataFrame | None = None
    pool_table: pd.DataFrame | None = None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _features(models: list[str], task: str, cache_dir, data_root) -> list:
    from ..extraction import load_feature_pairs

    loaded = load_feature_pairs([(m, task) for m in models], "all", cache_dir=cache_dir, data_root=data_root,
                                extract_missing=False)
    return [loaded[m, task] for m in models]


def _write_csv(frame: pd.DataFrame, path: Path, **options: Any) -> None:
    """A result CSV renamed into place once complete (a kill never leaves a truncated table behind)."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, **options))


def _score_task(preset: Preset, models: list[str], task: str, out: Path, features: Callable[[], list],
                cache_dir=None, progress: ProgressFn | None = None) -> pd.DataFrame:
    from ..models import weights_fingerprint
    from ..scoring import check_metric_request, score_feature_sets, scoring_reporter

    from .tasks import DERIVED

    path = out / "scores" / f"{_safe(task)}.csv"
    wanted = list(preset.metrics) if not isinstance(preset.metrics, str) else None
    definition = json.loads(json.dumps(DERIVED[task].metadata()))
    # The models' weights, not only their names: a rebuilt zoo (another device, other settings) has new weights
    # under the same names, and their scores must not be reused.
    weights = {model: weights_fingerprint(model, cache_dir) for model in models}
    if path.is_file() and path.with_suffix(".json").is_file():
        cached = pd.read_csv(path)
        stored = json.loads(path.with_suffix(".json").read_text())
        same_task = stored.get("task") == definition and stored.get("weights") == weights
        same_models = sorted(cached["Model"]) == sorted(models)
        same_metrics = wanted is None or all(m in cached.columns for m in wanted)
        if same_task and same_models and same_metrics:
            return cached
    specs, _ = check_metric_request(preset.metrics, {})
    sets = features()
    frame = score_feature_sets(sets, preset.metrics, progress=scoring_reporter(progress, len(sets), len(specs)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Both files are the resume cache of this stage: written whole or not at all, the CSV last.
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(
        {"higher_is_better": frame.attrs["higher_is_better"], "notes": frame.attrs["notes"], "task": definition,
         "weights": weights}, indent=1).encode())
    _write_csv(frame, path, index=False)
    return frame


def _linear_probes(preset: Preset, features: Callable[[], list], cache_dir,
                   progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Linear probes of every model on ``task``, one per split seed, through the records table (resumable)."""
    from ..finetune import job_from_features, run_probes

    jobs = [job_from_features(fs, seed=seed) for fs in features() for seed in range(preset.probe_seeds)]
    return run_probes(jobs, protocol="linear", cache_dir=cache_dir, progress=progress)


def _full_finetunes(preset: Preset, models: list[str], task: str, out: Path, device, cache_dir, data_root,
                    progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Fine-tune every model on ``task``'s train split and test on its test split; recorded as protocol "full"."""
    from dataclasses import asdict

    from ..finetune.full import finetune_full
    from ..finetune.records import append_record, make_record, read_records, record_key
    from ..finetune.sweep import content_params

    config = preset.task_finetuning
    recorded = read_records(cache_dir).set_index("key", drop=False)
    records = []
    for index, model in enumerate(models):
        # The weights' fingerprint in the key: a rebuilt zoo model is fine-tuned again, not taken for its old run.
        params = {**asdict(config), "split": "train/test", **content_params(model, task, cache_dir)}
        key = record_key(task, model, "full", params)
        if key in recorded.index:
            records.append(recorded.loc[key].to_dict())
            continue
        report(progress, "models", f"fine-tuning {model} on {task}", index, len(models))
        result = finetune_full(model, task, split="train", test_split="test", config=config, device=device,
                               checkpoint_dir=out / "full" / _safe(model) / _safe(task), keep_weights=False,
                               data_root=data_root, progress=epoch_reporter(progress, f"{model}: epochs", config.epochs))
        record = make_record(
            dataset=task, model=model, protocol="full", params=params, metric="accuracy",
            selected={"best_epoch": result.best_epoch}, val_metric=result.val_accuracy, test_metric=result.test_accuracy,
            n_train=result.n_train, n_val=result.n_val, n_test=result.n_test, iterations=result.epochs_run,
            seconds=result.seconds, val_curve=[h["val_accuracy"] for h in result.history],
        )
        append_record(record, cache_dir)
        records.append(record)
    return records


def _probe_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [[r["dataset"], r["model"], r["protocol"], json.loads(r["params"]).get("seed", 0), r["test_metric"],
             r["val_metric"], r["seconds"]] for r in records]
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def ground_truth(probes: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Records (dataset, model, accuracy = mean over seeds, accuracy_std, n_seeds, protocol) of one protocol."""
    part = probes[probes["protocol"] == protocol]
    grouped = part.groupby(["dataset", "model"], sort=False)["accuracy"]
    table = grouped.agg(accuracy="mean", accuracy_std=lambda a: a.std(ddof=1) if len(a) > 1 else np.nan,
                        n_seeds="count").reset_index()
    return table.assign(protocol=protocol)


def sanity_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Per task: do the models' ground-truth accuracies differ by more than the seed-to-seed noise?

    Every split seed probes all models on the same train/val/test split, so the accuracies form a models x
    seeds table with no replication; a two-way ANOVA separates the model effect from the noise (the model x
    seed interaction: how much a model's accuracy moves relative to the others when only the split changes).
    ``spread``: std over models of the seed-averaged accuracy; ``seed_std``: mean over models of the std over
    seeds; ``noise``: the interaction std divided by sqrt(seeds), the noise left in a seed average;
    ``f_stat`` / ``p_value``: the ANOVA F test of "all models equal"; ``gap_best_second``: best minus
    second-best model; ``best_model``: every model tied for the best accuracy (``", "``-separated).
    """
    from scipy import stats

    from ..evaluate.ties import tie_groups

    part = probes[probes["protocol"] == "linear"]
    rows = []
    for task, cell in part.groupby("dataset", sort=False):
        table = cell.pivot_table(index="model", columns="seed", values="accuracy").dropna(axis=1)
        acc = table.to_numpy(dtype=np.float64)
        n_models, n_seeds = acc.shape
        means = pd.Series(acc.mean(axis=1), index=table.index).sort_values(ascending=False)
        # Models tied for the best (the tie rule of `evaluate`) are all named: the one the sort put first is no winner.
        groups = tie_groups(means.to_numpy())
        row = {"task": task, "models": n_models, "seeds": n_seeds,
               "best_model": ", ".join(means.index[groups == groups.max()]),
               "best_accuracy": float(means.iloc[0]), "worst_accuracy": float(means.iloc[-1]),
               "gap_best_second": float(means.iloc[0] - means.iloc[1]) if n_models > 1 else np.nan,
               "spread": float(means.std(ddof=1)) if n_models > 1 else np.nan,
               "seed_std": float(acc.std(axis=1, ddof=1).mean()) if n_seeds > 1 else np.nan,
               "noise": np.nan, "f_stat": np.nan, "p_value": np.nan}
        if n_models > 1 and n_seeds > 1:
            residual = acc - acc.mean(axis=1, keepdims=True) - acc.mean(axis=0, keepdims=True) + acc.mean()
            interaction = (residual**2).sum() / ((n_models - 1) * (n_seeds - 1))
            row["noise"] = float(np.sqrt(interaction / n_seeds))
            if interaction > 0:
                row["f_stat"] = float(n_seeds * acc.mean(axis=1).var(ddof=1) / interaction)
                row["p_value"] = float(stats.f.sf(row["f_stat"], n_models - 1, (n_models - 1) * (n_seeds - 1)))
        rows.append(row)
    return pd.DataFrame(rows)


def metric_table(scores: pd.DataFrame, truth: pd.DataFrame, higher_is_better: dict[str, bool]) -> tuple[pd.DataFrame, list[str]]:
    """Metrics x (tasks, mean, weighted_mean, s/task, ranked): weighted tau (Model Spider's convention) per task.

    A metric whose scores are all tied on a task (constant), or saturated for all models but at most one, gives no
    ranking there: NaN, left out of its means, and ``ranked`` says on how many tasks it did rank ("2 of 3"); the
    reasons join the warnings."""
    from ..evaluate.evaluation import evaluate, measure_label

    metrics = [m for m in higher_is_better if m in scores.columns and scores[m].notna().any()]
    # Long layout without the cells a metric could not score (they are explained in scores/<task>.json notes).
    long = scores.melt(id_vars=["Dataset", "Model"], value_vars=metrics, var_name="method", value_name="score")
    # with each score's flags: a metric saturated for all models on a task (or all but one) does not rank them
    flags = scores.reindex(columns=[f"{m}_flags" for m in metrics]).fillna("").astype(str)
    long["flags"] = flags.to_numpy().ravel(order="F")
    long = long.dropna(subset=["score"]).rename(columns={"Dataset": "dataset", "Model": "model"})
    evaluation = evaluate(long, truth[["dataset", "model", "accuracy"]], measures=["weighted"], protocol="model_spider",
                          lower_is_better=[m for m in metrics if not higher_is_better[m]])
    table = evaluation.table(measure_label("weighted", "model_spider"))
    n_tasks = scores["Dataset"].nunique()
    seconds = {m: float(scores[f"{m}_seconds"].sum()) / n_tasks for m in metrics if f"{m}_seconds" in scores}
    table["s/task"] = pd.Series(seconds)
    table["ranked"] = evaluation.ranked_tasks()  # tasks where the metric's scores are not all tied
    table.index.name = "metric"
    notes = [f"{m} / {d}: no ranking, {reason}" for m, d, reason in evaluation.no_ranking.itertuples(index=False)]
    return table, notes + evaluation.warnings


def pool_encoder(models: list[str]) -> str:
    """The model whose class prototypes describe a pool task to the learners: an ImageNet original when the zoo has
    one (not fine-tuned on any source), else the first model."""
    return next((m for m in models if m.endswith("-imagenet")), models[0])


def _class_counts(labels) -> dict[int, int]:
    return dict(zip(*np.unique(np.asarray(labels), return_counts=True)))


def _sample_pool(config: PoolConfig, targets: Sequence[str], counts: dict[str, dict[int, int]]) -> list:
    """The pool's tasks (``PoolTask``), given each target task's images per class (target -> {class: images})."""
    from .pool import overlap_groups, sample_pool_tasks, split_sources
    from .tasks import DERIVED

    training, held = split_sources(list(targets), config.held_out_fraction, config.seed,
                                   overlap_groups({t: DERIVED[t] for t in targets}))
    return sample_pool_tasks(counts, training, held, config.train_tasks, config.held_out_tasks, config.seed,
                             config.ways, config.shots, config.test_per_class, config.max_draws)


def build_benchmark_pool(config: PoolConfig, models: list[str], targets: Sequence[str], folder: Path, cache_dir=None,
                         data_root=None, progress: ProgressFn | None = None) -> tuple[pd.DataFrame, Any]:
    """The ``pool`` stage: sample ``config``'s pool from the benchmark's target tasks, whose features of every model
    are cached, and build it in ``folder`` (resumable); returns (pool tasks, ``Records`` for the learners)."""
    from dataclasses import asdict

    from .pool import build_pool, pool_records, read_pool, unfinished_tasks

    folder.mkdir(parents=True, exist_ok=True)
    # A pool built with other settings or another zoo is not resumed: its rows would mix two definitions.
    definition = json.dumps({**{k: v for k, v in asdict(config).items() if k != "learners"}, "models": models},
                            sort_keys=True)
    stamp = folder / "pool.json"
    if not stamp.is_file() or stamp.read_text() != definition:
        for name in ("pool_records.csv", "pool_scores.csv", "comparison.json"):
            (folder / name).unlink(missing_ok=True)
        atomic_write_bytes(stamp, definition.encode())
    encoder = pool_encoder(models)
    encoded = {(encoder, t): _features([encoder], t, cache_dir, data_root)[0] for t in targets}
    tasks = _sample_pool(config, targets, {t: _class_counts(encoded[encoder, t].labels) for t in targets})
    task_table = pd.DataFrame([{"task": t.name, "source": t.source, "classes": " ".join(map(str, t.classes)),
                                "shots": t.shots, "held_out": t.held_out} for t in tasks])
    _write_csv(task_table, folder / "tasks.csv", index=False)
    pending = {t.source for t in unfinished_tasks(tasks, folder, models)}  # a finished source's features stay unread
    finished = 0
    for source in targets:  # one target task's features in memory at a time
        of_source = [t for t in tasks if t.source == source]
        if source in pending:
            features = dict(zip(((m, source) for m in models), _features(models, source, cache_dir, data_root)))
            build_pool(features, of_source, folder, config.metrics, config.test_per_class,
                       progress=lambda i, n, before=finished: report(progress, "pool", "pool tasks", before + i, len(tasks)))
        finished += len(of_source)
        report(progress, "pool", "pool tasks", finished, len(tasks))
    records, scores = read_pool(folder)
    return task_table, pool_records(encoded, tasks, records, scores, encoder, config.test_per_class)


def _pool_stage(config: PoolConfig, models: list[str], targets: tuple[str, ...], out: Path, cache_dir, data_root,
                timed: Callable, say: StageFn, progress: ProgressFn | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stages ``pool`` and ``pool_eval`` (see the module docstring). Returns (pool tasks, held-out comparison)."""
    from .pool import evaluate_pool

    done = timed("pool")
    folder = out / "pool"
    say("pool", f"{config.train_tasks} training + {config.held_out_tasks} held-out tasks sampled from the target "
                f"tasks, linear probes of {len(models)} models on cached features")
    task_table, pool = build_benchmark_pool(config, models, targets, folder, cache_dir, data_root, progress)
    done()

    done = timed("pool_eval")
    learners = {"model_prior": ("model_prior", {}), **{f"metric:{m}": ("metric", {"column": m}) for m in config.metrics},
                **config.learners}
    held = task_table[task_table["held_out"]]
    say("pool_eval", f"{', '.join(learners)} trained on {len(task_table) - len(held)} pool tasks, compared on "
                     f"{len(held)} held-out ones (from {', '.join(sorted(set(held['source'])))})")
    # The evaluation is deterministic given the pool, the tasks and the learners: a finished one is reused.
    evaluated = json.dumps({"pool": json.loads((folder / "pool.json").read_text()), "learners": learners, "tasks": sorted(pool.record_tasks)},
                           sort_keys=True)
    stamp = folder / "comparison.json"
    if stamp.is_file() and stamp.read_text() == evaluated and (folder / "comparison.csv").is_file():
        table = pd.read_csv(folder / "comparison.csv")
    else:
        per_task, table = evaluate_pool(pool, learners, config.k_observed, config.seed,
                                        progress=lambda row, i, n: report(progress, "pool", f"fitting {row}", i, n))
        _write_csv(per_task, folder / "per_task.csv", index=False)
        _write_csv(table, folder / "comparison.csv", index=False)
        atomic_write_bytes(stamp, evaluated.encode())  # last: it vouches for the two tables
    done()
    return task_table, table


def run_benchmark(
    preset: str | Preset,
    *,
    cache_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    data_root: str | None = None,
    on_stage: StageFn | None = None,
    zoo_events=None,
    progress: ProgressFn | None = None,
    pool_tasks: int | None = None,
) -> BenchmarkResult:
    """Run (or finish) a preset's benchmark; results go to ``out_dir`` (default ``<cache>/benchmark/<preset>``).

    ``pool_tasks``: training tasks of the pool stage (None: the preset's; 0: no pool stage).

    ``on_stage(stage, message)`` hears each step in words; ``progress`` shows the stage k/5 (row "benchmark")
    and the work inside it (the rows of ``build_zoo``, ``extract``, scoring, ``run_probes``, fine-tuning).
    """
    from ..data import load_dataset
    from ..extraction import extract
    from .build import build_zoo
    from .tasks import DERIVED

    preset = get_preset(preset) if isinstance(preset, str) else preset
    cache_dir = str(cache_dir) if cache_dir else None
    out = Path(out_dir) if out_dir else cache_root(cache_dir) / "benchmark" / preset.name
    fine_tuned = [t for t in preset.tasks if preset.task_finetuning is not None
                  and (preset.finetune_tasks is None or t in preset.finetune_tasks)]
    pool = preset.pool
    if pool is not None and pool_tasks is not None:
        pool = replace(pool, train_tasks=pool_tasks) if pool_tasks > 0 else None
    # zoo, extract/score/probe per task, fine-tune, evaluate, pool, pool_eval
    steps = 2 + 3 * len(preset.tasks) + len(fine_tuned) + (2 if pool is not None else 0)
    step = 0

    def say(stage: str, message: str) -> None:
        nonlocal step
        report(progress, "benchmark", f"{stage}: {message}", step, steps)
        step += 1
        if on_stage:
            on_stage(stage, message)

    seconds: dict[str, float] = {}  # wall time per stage, keyed by STAGES

    def timed(stage: str):
        start = time.perf_counter()
        return lambda: seconds.__setitem__(stage, round(seconds.get(stage, 0.0) + time.perf_counter() - start, 2))

    # The target tasks are read first: a pool larger than their classes and images allow is refused before any
    # work, not after every other stage.
    task_rows, counts = [], {}
    for task in preset.tasks:
        data = load_dataset(task, "all", root=data_root)
        spec = DERIVED[task]
        task_rows.append({"task": task, "base": spec.base, "domain": spec.shift, "classes": len(data.class_names),
                          "samples": len(data), "class_names": ", ".join(data.class_names)})
        counts[task] = _class_counts(data.targets)
    if pool is not None:
        _sample_pool(pool, preset.tasks, counts)
    out.mkdir(parents=True, exist_ok=True)

    done = timed("zoo")
    say("zoo", f"building zoo/{preset.name}: {len(preset.archs)} architectures x {len(preset.sources)} sources")
    zoo = build_zoo(preset, cache_dir=cache_dir, device=device, data_root=data_root, on_event=zoo_events,
                    progress=progress)
    models = sorted(zoo["name"])
    done()

    done = timed("extract")
    for task in preset.tasks:
        say("extract", f"{len(models)} models on {task}")
        extract(models, task, "all", batch_size=preset.extract_batch, device=device, cache_dir=cache_dir,
                data_root=data_root, progress=progress)
    done()
    tasks = pd.DataFrame(task_rows)
    _write_csv(tasks, out / "tasks.csv", index=False)
    _write_csv(zoo, out / "zoo.csv", index=False)

    # Score and fine-tune task by task, so that only one task's features are held in memory.
    frames, runs = [], []
    for task in preset.tasks:
        loaded: list = []

        def features(task: str = task, loaded: list = loaded) -> list:
            if not loaded:
                loaded.extend(_features(models, task, cache_dir, data_root))
            return loaded

        done = timed("score")
        say("score", f"{'all metrics' if preset.metrics == 'all' else ', '.join(preset.metrics)} on {task}")
        frames.append(_score_task(preset, models, task, out, features, cache_dir, progress))
        done()
        done = timed("finetune")
        say("finetune", f"linear probes ({preset.probe_seeds} seeds) on {task}")
        runs += _linear_probes(preset, features, cache_dir, progress)
        if task in fine_tuned:
            say("finetune", f"fine-tuning {len(models)} models on {task}")
            runs += _full_finetunes(preset, models, task, out, device, cache_dir, data_root, progress)
        done()
    scores = pd.concat(frames, ignore_index=True)
    _write_csv(scores, out / "scores.csv", index=False)
    higher: dict[str, bool] = {}
    for task in preset.tasks:
        higher.update(json.loads((out / "scores" / f"{_safe(task)}.json").read_text())["higher_is_better"])
    probes = _probe_rows(runs)
    _write_csv(probes, out / "probes.csv", index=False)
    records = ground_truth(probes, "linear")
    full_records = ground_truth(probes, "full") if preset.task_finetuning is not None else None
    _write_csv(pd.concat([records, full_records]), out / "records.csv", index=False)

    done = timed("evaluate")
    say("evaluate", "weighted tau of every metric against the fine-tuned accuracies")
    table, warnings = metric_table(scores, records, higher)
    _write_csv(table, out / "table.csv")
    full_table = None
    if full_records is not None and not full_records.empty:
        full_table, more = metric_table(scores, full_records, higher)
        _write_csv(full_table, out / "table_full_finetune.csv")
        warnings += [f"vs fine-tuning: {warning}" for warning in more]  # the same metric and task, another truth
    sanity = sanity_table(probes)
    _write_csv(sanity, out / "sanity.csv", index=False)
    done()
    pool_table = pool_comparison = None
    if pool is not None:
        pool_table, pool_comparison = _pool_stage(pool, models, preset.tasks, out, cache_dir, data_root, timed, say,
                                                  progress)
    report(progress, "benchmark", "done", steps, steps)
    atomic_write_bytes(out / "stages.json", json.dumps(seconds, indent=1).encode())
    return BenchmarkResult(preset.name, out, table, scores, records, sanity, zoo, tasks, seconds, full_table, warnings,
                           pool_table, pool_comparison)
