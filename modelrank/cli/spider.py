"""The `spider` commands: learned rankers trained on fine-tune records, and ranking a new dataset with them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..display import escape
from ..errors import ModelrankError
from ..registry import names_of
from ._common import (
    CacheDirOption, DataRootOption, DatasetNameOption, FeatureFilesOption, ModelNamesOption, app, check_distinct,
    err_console, key_values, log, only_with, progress_display, SeedOption, SEVERAL, set_interrupt_note,
)
from ..progress import report
from ._output import check_out, check_output, data_inputs, emit, format_option, out_option, write_csv

#: ``--rerank-metric`` value for Model Spider's own re-ranking (instead of a metric)
LEARNED_RERANK = "learned"

spider_app = typer.Typer(help="Learned ranking for unseen tasks: Model Spider, a graph learner and baselines, trained "
                         "on fine-tune records.", no_args_is_help=True)
app.add_typer(spider_app, name="spider")
RecordsArgument = typer.Argument(..., help="records: dataset,model,accuracy CSV | domainnet:FOLDER | "
                                 "transfergraph-image:FOLDER | transfergraph-text:FOLDER | model-spider:FOLDER | "
                                 "model-spider-multi:FOLDER | benchmark:FOLDER")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress display.")
# What `spider train` reads beside a records CSV, `spider eval` reads too (load_records checks both files).
TaskMetaOption = typer.Option(None, "--task-meta", help="CSV of task metadata (first column = task name), with a "
                              "records CSV.")
ModelMetaOption = typer.Option(None, "--model-meta", help="CSV of model metadata (first column = model name), with a "
                               "records CSV.")


def _learner_options(name: str, pairs: list[str]) -> dict[str, object]:
    """--set pairs checked against the learner's options (types included) before any work."""
    from ..spider import make_learner

    options = key_values(pairs, "--set")
    make_learner(name, **options)  # raises a one-line error for an unknown option or a value of the wrong type
    return options


@spider_app.command("train")
def spider_train(
    records: str = RecordsArgument,
    out_name: str = typer.Option(..., "--out", "-o", help="Folder to save the trained learner in."),
    learner: str = typer.Option("task_attention", "--learner", "-l", help="A learner name (modelrank list learners); "
                                "the default, task attention, is the base the networks do not beat on any records "
                                "benchmark we have (README)."),
    option: list[str] = typer.Option([], "--set", help="Learner option key=value (repeatable), e.g. "
                                "--learner graph --set epochs=50 (modelrank list learners: each one's options)."),
    task_meta: Optional[Path] = TaskMetaOption,
    model_meta: Optional[Path] = ModelMetaOption,
    quiet: bool = QuietOption,
) -> None:
    """Train a learner on fine-tune records and save it."""
    from ..spider import make_learner
    from ..spider.loaders import load_records

    if not out_name.strip():  # an unset shell variable: Path("") would be the current folder
        raise ModelrankError("--out needs a folder name; spider train saves the learner in a folder")
    out = Path(out_name)
    if out.exists() and not out.is_dir():
        raise ModelrankError(f"--out {out} is a file; spider train saves the learner in a folder")
    if not out.exists():
        check_out(out)  # the folder is created after training, so its parent must exist and be writable now
    config = _learner_options(learner, option)
    text = f"training {learner} (epochs, validation folds included)"
    with progress_display(quiet) as display:
        report(display, "train", text)
        data = load_records(records, task_meta, model_meta)
        fitted = make_learner(learner, **config).fit(
            data, progress=lambda done, total: report(display, "train", text, done, total))
        path = fitted.save(out)
    err_console.print(f"{learner}: {len(data.models)} models, {len(data.record_tasks)} tasks with records -> "
                      f"{escape(str(path))}", highlight=False, soft_wrap=True)


