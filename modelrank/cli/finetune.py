"""The `finetune` and `records` commands: ground truth by training, and its records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..display import escape
from ..errors import ModelrankError
from ..registry import names_of, split_names
from ._common import (
    set_interrupt_note, app, console, err_console, CacheDirOption, DataRootOption, FeatureFilesOption, ModelNamesOption,
    DatasetNameOption, ExistingCacheDirOption,
    SeedOption, SizeOption, TaskOption, check_extraction, confirmed, load_feature_files, log, progress_display,
    check_data_options, only_with, SEVERAL,
)
from ._output import check_csv_name, check_out, check_output, data_inputs, emit, format_option, out_option, write_csv

if TYPE_CHECKING:
    import pandas as pd

PROTOCOL_HELP = ("linear: logistic regression (ridge for regression) on frozen standardised features | "
                 "full: fine-tune the network over an lr x wd grid (-d/-m).")


@app.command("finetune")
def finetune_cmd(
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    task: Optional[str] = TaskOption,
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Registered dataset (with -m): its test split is the test set."),
    models: Optional[list[str]] = typer.Option(None, "-m", "--models", help=f"Registered models (with -d), {SEVERAL}."),
    protocol: str = typer.Option("linear", "--protocol", help=PROTOCOL_HELP),
    metric: Optional[str] = typer.Option(None, "--metric", help="accuracy | mean_per_class_accuracy | r2 | neg_mse "
                                         "[default: accuracy for classification, r2 for regression]."),
    cs: Optional[str] = typer.Option(None, "--cs", help="Inverse regularisation sweep: LOW:HIGH:N (log-spaced) or a comma list [default: 1e-6:1e5:23]."),
    val: float = typer.Option(0.2, "--val", help="Validation fraction (selects C)."),
    test: Optional[float] = typer.Option(None, "--test", help="linear: test fraction (when the data has no test "
                                         "split) [default: 0.2]."),
    seed: int = SeedOption("Seed of the splits."),
    no_refit: bool = typer.Option(False, "--no-refit", help="Score the train-only head instead of refitting on train+val."),
    force: bool = typer.Option(False, "--force", help="Redo runs that are already recorded."),
    out: Optional[Path] = out_option("this run's records (public records layout)"),
    fmt: str = format_option(),
    lrs: Optional[str] = typer.Option(None, "--lrs", help="full: learning rates of the grid [default: SFDA's, "
                                      "0.1,0.01,0.001,0.0001]."),
    wds: Optional[str] = typer.Option(None, "--wds", help="full: weight decays of the grid [default: SFDA's, "
                                      "0,1e-6,1e-5,1e-4,1e-3; its code divides them by lr]."),
    epochs: Optional[int] = SizeOption("--epochs", "full: epochs per grid point (cosine schedule, best epoch on val) "
                                       "[default: 10]."),
    batch_size: Optional[int] = SizeOption("--batch-size", "full: batch size [default: 32].", minimum=2),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="full: sgd (Nesterov, momentum 0.9) | adamw "
                                            "[default: sgd]."),
    patience: Optional[int] = SizeOption("--patience", "full: stop a run after this many epochs without a better val "
                                         "accuracy [default: 3]."),
    per_class: Optional[int] = SizeOption("--per-class", "Seeded subset of N images per class (-d)."),
    input_size: Optional[int] = SizeOption("--input-size", "full: square input side [default: the model's]."),
    device: Optional[str] = typer.Option(None, "--device", help="full: auto | cpu | cuda (AMP on CUDA) [default: auto]."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: only the runs j with j mod n = i (job arrays; "
                                        "torchrun's processes split it further): models (linear) or models x grid "
                                        "points (full, where the task that finishes a model's last run records it)."),
    data_root: Optional[Path] = DataRootOption,
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Ground truth by training: probe or fine-tune every model, record each run, skip runs already recorded (resume).

    Each finished run is logged on stderr; the results table goes to stdout.
    """
    set_interrupt_note("finished runs are recorded (and a full fine-tune's last epoch is checkpointed); "
                       "rerun the same command to resume")
    import pandas as pd

    from ..finetune import PROTOCOLS, export_records, job_from_features, job_from_registry, parse_cs, run_full_grid, run_probes
    from ..finetune.linear import CLASSIFICATION_METRICS, REGRESSION_METRICS
    from ..finetune.records import RECORD_COLUMNS

    check_data_options(features, dataset, models, model_name, dataset_name, task, {"--per-class": per_class})
    if protocol not in PROTOCOLS:
        raise ModelrankError(f"--protocol takes {' | '.join(PROTOCOLS)}, not {protocol!r}")
    if metric is not None and metric not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
        raise ModelrankError(f"--metric takes {' | '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)}, not {metric!r}")
    if protocol == "full":  # it tests on the dataset's test split: a --test fraction was ignored without a word
        only_with("--protocol linear", {"--test": test})
    test = 0.2 if test is None else test
    if not (0 < val < 1 and 0 <= test < 1 and val + test < 1):
        raise ModelrankError(f"--val ({val:g}) and --test ({test:g}) must be fractions with val + test < 1")
    if features and test == 0:  # a feature file has no test split of its own: each probe failed on it, one by one
        raise ModelrankError("--test 0 leaves --features files no test set; give a fraction in (0, 1)")
    check_output(fmt, out, data_inputs(dataset, features))
    from ..extraction import launcher_shard, parse_shard, resolve_device

    shard_index, shard_count = launcher_shard(parse_shard(shard))
    cache = str(cache_dir) if cache_dir else None
    root = str(data_root) if data_root else None

    def report(status: str, record: dict, label: str) -> None:
        style = "green" if status == "done" else "dim"
        log(f"[{style}]{status:7s}[/] {escape(label)}: {record['metric']} {record['test_metric']:.4f} "
            f"(val {record['val_metric']:.4f}, {escape(_selected_text(record['selected']))}, {record['seconds']:.1f} s)")

    full_only = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "patience": patience,
                 "input_size": input_size}  # FullConfig's fields; its defaults are the options' defaults
    if protocol == "full":
        from ..finetune import SFDA_LRS, SFDA_WDS
        from ..finetune.full import FullConfig

        if features:
            raise ModelrankError("--protocol full trains networks: give -d DATASET -m MODELS")
        only_with("--protocol linear", {"--cs": cs, "--metric": metric, "--no-refit": no_refit or None})
        try:
            grid = ([float(v) for v in split_names(lrs)] if lrs is not None else list(SFDA_LRS),
                    [float(v) for v in split_names(wds)] if wds is not None else list(SFDA_WDS))
        except ValueError:
            raise ModelrankError("--lrs and --wds take comma-separated numbers") from None
        if not all(0 < lr < math.inf for lr in grid[0]) or not all(0 <= wd < math.inf for wd in grid[1]):
            raise ModelrankError("--lrs must be positive and --wds non-negative finite numbers")
        config = FullConfig(val_fraction=val, per_class=per_class, seed=seed,
                            **{field: value for field, value in full_only.items() if value is not None})
        config.validate()
        device = "auto" if device is None else device
        resolve_device(device)  # checked by each run, i.e. after the dataset and the first model are loaded
        names = names_of(models)
        check_extraction(names, dataset, None, cache_dir)
        with progress_display() as display:
            records = run_full_grid(
                dataset, names, *grid, config=config, device=device, data_root=root, force=force, cache_dir=cache,
                on_result=lambda status, record, model: report(status, record, f"{dataset}/{model}"),
                on_epoch=None if display.enabled else lambda tag, info: log(
                    f"[dim]{escape(tag)} epoch {info['epoch'] + 1}/{info['epochs']}: loss {info['loss']:.3f}, "
                    f"val {info['val_accuracy']:.4f}[/]"),
                progress=display, shard=(shard_index, shard_count),
                on_partial=lambda model, finished, total: log(
                    f"[yellow]partial[/] {escape(dataset)}/{escape(model)}: {finished}/{total} grid points finished; "
                    f"the task that finishes the last one records it (or rerun without --shard)"),
            )
    else:
        only_with("--protocol full", {"--lrs": lrs, "--wds": wds, **{f"--{field.replace('_', '-')}": value
                                                                     for field, value in full_only.items()},
                                      "--device": device})
        cs_values = parse_cs(cs)
        if features:
            jobs = [job_from_features(fs, val=val, test=test, seed=seed)
                    for fs in load_feature_files(features, model_name, dataset_name, task)][shard_index::shard_count]
        else:
            names = names_of(models)
            check_extraction(names, dataset, None, cache_dir)
            names = names[shard_index::shard_count]  # --shard: this task's models
        with progress_display() as display:
            if not features:
                jobs = [job_from_registry(dataset, m, val=val, test=test, seed=seed, per_class=per_class,
                                          cache_dir=cache, data_root=root, progress=display, metric=metric)
                        for m in names]
            records = run_probes(jobs, protocol=protocol, cs=cs_values, metric=metric, refit=not no_refit, force=force,
                                 cache_dir=cache, progress=display,
                                 on_result=lambda status, record, job: report(status, record, f"{job.dataset}/{job.model}"))
    # A shard with no run of its own (`--shard 3/4` of two models) has no record: a frame without the record columns
    # made `--out` a KeyError (exit 1)
    table = pd.DataFrame(records, columns=RECORD_COLUMNS)
    if out is None or str(out) != "-":  # with --out - the records CSV is all that goes to stdout
        emit(_results_frame(table), fmt, title="fine-tune records")
    if out is not None:
        write_csv(export_records(table), out)


