"""The `modelrank` command line: a thin Typer layer over the Python API.

Every command turns user errors (``ModelrankError``) into one red line and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ModelrankError

app = typer.Typer(
    name="modelrank",
    help="Rank pre-trained models by how well they will transfer to your task, without fine-tuning them all.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

CacheDirOption = typer.Option(
    None, "--cache-dir", envvar="MODELRANK_CACHE", help="Feature cache folder [default: ~/.cache/modelrank]."
)


# Features a user brings (`score`, `finetune`): the "rank my models from features and labels" path.
FeatureFilesOption = typer.Option(
    None, "--features", help="Feature file (repeatable): .npz with features, labels[, source_probs] or .parquet "
    "with features, label[, source_probs].")
ModelNamesOption = typer.Option(None, "--model-name", help="Model name of each --features file, in order [default: file stem].")
DatasetNameOption = typer.Option("custom", "--dataset-name", help="Dataset name for --features files.")
TaskOption = typer.Option(None, "--task", help="classification | regression for --features files [default: inferred from the labels].")


def load_feature_files(features: list[Path], model_names: Optional[list[str]], dataset_name: str, task: Optional[str]):
    from .scoring import load_feature_file

    if model_names and len(model_names) != len(features):
        raise ModelrankError(f"{len(model_names)} --model-name for {len(features)} --features files")
    names = model_names or [None] * len(features)
    return [load_feature_file(f, n, dataset_name, task) for f, n in zip(features, names)]


def split_names(value: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (models, datasets and metrics are given comma-separated)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


# ---------------------------------------------------------------------------------------------- list
@app.command("list")
def list_cmd(
    what: str = typer.Argument(..., help="models | datasets | metrics"),
) -> None:
    """List the registered models, datasets or metrics."""
    if what == "metrics":
        from .metrics import METRICS

        rows = [
            [
                s.name,
                ", ".join(s.obj.needs),
                ", ".join(s.obj.tasks),
                "higher" if s.obj.higher_is_better else "lower",
                "zoo" if s.obj.zoo_level else "",
                s.obj.reference,
            ]
            for s in METRICS
        ]
        print_table("metrics", ["name", "needs", "tasks", "better", "scope", "reference"], rows)
    elif what == "models":
        from .models import list_model_rows

        columns, rows = list_model_rows()
        print_table("models", columns, rows)
    elif what == "datasets":
        from .data import list_dataset_rows

        columns, rows = list_dataset_rows()
        print_table("datasets", columns, rows)
    else:
        raise ModelrankError(f"cannot list {what!r}; choose models, datasets or metrics")


# ---------------------------------------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_cmd(
    scores: Path = typer.Option(..., "--scores", help="Scores CSV: long (dataset,model,method,score) or wide (Dataset,Model,<method>...)."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth CSV: dataset, model and accuracy / test_metric / eval_accuracy."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the long table method,dataset,measure,value here."),
    protocol: str = typer.Option("scipy", "--protocol", help="Weighted tau convention: scipy (rank=True, symmetric) | model_spider (weights from the truth's rank)."),
    tau: str = typer.Option("weighted,kendall,spearman,pearson,rel,regret", "--tau", help="Measures, comma-separated: weighted, kendall, spearman, pearson, rel, regret."),
    k: int = typer.Option(1, "--k", help="k of rel@k and regret@k."),
    lower_is_better: str = typer.Option("", "--lower-is-better", help="Methods whose raw score is better when lower (comma-separated)."),
    duplicates: str = typer.Option("error", "--duplicates", help="Repeated (dataset, model) rows in the truth: error | max (keep the best)."),
    truth_where: list[str] = typer.Option([], "--truth-where", help="Keep truth rows with COLUMN=VALUE (repeatable), e.g. protocol=linear."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save score-vs-truth scatter plots (PNG; needs modelrank[plot])."),
) -> None:
    """Judge transferability scores against fine-tune ground truth (weighted tau, Kendall, ..., rel@k, regret@k)."""
    from .evaluate.evaluation import evaluate
    from .evaluate.report import plot_evaluation, print_evaluation

    where = {}
    for pair in truth_where:
        column, sep, value = pair.partition("=")
        if not sep or not column.strip():
            raise ModelrankError(f"--truth-where takes COLUMN=VALUE, not {pair!r}")
        where[column.strip()] = value.strip()
    evaluation = evaluate(
        scores, truth, measures=split_names(tau), protocol=protocol, k=k,
        lower_is_better=split_names(lower_is_better), duplicates=duplicates, truth_where=where,
    )
    print_evaluation(evaluation, console)
    if out is not None:
        evaluation.to_csv(out)
        console.print(f"wrote {out}")
    if plot is not None:
        console.print(f"wrote {plot_evaluation(evaluation, plot)}")


# ------------------------------------------------------------------------------------------- extract
@app.command("extract")
def extract_cmd(
    models: str = typer.Option(..., "-m", "--models", help="Comma-separated model names (modelrank list models)."),
    dataset: str = typer.Option(..., "-d", "--dataset", help="Dataset name, folder:PATH or csv:PATH."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Local weights for the (single) model: same as -m ARCH@PATH."),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test | trainval | all [default: the dataset's first]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Seeded random subset of at most N samples."),
    per_class: Optional[int] = typer.Option(None, "--per-class", help="Seeded subset of N samples per class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling."),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA with AMP if present), cpu, cuda, cuda:1 ..."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data-loading processes [default: auto]."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: compute only chunk j with j %% n == i (job arrays)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", help="Where torchvision datasets live."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download a missing dataset (needs network)."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Extract penultimate features, source logits and labels into the Parquet feature cache.

    Interrupted runs resume: only missing chunks are computed.
    """
    from .extraction import ExtractProgress, extract

    names = split_names(models)
    if checkpoint:
        if len(names) != 1:
            raise ModelrankError("--checkpoint goes with exactly one model")
        names = [f"{names[0]}@{checkpoint}"]
    with ExtractProgress(console=console) as progress:
        summaries = extract(
            names, dataset, split, limit=limit, per_class=per_class, seed=seed, batch_size=batch_size,
            device=device, workers=workers, shard=shard, cache_dir=cache_dir, data_root=data_root,
            download=download, progress=progress,
        )
    rows = [
        [s["model"], s["model_info"]["family"], f"{s['model_info']['params'] / 1e6:.1f}M",
         "x".join(map(str, s["model_info"]["input_size"][1:])), s["samples"], s["computed"],
         s["images_per_s"] or "cached", "yes" if s["complete"] else "partial (other shards)"]
        for s in summaries
    ]
    print_table(f"features of {dataset}/{summaries[0]['split']}", ["model", "family", "params", "input", "samples", "computed",
                                                    "img/s", "complete"], rows)


