"""Run the ground-truth protocols over (dataset, model) pairs: linear probes (``run_probes``) and the full
fine-tuning lr x weight-decay grid (``run_full_grid``). Each finished run is recorded at once and a run already
recorded is skipped, so an interrupted sweep resumes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from ..errors import InvalidInputError
from ..features import FeatureSet
from ..progress import ProgressFn, epoch_reporter, report
from ..registry import repeated
from .linear import DEFAULT_CS, check_cs, check_metric, holdout, linear_probe, split_feature_set
from .records import append_record, make_record, read_records, record_key

if TYPE_CHECKING:
    from ..data import ImageDataset

Splits = tuple[FeatureSet, FeatureSet, FeatureSet]


@dataclass
class ProbeJob:
    """One (dataset, model) to probe. ``load`` gives its (train, val, test) splits, only when the run is needed."""

    dataset: str
    model: str
    load: Callable[[], Splits]
    split_params: dict[str, Any]  # how the splits were made; part of the record key


def job_from_features(data: FeatureSet, val: float = 0.2, test: float = 0.2, seed: int = 0) -> ProbeJob:
    """A job over one in-memory FeatureSet, split train/val/test by ``split_feature_set``. NaN or infinite features
    or labels are an ``InvalidInputError`` here, when the jobs are made: found by the probe, they stopped a
    sweep after the files before them had been probed."""
    labels = np.asarray(data.labels)
    for what, values in (("features", data.features), ("labels", labels)):
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise InvalidInputError(f"{data.model} on {data.dataset}: the {what} hold "
                                    f"{int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
    # So is a split these labels do not allow (fewer samples of a class than the parts need, one class to train on)
    try:
        _check_train_classes(split_feature_set(FeatureSet(np.zeros((len(labels), 1)), labels, task=data.task),
                                               val=val, test=test, seed=seed)[0])
    except InvalidInputError as exc:
        raise InvalidInputError(f"{data.model} on {data.dataset}: {exc}") from None
    return ProbeJob(
        dataset=data.dataset, model=data.model,
        load=lambda: split_feature_set(data, val=val, test=test, seed=seed),
        split_params={"split": "stratified" if data.task == "classification" else "random", "val": val, "test": test,
                      "seed": seed, "data": _fingerprint(data)},
    )


def _fingerprint(data: FeatureSet) -> str:
    """Content hash of the features and labels: a changed feature file must not resume from old records."""
    digest = hashlib.sha256()
    for array in (data.features, data.labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:16]


def job_from_registry(dataset: str, model: str, val: float = 0.2, test: float = 0.2, seed: int = 0,
                      limit: int | None = None, per_class: int | None = None, cache_dir: str | None = None,
                      data_root: str | None = None, progress: ProgressFn | None = None,
                      metric: str | None = None) -> ProbeJob:
    """A job over cached (or freshly extracted) features of a registered model on a registered dataset.

    The dataset's own test split is the test set when it has one (a CSV's: the rows its split column calls test);
    val is carved from train (stratified). A dataset with a single split is split three ways (fractions of the
    whole). ``limit`` / ``per_class``: the seeded
    subset of the feature cache (``modelrank extract --limit/--per-class``), applied to each split. ``progress``
    hears of the extraction of features that are not cached yet (see ``extraction.extract``). ``metric``: the
    probe's, checked against the dataset's task before any feature is extracted.
    """
    from ..data import DATASETS, load_dataset
    from ..data.files import csv_splits
    from ..extraction import load_features

    splits = DATASETS.get(dataset).splits if not dataset.startswith(("folder:", "csv:")) else ("all",)
    if dataset.startswith("csv:"):
        # A CSV's split column names its test rows: they were cut three ways with every other row (its test images
        # trained on, its train images tested on), while `--protocol full` tested on them.
        splits = csv_splits(load_dataset(dataset, "all", root=data_root))
    has_test = "test" in splits and len(splits) > 1
    fit_split = "train" if "train" in splits else splits[0]

    def features(split: str) -> FeatureSet:
        return load_features(model, dataset, split, limit=limit, per_class=per_class, seed=seed, cache_dir=cache_dir,
                             data_root=data_root, progress=progress)

    def split(fit: FeatureSet) -> tuple[FeatureSet, ...]:
        return split_feature_set(fit, val=val, test=test, seed=seed) if not has_test else holdout(fit, val, seed)

    def load() -> Splits:
        parts = split(features(fit_split))
        return parts if not has_test else (*parts, features("test"))

    # The split is tried on the labels alone first: too few samples per class for a stratified val (and test)
    # split was found only once the features had been extracted. (A folder or CSV has the one split "all".)
    data = load_dataset(dataset, fit_split, root=data_root)
    _check_train_classes(split(_labels_only(data, limit, per_class, seed))[0], f"{dataset}: ")
    check_metric(metric, data.task)  # `--metric r2` on a classification dataset was found after the extraction

    params = {"split": f"{fit_split}/test" if has_test else "stratified", "val": val,
              "test": "dataset test split" if has_test else test, "seed": seed, "limit": limit, "per_class": per_class,
              **content_params(model, dataset, cache_dir, data)}
    return ProbeJob(dataset=dataset, model=model, load=load, split_params=params)


def _check_train_classes(train: FeatureSet, what: str = "") -> None:
    """The train part of a classification split needs two classes, as ``linear_probe`` says once it has the features:
    a single-class folder was found after its features had been extracted, a single-class feature file after the
    files before it had been probed."""
    n_classes = np.unique(train.labels).size
    if train.task == "classification" and n_classes < 2:
        raise InvalidInputError(f"{what}the train split has {n_classes} class; a probe needs at least 2")


def _labels_only(data: ImageDataset, limit: int | None, per_class: int | None, seed: int) -> FeatureSet:
    """The labels the features of ``data`` will have (the seeded subset ``load_features`` takes), with no features:
    enough to try the split, from the dataset's label list alone (no image is read)."""
    from ..extraction import select_samples

    labels = np.asarray(data.targets)[select_samples(data.targets, limit, per_class, seed, data.task)]
    return FeatureSet(np.zeros((len(labels), 1)), labels, dataset=data.name, task=data.task)