@spider_app.command("rank")
def spider_rank(
    learner_dir: Path = typer.Argument(..., help="Folder written by `modelrank spider train`."),
    task: Optional[str] = typer.Argument(None, help="A task the learner knows from its records or task metadata; "
                                         "for a new dataset use -d or --features instead (a learner that reads "
                                         "nothing about the task, e.g. model_prior, needs neither)."),
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Rank the zoo for this dataset, described "
                                          "from the zoo models' features (cached; missing ones are extracted)."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split for -d [default: the dataset's first]."),
    per_class: Optional[int] = typer.Option(None, "--per-class", min=1, help="Seeded subset of N samples per class (-d)."),
    seed: int = SeedOption("Seed of the subsampling (-d)."),
    data_root: Optional[Path] = DataRootOption,
    cache_dir: Optional[Path] = CacheDirOption,
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    meta: list[str] = typer.Option([], "--meta", help="Task metadata COLUMN=VALUE (repeatable), for a learner that reads "
                                   "task metadata; overrides what -d / --features give."),
    observed: list[str] = typer.Option([], "--observed", help="MODEL=ACCURACY of a model already fine-tuned on the task "
                                       "(repeatable; learners that use them need 2 or more)."),
    rerank: int = typer.Option(0, "--rerank", min=0, help="Re-score the top K models with --rerank-metric on their own "
                               "features on the dataset (only those K are extracted) and re-order them."),
    rerank_metric: str = typer.Option("logme", "--rerank-metric", help="Metric of --rerank (modelrank list metrics), "
                                      f"or '{LEARNED_RERANK}': Model Spider's own re-ranking with each model's class "
                                      "prototypes (a spider learner trained on per-model prototypes)."),
    top: int = typer.Option(10, "--top", min=0, help="How many models to show in the table (0: all)."),
    out: Optional[Path] = out_option("the whole ranking"),
    fmt: str = format_option(),
    quiet: bool = QuietOption,
) -> None:
    """Rank the zoo for a task with a saved learner: rank, model, predicted score and the model prior's rank."""
    import pandas as pd
    from scipy import stats

    from ..metrics import METRICS
    from ..spider import load_learner
    from ..evaluate.ties import tie_groups
    from ..spider.base import PREDICTION_ATOL, PREDICTION_RTOL, model_prior
    from ..spider.describe import describe_task, needed_models, prediction_ranks, rerank_by_metric, top_models

    check_output(fmt, out, data_inputs(dataset, features))
    if dataset and features:
        raise ModelrankError("give either -d DATASET or --features FILE..., not both")
    if task and (dataset or features):
        raise ModelrankError("give a known TASK name or describe a new one with -d / --features, not both")
    if not dataset:
        only_with("-d DATASET", {"--split": split, "--per-class": per_class})
    if not features:
        only_with("--features", {"--model-name": model_name})
    if task and meta:
        raise ModelrankError(f"--meta describes a new task; {task!r} is known by its records (use -d / --features)")
    if rerank and rerank_metric not in METRICS and rerank_metric != LEARNED_RERANK:
        raise ModelrankError(f"unknown --rerank-metric {rerank_metric!r}; see modelrank list metrics, "
                             f"or {LEARNED_RERANK}")
    if rerank and not (dataset or features):
        raise ModelrankError("--rerank needs the dataset's features: give -d DATASET or --features")
    if dataset:  # a learner that reads nothing about the task never opens it: `-d digitz` ranked for "digitz"
        from ..data import check_dataset

        check_dataset(dataset, split)
    seen = _observed(observed)
    task_meta = key_values(meta, "--meta")
    learner = load_learner(learner_dir)
    if rerank and rerank_metric == LEARNED_RERANK and not learner.rerank_models:
        raise ModelrankError(f"{learner.name} has no re-ranking of its own (Model Spider trained on records with "
                             "per-model prototypes, e.g. `benchmark:FOLDER`); use --rerank-metric METRIC")
    name = task or dataset or dataset_name
    loader = _feature_loader(dataset, split, per_class, seed, data_root, cache_dir, features, model_name, dataset_name, quiet)
    if task is not None:
        target = task
    else:
        fetched = loader(needed_models(learner)) if (dataset or features) else {}
        target = describe_task(learner, name, fetched, task_meta)
        # a key the learner does not read (a misspelt column, or any for model_prior) was dropped without a word;
        # an embedding's task text may read any of them
        unread = [] if "embedding" in learner.reads else sorted(set(task_meta) - set(target.meta or {}))
        if unread:
            err_console.print(f"note: {learner.name} reads no task metadata {escape(', '.join(unread))}; --meta "
                              "changes nothing there", highlight=False, soft_wrap=True)
        if (dataset or features) and not learner.reads and not rerank:
            # its ranking is the same for every task: titled "ranking for DATASET", it looked like one of DATASET
            err_console.print(f"note: {learner.name} reads nothing about a task (it ranks every task alike); the "
                              "dataset's features change nothing", highlight=False, soft_wrap=True)
    scores = learner.predict(target, observed=seen or None)
    if seen and not learner.uses_observed:
        err_console.print(f"note: {learner.name} does not use observed accuracies; --observed changes nothing",
                          highlight=False, soft_wrap=True)
    elif seen and len(seen) < 2:
        err_console.print("note: one observed model says nothing about the order of the others; give 2 or more",
                          highlight=False, soft_wrap=True)
    elif seen and learner.predict(target).equals(scores):
        # e.g. task attention whose inner validation gave the observed accuracies no weight: a model observed at 0.9
        # stayed below models observed at 0.1, and nothing said why
        err_console.print(f"note: this {learner.name} learned to give observed accuracies no weight (its training "
                          "tasks' validation); --observed changes nothing", highlight=False, soft_wrap=True)
    if rerank and rerank_metric == LEARNED_RERANK:
        scores = _learned_rerank(learner, target, seen, scores, rerank, loader)
    elif rerank:
        scores = rerank_by_metric(scores, rerank, loader(top_models(scores, rerank)), rerank_metric)
    prior = pd.Series(model_prior(learner.accuracy)[0], index=learner.models)
    frame = pd.DataFrame({"model": scores.index, "score": scores.to_numpy()})
    prior_groups = tie_groups(prior.loc[frame["model"]].to_numpy(), PREDICTION_RTOL, PREDICTION_ATOL)
    frame["prior_rank"] = stats.rankdata(-prior_groups, method="min").astype(int)
    if seen:
        frame["observed"] = frame["model"].map(seen)
    frame = frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    ranks, unranked = prediction_ranks(frame["score"])
    frame.insert(0, "rank", ranks if unranked else ranks.astype(int))  # no ranking: blank (null in JSON), not all 1
    if unranked:
        err_console.print(f"[yellow]no ranking:[/] {escape(f'{learner.name} on {name}: {unranked}')}",
                          highlight=False, soft_wrap=True)
    title = f"{learner.name} ranking for {name}"
    # --top trims the table, piped or not (it trimmed only a terminal's); CSV, JSON and --out hold every model
    to_file = out is not None and str(out) != "-"
    emit(frame.head(top) if top and fmt == "table" and str(out) != "-" else frame, fmt, None if to_file else out, title)
    if to_file:
        write_csv(frame, out)


def _learned_rerank(learner, target, seen, scores, k: int, loader):
    """Model Spider's second stage: the top-k models' own class prototypes on the dataset enrich the task tokens
    and the learner re-orders those k (only the top-k models' features are extracted)."""
    from dataclasses import replace

    from ..spider.describe import top_models
    from ..spider.prototypes import prototypes_of

    top = [m for m in top_models(scores, k) if m in learner.rerank_models]
    if len(top) < 2:
        raise ModelrankError(f"{learner.name} can re-rank {len(top)} of the top {k} models with their own features "
                             "(it was trained with per-model prototypes of other models); use --rerank-metric METRIC")
    own = loader(top)
    enriched = replace(target, model_prototypes={m: prototypes_of(own[m]) for m in top},
                       rerank_k=len(top_models(scores, k)))
    return learner.predict(enriched, observed=seen or None)


def _observed(pairs: list[str]) -> dict[str, float]:
    """--observed MODEL=ACCURACY pairs: each accuracy a finite number."""
    values = {}
    for key, value in key_values(pairs, "--observed").items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not math.isfinite(number):
            raise ModelrankError(f"--observed {key}={value!r}: the accuracy must be a number")
        values[key] = number
    return values


def _feature_loader(dataset, split, per_class, seed, data_root, cache_dir, features, model_name, dataset_name, quiet):
    """models -> {model: FeatureSet} on the dataset: from the cache (extracting what is missing) for -d, from the
    --features files otherwise (a model without a file is an error naming it)."""
    def from_cache(models: list[str]):
        from ..extraction import load_feature_pairs

        if not models:
            return {}
        # extraction writes finished chunks to the cache as it goes: "nothing was written" was untrue after a Ctrl-C
        set_interrupt_note("features extracted before the interruption are kept in the feature cache; no ranking "
                           "was written; rerun the same command to resume")
        with progress_display(quiet) as progress:
            loaded = load_feature_pairs([(m, dataset) for m in models], split, per_class=per_class, seed=seed,
                                        cache_dir=str(cache_dir) if cache_dir else None,
                                        data_root=str(data_root) if data_root else None, progress=progress)
        return {m: loaded[m, dataset] for m in models}

    def from_files(models: list[str]):
        from ._common import load_feature_files

        sets = {fs.model: fs for fs in load_feature_files(features, model_name, dataset_name, None)}
        lacking = [m for m in models if m not in sets]
        if lacking:
            raise ModelrankError(f"no --features file for model(s) {lacking[:5]}{' ...' if len(lacking) > 5 else ''} "
                                 "(name files after the models or pass --model-name)")
        return sets

    return from_cache if dataset else from_files


@spider_app.command("eval")
def spider_eval(
    records: str = RecordsArgument,
    learners: list[str] = typer.Option(["random,model_prior,task_attention,graph,spider"],
                                       help=f"Learners, {SEVERAL}."),
    protocol: str = typer.Option("cold_start", help="cold_start | partial | both | seed_mixture"),
    by: str = typer.Option("task", help="Held-out groups: task | domain (needs a domain column in task metadata)."),
    task_meta: Optional[Path] = TaskMetaOption,
    model_meta: Optional[Path] = ModelMetaOption,
    folds: Optional[int] = typer.Option(None, min=2, help="Number of task folds (default: leave-one-task-out)."),
    k_observed: int = typer.Option(3, "--k", min=1, help="Models revealed per task in the partial protocol."),
    option: list[str] = typer.Option([], "--set", help="Option key=value, passed to each learner that has it (e.g. "
                                     "epochs=50, cv_group=domain)."),
    tau_protocol: str = typer.Option("scipy", "--tau-protocol", help="Weighted tau convention: scipy (symmetric, "
                                     "TransferGraph) | model_spider (weightedtau(truth, score, rank=None))."),
    baseline: str = typer.Option("model_prior", "--baseline", help="Learner the paired differences are taken against "
                                  "(one of --learners; without it the table has no differences)."),
    seed: int = SeedOption("Seed of the task folds, the partial protocol's revealed models and the learners."),
    out: Optional[Path] = out_option("the comparison table"),
    fmt: str = format_option(),
    quiet: bool = QuietOption,
    force: bool = typer.Option(False, "--force", help="Evaluate every learner and fold again, not reading the "
                               "results an earlier run of the same evaluation kept in the cache."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Evaluate learners on held-out tasks: one table of learners x measures, with the paired difference of
    weighted tau to the baseline (mean ± standard error over tasks, wins/losses; "beats" only beyond 2 SE).

    Each fold of each learner is kept in the cache as soon as it is done: an interrupted run, rerun, evaluates only
    the folds it had not finished (the same records, options and seed; see --force).
    """
    import pandas as pd

    from ..evaluate.measures import WEIGHTED_TAU_PROTOCOLS
    from ..evaluate.ties import no_ranking
    from ..spider import LEARNERS, make_learner
    from ..spider.loaders import load_records
    from ..spider.kept import KeptFolds, evaluation_key, kept_or_evaluated
    from ..spider.protocols import HELD_OUT_GROUPS, EvalResult, evaluate, paired_difference, seed_mixture, task_folds

    # a CSV path (a KIND:FOLDER spec is no file)
    check_output(fmt, out, [("RECORDS", records), ("--task-meta", task_meta), ("--model-meta", model_meta)])
    protocols = {"cold_start": ("cold_start",), "partial": ("partial",), "both": ("cold_start", "partial")}
    if protocol not in (*protocols, "seed_mixture"):
        raise ModelrankError(f"--protocol must be cold_start, partial, both or seed_mixture, not {protocol!r}")
    if tau_protocol not in WEIGHTED_TAU_PROTOCOLS:
        raise ModelrankError(f"--tau-protocol must be {' or '.join(WEIGHTED_TAU_PROTOCOLS)}, not {tau_protocol!r}")
    # both were found only once the records were read (and --folds with --by domain was ignored without a word)
    if by not in HELD_OUT_GROUPS:
        raise ModelrankError(f"--by must be {' or '.join(HELD_OUT_GROUPS)}, not {by!r}")
    if by == "domain" and folds is not None:
        raise ModelrankError("--folds goes with --by task; --by domain holds out one domain per fold")
    if protocol == "seed_mixture" and (folds is not None or by != "task"):  # its own split: they were ignored
        raise ModelrankError("--protocol seed_mixture makes its own split of the tasks; --folds and --by go with "
                             "cold_start | partial | both")
    names = names_of(learners)
    if not names:
        raise ModelrankError("--learners names no learner (see modelrank list learners)")
    check_distinct(names, "--learners")  # a repeated one was evaluated twice, into two identical rows
    for name in names:
        LEARNERS.get(name)  # an unknown name fails here, before any work
    LEARNERS.get(baseline)  # a misspelt --baseline too
    paired = baseline in names
    extra = key_values(option, "--set")
    options = {name: set(LEARNERS.get(name).defaults) for name in names}
    unused = sorted(set(extra) - set().union(*options.values()))
    if unused:
        raise ModelrankError(f"no learner among {', '.join(names)} has option(s) {', '.join(unused)}")
    configs = {name: {k: v for k, v in extra.items() if k in options[name]} for name in names}
    for name in names:
        make_learner(name, **configs[name])  # a value of the wrong type fails here, before any work
    data = load_records(records, task_meta, model_meta)
    for name in names:  # a learner lacking its input failed only after the learners before it were evaluated
        make_learner(name, **configs[name]).check(data)
    single = data.single_model_tasks  # none but them: the learners' check above refused the records
    if single:  # they refused the whole evaluation; `evaluate` leaves a dataset of one model out too
        err_console.print(f"[yellow]no ranking:[/] {escape(', '.join(single))} (ground truth): only 1 model has a "
                          "record; left out of the evaluation (kept to train the learners)",
                          highlight=False, soft_wrap=True)
    fold_list = None if protocol == "seed_mixture" else task_folds(data, by, folds, seed=seed)
    settings = {"protocol": protocol, "folds": fold_list, "k": k_observed, "seed": seed, "tau_protocol": tau_protocol}
    set_interrupt_note("the learners and folds evaluated before the interruption are kept in the cache; rerun the "
                       "same command to evaluate the others")
    per_task, rows = [], []
    steps = len(names) * (1 if fold_list is None else len(fold_list))
    finished = [0]  # folds evaluated so far, over all learners
    with progress_display(quiet) as display:

        def advance(name: str) -> None:
            finished[0] += 1
            report(display, "eval", f"evaluating {name}", finished[0], steps)

        for name in names:
            report(display, "eval", f"evaluating {name}", finished[0], steps)
            factory = lambda name=name: make_learner(name, **configs[name])  # noqa: E731

            def evaluated(folds: KeptFolds, name=name, factory=factory) -> EvalResult:
                if protocol == "seed_mixture":  # one fit: nothing to keep before it is done
                    result = seed_mixture(factory, data, seed=seed, tau_protocol=tau_protocol)
                    advance(name)
                    return result
                return evaluate(factory, data, protocols[protocol], fold_list, k_observed, seed, tau_protocol,
                                progress=lambda: advance(name), kept_folds=folds)

            key = evaluation_key(data, name, configs[name], settings)
            result, was_kept = kept_or_evaluated(key, evaluated, cache_dir, force)
            if was_kept:
                finished[0] += steps // len(names)
                report(display, "eval", f"read {name}", finished[0], steps)
                log(f"[dim]kept   [/] {escape(name)}: evaluated by an earlier run (--force evaluates it again)")
            if not per_task:  # the same for every learner (the records and folds decide): said once
                for task, reason in result.left_out.items():
                    err_console.print(f"[yellow]left out:[/] {escape(f'{task}: {reason}')}", highlight=False,
                                      soft_wrap=True)
            per_task.append(result.per_task.assign(learner=name))
            # by column: iterrows made one float Series of each row, and the counts n and tasks 3.0 in CSV and JSON
            for variant, row in result.summary().to_dict("index").items():
                rows.append({"learner": name, "protocol": variant, **row, "fit_s": sum(result.fit_seconds)})
    table = pd.DataFrame(rows)
    everything = pd.concat(per_task, ignore_index=True)
    for task in everything["task"].unique():  # the tasks `n` leaves out, with the reason (as `evaluate` says it)
        reason = no_ranking(data.truth(task).to_numpy())
        if reason:
            err_console.print(f"[yellow]no ranking:[/] {escape(f'{task} (ground truth): {reason}')}", highlight=False,
                              soft_wrap=True)
    if paired:
        for column in ("diff_vs_" + baseline, "se", "wins", "losses", "verdict"):
            table[column] = None
        for i, row in table.iterrows():
            if row["learner"] == baseline:
                continue
            group = everything[everything["protocol"] == row["protocol"]]
            difference = paired_difference(group, row["learner"], baseline, "weighted_tau")
            if difference is not None:
                table.loc[i, ["diff_vs_" + baseline, "se", "wins", "losses", "verdict"]] = [
                    difference["diff"], difference["se"], difference["wins"], difference["losses"], difference["verdict"]]
    table = table.rename(columns={"weighted_tau": f"weighted_tau[{tau_protocol}]"})
    pairing = f" (paired: weighted tau minus {baseline}, per task)" if paired else ""
    if not paired:
        err_console.print(f"note: --baseline {escape(baseline)} is not among --learners: no paired differences",
                          highlight=False, soft_wrap=True)
    emit(table, fmt, out, f"held-out {protocol} evaluation on {data.name}{pairing}")