# --------------------------------------------------------------------------------------------- cache
cache_app = typer.Typer(help="Inspect or clear the feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(cache_dir: Optional[Path] = CacheDirOption) -> None:
    """List cached feature entries."""
    from .cache import FeatureStore

    store = FeatureStore(cache_dir)
    rows = [list(store.describe(folder, manifest).values()) for folder, manifest in store.entries()]
    print_table(f"feature cache {store.root}", ["entry", "model", "dataset", "split", "samples", "done", "MB"], rows)


@cache_app.command("info")
def cache_info(
    entry: str = typer.Argument(..., help="Entry name (or a unique part of it), as shown by `cache ls`."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Show one entry's key, provenance and progress."""
    import json

    from .cache import FeatureStore

    store = FeatureStore(cache_dir)
    matches = [(f, m) for f, m in store.entries() if entry in f.name]
    if len(matches) != 1:
        raise ModelrankError(f"{len(matches)} cache entries match {entry!r}; give a unique part of the name")
    folder, manifest = matches[0]
    console.print(store.describe(folder, manifest))
    if manifest:
        console.print_json(json.dumps({k: v for k, v in manifest.items() if k != "sample_ids"}))


@cache_app.command("rm")
def cache_rm(
    pattern: str = typer.Argument(..., help="Remove entries whose name contains this ('all' for everything)."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Remove cached feature entries."""
    from .cache import FeatureStore

    removed = FeatureStore(cache_dir).remove(pattern)
    console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")


# --------------------------------------------------------------------------------------------- score
@app.command("score")
def score_cmd(
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    task: Optional[str] = TaskOption,
    metric: str = typer.Option("all", "--metric", help="Comma-separated metric names, or all (modelrank list metrics)."),
    ped: bool = typer.Option(False, "--ped", help="Score the PED-moved features (Li et al. ICCV'23): logme -> ped_logme, ..."),
    parameter: list[str] = typer.Option([], "--set", help="Metric parameter METRIC.KEY=VALUE, repeatable (e.g. transrate.eps=1e-3); "
                                        "such a metric's column is named with it."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the scores (Dataset,Model,<metric>...,<metric>_seconds) as CSV."),
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Score cached/extracted features of this dataset (with -m)."),
    models: Optional[str] = typer.Option(None, "-m", "--models", help="Comma-separated model names (with -d)."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split for -d [default: the dataset's first]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Seeded random subset of at most N samples (-d)."),
    per_class: Optional[int] = typer.Option(None, "--per-class", help="Seeded subset of N samples per class (-d)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling (-d)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", help="Where torchvision datasets live."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Score models with transferability metrics and print a ranking per dataset."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .scoring import score_feature_sets

    if bool(features) == bool(dataset or models):
        raise ModelrankError("give either --features FILE... or -d DATASET -m MODELS")
    if features:
        feature_sets = load_feature_files(features, model_name, dataset_name, task)
    else:
        if not (dataset and models):
            raise ModelrankError("-d DATASET and -m MODELS go together")
        from .extraction import load_feature_pairs

        names = split_names(models)
        loaded = load_feature_pairs([(m, dataset) for m in names], split, limit=limit, per_class=per_class, seed=seed,
                                    cache_dir=str(cache_dir) if cache_dir else None,
                                    data_root=str(data_root) if data_root else None)
        feature_sets = [loaded[m, dataset] for m in names]
    metric_names = split_names(metric)
    if ped:
        from .metrics.ped import ped_variant

        if metric_names == ["all"]:
            raise ModelrankError("--ped needs named metrics (e.g. --metric logme,sfda --ped)")
        metric_names = [ped_variant(name) for name in metric_names]
    params: dict[str, dict[str, object]] = {}
    for key, value in _key_values(parameter).items():
        name, dot, field = key.partition(".")
        if not (dot and name and field):
            raise ModelrankError(f"--set takes METRIC.KEY=VALUE, got {key!r}")
        params.setdefault(ped_variant(name) if ped else name, {})[field] = value
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True) as bar:
        job = bar.add_task("scoring", total=None)

        def advance(ds: str, model: str, name: str) -> None:
            bar.update(job, advance=1, description=f"{name} on {model}/{ds}")

        frame = score_feature_sets(feature_sets, metric_names, progress=advance, **params)
    for note in frame.attrs["notes"]:
        err_console.print(f"[yellow]{note}[/]", highlight=False, soft_wrap=True)
    for table in _ranking_tables(frame):
        console.print(table)
    if out:
        frame.to_csv(out, index=False)
        console.print(f"scores written to {out}")


def _ranking_tables(frame) -> list[Table]:
    """One table per dataset: a row per metric listing the models best-first by that metric's direction."""
    import math

    tables = []
    directions = frame.attrs["higher_is_better"]
    for dataset, rows in frame.groupby("Dataset", sort=False):
        table = Table(title=f"ranking on {dataset} (best first)", header_style="bold")
        for column in ["metric", "better", *[f"#{k + 1}" for k in range(len(rows))], "seconds"]:
            table.add_column(column, overflow="fold")
        for name, higher in directions.items():
            scored = rows.dropna(subset=[name]).sort_values(name, ascending=not higher, kind="stable")
            if scored.empty:
                continue
            cells = [f"{model}  {value:.6g}" if math.isfinite(value) else model
                     for model, value in zip(scored["Model"], scored[name])]
            cells[0] = f"[bold green]{cells[0]}[/]"
            cells += [""] * (len(rows) - len(cells))
            table.add_row(name, "higher" if higher else "lower", *cells, f"{rows[f'{name}_seconds'].sum():.3g}")
        tables.append(table)
    return tables


# -------------------------------------------------------------------------------------------- spider
spider_app = typer.Typer(help="Learned ranking for unseen tasks: Model Spider, a graph learner and baselines, trained "
                         "on fine-tune records.", no_args_is_help=True)
app.add_typer(spider_app, name="spider")
RecordsArgument = typer.Argument(..., help="records: dataset,model,accuracy CSV | domainnet:FOLDER | "
                                 "transfergraph-image:FOLDER | transfergraph-text:FOLDER | benchmark:FOLDER")


def _key_values(pairs: list[str]) -> dict[str, object]:
    """['epochs=50', 'hidden=16'] -> {'epochs': 50, 'hidden': 16} (values parsed as JSON when they parse)."""
    import json

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ModelrankError(f"expected key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@spider_app.command("train")
def spider_train(
    records: str = RecordsArgument,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the trained learner in."),
    learner: str = typer.Option("spider", "--learner", "-l", help="spider | graph | task_attention | model_prior | metadata_lr | metric | random"),
    option: list[str] = typer.Option([], "--set", help="Learner option key=value (repeatable), e.g. --set epochs=50"),
    task_meta: Optional[Path] = typer.Option(None, help="CSV of task metadata (first column = task name)."),
    model_meta: Optional[Path] = typer.Option(None, help="CSV of model metadata (first column = model name)."),
) -> None:
    """Train a learner on fine-tune records and save it."""
    from .spider import make_learner
    from .spider.loaders import load_records

    data = load_records(records, task_meta, model_meta)
    path = make_learner(learner, **_key_values(option)).fit(data).save(out)
    console.print(f"{learner}: {len(data.models)} models, {len(data.record_tasks)} tasks with records -> {path}")


@spider_app.command("rank")
def spider_rank(
    learner_dir: Path = typer.Argument(..., help="Folder written by `modelrank spider train`."),
    task: str = typer.Argument(..., help="Task name (known to the learner from its records or metadata)."),
    observed: list[str] = typer.Option([], "--observed", help="model=accuracy already fine-tuned (repeatable)."),
    top: int = typer.Option(10, help="How many models to show."),
) -> None:
    """Rank the zoo for a task with a saved learner."""
    from .spider import load_learner

    seen = {k: float(v) for k, v in _key_values(observed).items()} if observed else None
    scores = load_learner(learner_dir).predict(task, observed=seen).sort_values(ascending=False)
    print_table(f"ranking for {task}", ["rank", "model", "score"],
                [[i + 1, m, f"{s:.4f}"] for i, (m, s) in enumerate(scores.head(top).items())])


@spider_app.command("eval")
def spider_eval(
    records: str = RecordsArgument,
    learners: str = typer.Option("random,model_prior,task_attention,graph,spider", help="Comma-separated learners."),
    protocol: str = typer.Option("cold_start", help="cold_start | partial | seed_mixture"),
    by: str = typer.Option("task", help="Held-out groups: task | domain (needs a domain column in task metadata)."),
    folds: Optional[int] = typer.Option(None, help="Number of task folds (default: leave-one-task-out)."),
    k_observed: int = typer.Option(3, "--k", help="Models revealed per task in the partial protocol."),
    option: list[str] = typer.Option([], "--set", help="Option key=value, passed to each learner that has it (e.g. "
                                     "epochs=50, cv_group=domain)."),
    seed: int = typer.Option(0),
) -> None:
    """Evaluate learners with a cold-start / partially observed protocol and print the mean measures."""
    from .spider import LEARNERS, make_learner
    from .spider.loaders import load_records
    from .spider.protocols import evaluate, seed_mixture, task_folds

    data = load_records(records)
    extra = _key_values(option)
    names = split_names(learners)
    options = {name: set(LEARNERS.get(name).defaults) for name in names}
    unused = sorted(set(extra) - set().union(*options.values()))
    if unused:
        raise ModelrankError(f"no learner among {', '.join(names)} has option(s) {', '.join(unused)}")
    for name in names:
        config = {key: value for key, value in extra.items() if key in options[name]}
        factory = lambda: make_learner(name, **config)  # noqa: E731
        if protocol == "seed_mixture":
            result = seed_mixture(factory, data, seed=seed)
        else:
            result = evaluate(factory, data, protocol, task_folds(data, by, folds, seed=seed), k_observed, seed)
        summary = result.summary()
        print_table(f"{name} ({protocol}, fit {sum(result.fit_seconds):.1f} s)", ["protocol", *summary.columns],
                    [[idx, *[int(row[c]) if c in ("n", "tasks") else f"{row[c]:.3f}" for c in summary.columns]]
                     for idx, row in summary.iterrows()])


# ------------------------------------------------------------------------------------------ finetune
@app.command("finetune")
def finetune_cmd(
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    task: Optional[str] = TaskOption,
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Registered dataset (with -m): its test split is the test set."),
    models: Optional[str] = typer.Option(None, "-m", "--models", help="Comma-separated registered models (with -d)."),
    protocol: str = typer.Option("linear", "--protocol", help="linear: logistic regression (ridge for regression) on frozen standardised features | full: fine-tune the network over an lr x wd grid (-d/-m)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="accuracy | mean_per_class_accuracy | r2 | neg_mse [default: accuracy / r2]."),
    cs: Optional[str] = typer.Option(None, "--cs", help="Inverse regularisation sweep: LOW:HIGH:N (log-spaced) or a comma list [default: 1e-6:1e5:23]."),
    val: float = typer.Option(0.2, "--val", help="Validation fraction (selects C)."),
    test: float = typer.Option(0.2, "--test", help="Test fraction (when the data has no test split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits."),
    no_refit: bool = typer.Option(False, "--no-refit", help="Score the train-only head instead of refitting on train+val."),
    force: bool = typer.Option(False, "--force", help="Redo runs that are already recorded."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write this run's records as CSV (public records layout)."),
    lrs: str = typer.Option("0.1,0.01,0.001,0.0001", "--lrs", help="full: learning rates of the grid (SFDA's)."),
    wds: str = typer.Option("0,1e-6,1e-5,1e-4,1e-3", "--wds", help="full: weight decays of the grid (SFDA's; its code divides them by lr)."),
    epochs: int = typer.Option(10, "--epochs", help="full: epochs per grid point (cosine schedule, best epoch on val)."),
    batch_size: int = typer.Option(32, "--batch-size", help="full: batch size."),
    optimizer: str = typer.Option("sgd", "--optimizer", help="full: sgd (Nesterov, momentum 0.9) | adamw."),
    patience: int = typer.Option(3, "--patience", help="full: stop a run after this many epochs without a better val accuracy."),
    per_class: Optional[int] = typer.Option(None, "--per-class", help="Seeded subset of N images per class (-d)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="full: square input side [default: the model's]."),
    device: str = typer.Option("auto", "--device", help="full: auto | cpu | cuda (AMP on CUDA)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", help="Where torchvision datasets live."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Ground truth by training: probe or fine-tune every model, record each run, skip runs already recorded (resume)."""
    from .finetune import export_records, job_from_features, job_from_registry, parse_cs, run_full_grid, run_probes

    if bool(features) == bool(dataset or models):
        raise ModelrankError("give either --features FILE... or -d DATASET -m MODELS")
    cache = str(cache_dir) if cache_dir else None
    root = str(data_root) if data_root else None

    def report(status: str, record: dict, label: str) -> None:
        style = "green" if status == "done" else "dim"
        console.print(
            f"[{style}]{status:7s}[/] {label}: {record['metric']} {record['test_metric']:.4f} "
            f"(val {record['val_metric']:.4f}, {_selected_text(record['selected'])}, {record['seconds']:.1f} s)",
            highlight=False,
        )

    if protocol == "full":
        from .finetune.full import FullConfig

        if features or not (dataset and models):
            raise ModelrankError("--protocol full trains networks: give -d DATASET -m MODELS")
        try:
            grid = [float(v) for v in split_names(lrs)], [float(v) for v in split_names(wds)]
        except ValueError:
            raise ModelrankError("--lrs and --wds take comma-separated numbers") from None
        config = FullConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, patience=patience,
                            val_fraction=val, per_class=per_class, seed=seed, input_size=input_size)
        records = run_full_grid(
            dataset, split_names(models), *grid, config=config, device=device, data_root=root, force=force,
            cache_dir=cache, on_result=lambda status, record, model: report(status, record, f"{dataset}/{model}"),
            on_epoch=lambda tag, info: err_console.print(
                f"[dim]{tag} epoch {info['epoch'] + 1}/{info['epochs']}: loss {info['loss']:.3f}, "
                f"val {info['val_accuracy']:.4f}[/]", highlight=False),
        )
        if out:
            import pandas as pd

            export_records(pd.DataFrame(records)).to_csv(out, index=False)
            console.print(f"records written to {out}")
        return
    if features:
        jobs = [job_from_features(fs, val=val, test=test, seed=seed)
                for fs in load_feature_files(features, model_name, dataset_name, task)]
    else:
        if not (dataset and models):
            raise ModelrankError("-d DATASET and -m MODELS go together")
        jobs = [job_from_registry(dataset, m, val=val, test=test, seed=seed, per_class=per_class, cache_dir=cache,
                                  data_root=root) for m in split_names(models)]
    records = run_probes(jobs, protocol=protocol, cs=parse_cs(cs), metric=metric, refit=not no_refit, force=force,
                         cache_dir=cache, on_result=lambda status, record, job: report(status, record, f"{job.dataset}/{job.model}"))
    if out:
        import pandas as pd

        export_records(pd.DataFrame(records)).to_csv(out, index=False)
        console.print(f"records written to {out}")


def _selected_text(selected: str) -> str:
    """'{"C": 0.316}' -> 'C=0.316': the hyper-parameters a run selected on validation."""
    import json

    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in json.loads(selected).items())


records_app = typer.Typer(help="The fine-tune / probe records (ground truth) kept in the cache.", no_args_is_help=True)
app.add_typer(records_app, name="records")


@records_app.command("ls")
def records_ls(
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Only this dataset."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Only this model."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """List the recorded runs."""
    from .finetune import read_records

    table = read_records(str(cache_dir) if cache_dir else None)
    if dataset:
        table = table[table["dataset"] == dataset]
    if model:
        table = table[table["model"] == model]
    from .evaluate.report import print_wide

    listing = Table(title=f"{len(table)} records", header_style="bold")
    for column in ("dataset", "model", "protocol", "metric", "test", "val", "selected", "seconds", "time"):
        listing.add_column(column, overflow="fold")
    for r in table.itertuples():
        listing.add_row(r.dataset, r.model, r.protocol, r.metric, f"{r.test_metric:.4f}", f"{r.val_metric:.4f}",
                        _selected_text(r.selected), f"{r.seconds:.1f}", r.time)
    print_wide(console, listing)


@records_app.command("export")
def records_export(
    out: Path = typer.Argument(..., help="CSV to write (public records layout: model, finetuned_dataset, ..., eval_accuracy)."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Export every record as CSV, readable by `modelrank evaluate --truth`."""
    from .finetune import export_records, read_records

    table = read_records(str(cache_dir) if cache_dir else None)
    export_records(table).to_csv(out, index=False)
    console.print(f"{len(table)} records written to {out}")


# ------------------------------------------------------------------------------------- zoo / benchmark
zoo_app = typer.Typer(help="The offline multi-source model zoo: ImageNet models fine-tuned on packaged datasets.",
                      no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
PresetOption = typer.Option("demo", "--preset", help="ci (seconds, tiny models) | demo (minutes on 2 CPU cores) | full.")
DeviceOption = typer.Option("auto", "--device", help="auto (CUDA with AMP if present), cpu, cuda ...")


def _zoo_rows(zoo) -> list[list[object]]:
    def accuracy(value) -> str:
        return "" if value is None or value != value else f"{value:.3f}"

    return [[r.name, r.family, r.source_dataset, r.num_classes, f"{r.params / 1e6:.2f}M", f"{r.trained_params / 1e6:.2f}M",
             r.input_size, accuracy(r.source_accuracy), r.sha256] for r in zoo.itertuples()]


ZOO_COLUMNS = ["model", "family", "source", "classes", "params", "trained", "px", "source acc", "sha256"]


def _zoo_event(kind: str, name: str, info: dict) -> None:
    """Progress of `zoo build`: one line per model and per epoch."""
    if kind == "start":
        err_console.print(f"[bold]{info['index'] + 1}/{info['total']}[/] {name}", highlight=False)
    elif kind == "epoch":
        err_console.print(f"    epoch {info['epoch'] + 1}/{info['epochs']}  loss {info['loss']:.3f}  "
                          f"val acc {info['val_accuracy']:.3f}", highlight=False)
    else:
        err_console.print(f"    {kind}: source accuracy {info['source_accuracy']:.3f} ({info['seconds']:.0f} s)",
                          highlight=False)


@zoo_app.command("build")
def zoo_build_cmd(
    preset: str = PresetOption,
    device: str = DeviceOption,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", help="Where torchvision datasets live."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Fine-tune every base model of the preset on every source dataset (resumable; finished models are skipped)."""
    from .zoo.build import build_zoo

    zoo = build_zoo(preset, cache_dir=cache_dir, device=device, data_root=str(data_root) if data_root else None,
                    on_event=_zoo_event)
    print_table(f"zoo/{preset}", ZOO_COLUMNS, _zoo_rows(zoo))


@zoo_app.command("ls")
def zoo_ls_cmd(preset: str = PresetOption, cache_dir: Optional[Path] = CacheDirOption) -> None:
    """Show a built zoo's models and their metadata."""
    from .zoo.build import zoo_table

    print_table(f"zoo/{preset}", ZOO_COLUMNS, _zoo_rows(zoo_table(preset, cache_dir)))


@app.command("benchmark")
def benchmark_cmd(
    preset: str = PresetOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder [default: <cache>/benchmark/<preset>]."),
    device: str = DeviceOption,
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", help="Where torchvision datasets live."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Zoo x target tasks: extract, score with every metric, fine-tune, evaluate; prints the weighted-tau table.

    Every stage reuses the cache, so a rerun after an interruption does only what is missing.
    """
    from .evaluate.report import print_wide
    from .zoo.pipeline import run_benchmark

    result = run_benchmark(
        preset, cache_dir=cache_dir, out_dir=out, device=device, data_root=str(data_root) if data_root else None,
        on_stage=lambda stage, message: err_console.print(f"[bold cyan]{stage}[/] {message}", highlight=False),
        zoo_events=_zoo_event,
    )
    print_wide(console, _frame_table(f"weighted tau (Model Spider convention) vs linear probe, {result.preset}", result.table))
    if result.full_table is not None:
        print_wide(console, _frame_table("weighted tau vs fine-tuning", result.full_table))
    sanity = result.sanity[["task", "best_model", "best_accuracy", "worst_accuracy", "spread", "seed_std", "noise",
                            "f_stat", "p_value"]]
    print_wide(console, _frame_table("ground truth: spread across models vs seed noise", sanity.set_index("task")))
    console.print(f"stage seconds: {result.stage_seconds}; results in {result.out_dir}", highlight=False)


def _frame_table(title: str, frame) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column(frame.index.name or "")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(str(index), *[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    return table


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    try:
        app(standalone_mode=False)
    except ModelrankError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # a file or disk problem of the environment, not a bug: one line, no traceback
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's own usage errors arrive as ClickException
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