def content_params(model: str, dataset: str, cache_dir: str | os.PathLike | None,
                   data: ImageDataset | None = None) -> dict[str, str]:
    """What the names leave open, for the record key: ``weights``, the fingerprint of a model's weights file, and
    ``data``, that of a ``folder:``/``csv:`` dataset's samples and labels (of every split: ``data`` may be any
    split of it, already loaded). A retrained ``ARCH@PATH``, a rebuilt zoo model or a relabelled folder was skipped
    as recorded and kept the old accuracy. Left out where the name fixes the content, so those keys are as before."""
    from ..data import load_dataset
    from ..models import weights_fingerprint

    params = {"weights": weights_fingerprint(model, cache_dir)}
    if dataset.startswith(("folder:", "csv:")):
        params["data"] = (data or load_dataset(dataset, "all")).meta["definition"]["fingerprint"]
    return {key: value for key, value in params.items() if value}


def run_probes(
    jobs: Iterable[ProbeJob],
    protocol: str = "linear",
    cs=DEFAULT_CS,
    metric: str | None = None,
    refit: bool = True,
    force: bool = False,
    cache_dir: str | os.PathLike | None = None,
    on_result: Callable[[str, dict[str, Any] | None, ProbeJob], None] | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Probe every job, appending each record as soon as it is done; returns the records of this call.

    A job whose key is already in the records table is skipped (its stored record is returned) unless ``force``.
    ``on_result(status, record, job)`` is called with status ``done`` or ``skipped`` (for progress output);
    ``progress`` counts the jobs on its row "probes".
    """
    if protocol != "linear":
        raise InvalidInputError(f"run_probes runs the linear protocol; {protocol!r} is not one (full: run_full_grid)")
    cs = [float(c) for c in np.asarray(cs, dtype=np.float64)]
    recorded = read_records(cache_dir).set_index("key", drop=False)
    results = []
    jobs = list(jobs)
    for index, job in enumerate(jobs):
        report(progress, "probes", f"linear probe of {job.model} on {job.dataset}", index, len(jobs))
        params = {"cs": cs, "metric": metric, "refit": refit, **job.split_params}
        key = record_key(job.dataset, job.model, protocol, params)
        if key in recorded.index and not force:
            record = recorded.loc[key].to_dict()
            results.append(record)
            if on_result:
                on_result("skipped", record, job)
            continue
        try:
            train, val, test = job.load()
            result = linear_probe(train, val, test, cs=cs, metric=metric, refit=refit)
        except InvalidInputError as exc:  # name the run: among many feature files, which one is bad
            raise InvalidInputError(f"{job.model} on {job.dataset}: {exc}") from exc
        record = make_record(
            dataset=job.dataset, model=job.model, protocol=protocol, params=params, metric=result.metric,
            selected={"C": result.best_c}, val_metric=result.val_metric, test_metric=result.test_metric,
            n_train=train.n_samples, n_val=val.n_samples, n_test=test.n_samples, iterations=result.iterations,
            seconds=result.seconds, val_curve=result.val_curve,
        )
        append_record(record, cache_dir)
        results.append(record)
        if on_result:
            on_result("done", record, job)
    report(progress, "probes", "linear probes", len(jobs), len(jobs))
    return results


# SFDA's grid (finetune_group1.py: lr = logspace(-4, -1, 4), wd in {0, 1e-6, 1e-5, 1e-4, 1e-3}); SFDA's code then
# divides wd by lr before handing it to SGD, pass wds already scaled to reproduce that.
SFDA_LRS = (1e-1, 1e-2, 1e-3, 1e-4)
SFDA_WDS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)


def run_full_grid(
    dataset: str,
    models: Iterable[str],
    lrs: Iterable[float] = SFDA_LRS,
    wds: Iterable[float] = SFDA_WDS,
    config: Any = None,
    device: str = "auto",
    data_root: str | None = None,
    force: bool = False,
    cache_dir: str | os.PathLike | None = None,
    on_result: Callable[[str, dict[str, Any], str], None] | None = None,
    on_epoch: Callable[[str, dict[str, float]], None] | None = None,
    progress: ProgressFn | None = None,
    shard: tuple[int, int] = (0, 1),
    on_partial: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Full fine-tuning ground truth: every (lr, weight decay) of the grid, selected on validation.

    Each grid point is one ``finetune.full.finetune_full`` run (fresh head, SGD-Nesterov or AdamW, cosine schedule,
    best epoch on a seeded validation split, early stopping, resumable checkpoints under the cache). The grid point
    with the best validation accuracy is the selection; its test accuracy (at its best epoch) is the record's
    test metric. SFDA instead retrains the selected point on train + val before testing; not done here.
    A model already recorded with the same grid and config is skipped unless ``force``, which also trains this
    task's runs again rather than taking their finished results from the checkpoints. ``progress`` shows the
    model k/M (row "models"), the grid point k/G (row "grid") and the epoch (row "epoch").

    ``shard=(i, n)``: train only the runs j (numbered model by model, grid point by grid point) with j mod n = i,
    so the n tasks of a job array (``--shard i/n``) or of ``torchrun`` share the models x grid runs. A model is
    recorded by the task that finds all of its grid points finished (each task writes its runs' results before
    it looks, so the last of them to finish a model always sees the others'); the others call
    ``on_partial(model, finished points, grid size)`` and leave it out of the returned records.
    """
    from dataclasses import asdict, replace

    from ..cache import cache_root
    from .full import FullConfig, finetune_full

    config = config or FullConfig()
    if not 0 <= shard[0] < shard[1]:
        raise InvalidInputError(f"shard {shard[0]}/{shard[1]}: need 0 <= i < n")
    lrs, wds = [float(v) for v in lrs], [float(v) for v in wds]
    if not lrs or not wds:
        raise InvalidInputError("the fine-tuning grid needs at least one learning rate and one weight decay")
    for what, values in (("learning rate", lrs), ("weight decay", wds)):
        # trained once, but recorded under another key than the grid without the repeat: the same runs became a
        # second record of the (dataset, model), which `evaluate --truth` refuses as a duplicate
        twice = repeated(values)
        if twice:
            raise InvalidInputError(f"the fine-tuning grid lists the {what} {twice[0]:g} more than once")
    base = {k: v for k, v in asdict(config).items() if k not in ("lr", "weight_decay")}
    recorded = read_records(cache_dir).set_index("key", drop=False)
    results = []
    models = list(models)
    grid = [(lr, wd) for lr in lrs for wd in wds]
    for index, model in enumerate(models):
        report(progress, "models", f"fine-tuning {model} on {dataset}", index, len(models))
        params = {"lrs": lrs, "wds": wds, **base, **content_params(model, dataset, cache_dir)}
        key = record_key(dataset, model, "full", params)
        if key in recorded.index and not force:
            results.append(recorded.loc[key].to_dict())
            if on_result:
                on_result("skipped", results[-1], model)
            continue
        folder = cache_root(cache_dir) / "finetune" / key.rsplit("|", 1)[1] / "".join(c if c.isalnum() else "_" for c in model)
        runs = []
        mine = [(index * len(grid) + point) % shard[1] == shard[0] for point in range(len(grid))]
        if not any(mine):  # (more tasks than grid points) every run of this model is other tasks'
            continue
        # This task's runs first: the others' are only looked at after them (see the docstring).
        for point in sorted(range(len(grid)), key=lambda p: not mine[p]):
            lr, wd = grid[point]
            tag = f"{model} lr={lr:g} wd={wd:g}"
            if mine[point]:
                report(progress, "grid", f"grid point {point + 1}/{len(grid)}: lr={lr:g} wd={wd:g}", point, len(grid))
            run = finetune_full(
                model, dataset, config=replace(config, lr=lr, weight_decay=wd), device=device,
                checkpoint_dir=folder / f"lr{lr:g}_wd{wd:g}", keep_weights=False, data_root=data_root,
                progress=epoch_reporter(progress, f"{tag}: epochs", config.epochs,
                                        (lambda info, tag=tag: on_epoch(tag, info)) if on_epoch else None),
                train=mine[point], retrain=force,
            )
            if run is None:  # another task's share, not finished yet
                continue
            if run.test_accuracy is None:
                raise InvalidInputError(f"{dataset} has no test split: the full protocol reports test accuracy")
            runs.append((point, lr, wd, run))
        if len(runs) < len(grid):
            if on_partial:
                on_partial(model, len(runs), len(grid))
            continue
        runs = [run[1:] for run in sorted(runs, key=lambda run: run[0])]  # grid order, for the selection's ties
        lr, wd, best = max(runs, key=lambda r: r[2].val_accuracy)  # first of equals: grid order
        record = make_record(
            dataset=dataset, model=model, protocol="full", params=params, metric="accuracy",
            selected={"lr": lr, "weight_decay": wd, "best_epoch": best.best_epoch}, val_metric=best.val_accuracy,
            test_metric=best.test_accuracy, n_train=best.n_train, n_val=best.n_val, n_test=best.n_test,
            iterations=sum(r.epochs_run for _, _, r in runs), seconds=sum(r.seconds for _, _, r in runs),
            val_curve=[r.val_accuracy for _, _, r in runs],
        )
        append_record(record, cache_dir)
        results.append(record)
        if on_result:
            on_result("done", record, model)
    report(progress, "models", f"fine-tuned on {dataset}", len(models), len(models))
    return results


#: most values of an ``--cs LOW:HIGH:N`` sweep (the default has 23; every value is one fit per model)
MAX_CS = 1000


def parse_cs(text: str | None) -> np.ndarray:
    """``--cs``: ``LOW:HIGH:N`` (N log-spaced values, e.g. ``1e-6:1e5:23``; 0 < LOW < HIGH, N <= ``MAX_CS``) or a
    comma list; None = default (an empty text is an error: an unset shell variable, not a choice). Checked as
    ``linear_probe`` will check it, so a bad sweep fails before any work."""
    if text is None:
        return DEFAULT_CS
    try:
        if ":" not in text:
            values = [float(v) for v in text.split(",")]
        else:
            low, high, n = text.split(":")
            low, high, n = float(low), float(high), int(n)
    except ValueError:
        raise InvalidInputError(f"--cs must be LOW:HIGH:N or a comma-separated list of numbers, not {text!r}") from None
    if ":" not in text:
        return check_cs(values)
    if not (0 < low < high < np.inf and 1 <= n <= MAX_CS):
        raise InvalidInputError(f"--cs LOW:HIGH:N needs 0 < LOW < HIGH and 1 <= N <= {MAX_CS}, not {text!r}")
    return np.logspace(np.log10(low), np.log10(high), n)