def _results_frame(table: "pd.DataFrame") -> "pd.DataFrame":
    """Records as people read them: dataset, model, protocol, metric, test, val, selected, seconds, time."""
    import pandas as pd

    columns = ["dataset", "model", "protocol", "metric", "test", "val", "selected", "seconds", "time"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({
        "dataset": table["dataset"], "model": table["model"], "protocol": table["protocol"], "metric": table["metric"],
        "test": table["test_metric"].astype(float), "val": table["val_metric"].astype(float),
        "selected": table["selected"].map(_selected_text), "seconds": table["seconds"].astype(float).round(1),
        "time": table["time"].str.slice(0, 16).str.replace("T", " "),  # to the minute: "2026-12-01 19:35"
    }).reset_index(drop=True)


def _selected_text(selected: str) -> str:
    """'{"C": 0.316}' -> 'C=0.316': the hyper-parameters a run selected on validation."""
    import json

    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in json.loads(selected).items())


def _check_filters(filters: dict[str, Optional[str]]) -> None:
    """A blank filter (``-d "$DATASET"`` with DATASET unset) is an error: `records ls` took it for no filter and
    listed every record. ``filters``: flag -> value, None when not given."""
    for flag, value in filters.items():
        if value is not None and not value.strip():
            raise ModelrankError(f"{flag} is empty; give a value (or leave the option out)")


#: -d / -m of `records ls` and `records rm` take globs, as `cache rm` takes entry names
DATASET_GLOB, MODEL_GLOB = "(or a quoted glob: 'task/*')", "(or a quoted glob: 'zoo/demo/*')"
records_app = typer.Typer(help="The fine-tune / probe records (ground truth) kept in the cache.", no_args_is_help=True)
app.add_typer(records_app, name="records")


@records_app.command("ls")
def records_ls(
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help=f"Only this dataset {DATASET_GLOB}."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help=f"Only this model {MODEL_GLOB}."),
    fmt: str = format_option(),
    out: Optional[Path] = out_option("the listing"),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """List the recorded runs."""
    from ..finetune import read_records
    from ..finetune.records import records_matching

    check_output(fmt, out)
    _check_filters({"-d": dataset, "-m": model})
    table = read_records(str(cache_dir) if cache_dir else None)
    table = table[records_matching(table, dataset=dataset, model=model)]
    # A record is a model's run on a dataset: both lead every block of a plain table cut to the terminal.
    emit(_results_frame(table), fmt, out, title=f"{len(table)} records", lead=2)


@records_app.command("export")
def records_export(
    out: Path = typer.Argument(..., help="CSV to write ('-' for stdout; public records layout: model, "
                               "finetuned_dataset, ..., eval_accuracy)."),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """Export every record as CSV, readable by `modelrank evaluate --truth` (one row per run: `--truth-where
    protocol=...` keeps one protocol, `--duplicates val` each model's run with the best validation metric)."""
    from ..finetune import export_records, read_records, records_path

    # The records table itself as OUT was replaced by the CSV: every record was lost.
    check_out(out, "OUT", [("records table", records_path(str(cache_dir) if cache_dir else None))])
    check_csv_name(out, "OUT")
    table = read_records(str(cache_dir) if cache_dir else None)
    write_csv(export_records(table), out)
    log(f"{len(table)} records exported")


@records_app.command("compact")
def records_compact(cache_dir: Optional[Path] = ExistingCacheDirOption) -> None:
    """Fold the per-run record files into the one records table (safe while other runs append)."""
    from ..finetune import compact_records

    # true wherever a Ctrl-C lands: one during the rewrite waits until the table holds what the run files held
    set_interrupt_note("no record was changed (a compaction moves them into one table); rerun to compact")
    done = compact_records(str(cache_dir) if cache_dir else None)
    err_console.print(f"{done['parts']} run file(s) folded; {done['records']} records in the table", soft_wrap=True)


@records_app.command("rm")
def records_rm(
    key: Optional[str] = typer.Option(None, "--key", help="Only the record with this key."),
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset",
                                          help=f"Only records of this dataset {DATASET_GLOB}."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help=f"Only records of this model {MODEL_GLOB}."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Only records of this protocol (linear | full)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """Remove the records matching every given filter (so that the runs are trained again)."""
    from ..finetune import remove_records

    cache = str(cache_dir) if cache_dir else None
    _check_filters({"--key": key, "-d": dataset, "-m": model, "--protocol": protocol})
    filters = {"key": key, "dataset": dataset, "model": model, "protocol": protocol}
    chosen = remove_records(cache, dry_run=True, **filters)
    for r in chosen.itertuples():
        console.print(escape(r.key), highlight=False, soft_wrap=True)  # data: one key a line
    if dry_run or chosen.empty:
        err_console.print(f"{len(chosen)} record(s) match{'' if chosen.empty else '; nothing removed (--dry-run)'}",
                          soft_wrap=True)
        return
    set_interrupt_note(f"nothing was removed: the {len(chosen)} listed record(s) are kept; rerun to remove them")
    if not yes and not confirmed(f"remove {len(chosen)} record(s)?",
                                 f"{len(chosen)} record(s) would be removed; confirm with --yes (list them: --dry-run)"):
        err_console.print("nothing removed", soft_wrap=True)
        return
    # What was listed and confirmed: records that a running job wrote since (while the question waited) stay.
    # A Ctrl-C during the rewrite waits until the table and the run files agree (one cut short removed some of the
    # records and brought the others back, under "nothing was written"): the note then says they are gone.
    def gone(records) -> None:
        set_interrupt_note(f"the {len(records)} record(s) were removed before stopping; every other record is kept")

    removed = remove_records(cache, among=set(chosen["key"]), on_removed=gone, **filters)
    err_console.print(f"removed {len(removed)} record(s)", soft_wrap=True)
