"""The `score` command: transferability metrics on cached or brought features."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Group

from ..display import escape
from ..errors import ModelrankError, short_list
from ..registry import names_of
from ._common import (
    set_interrupt_note,
    app, console, err_console, CacheDirOption, FeatureFilesOption, ModelNamesOption, DatasetNameOption,
    TaskOption, load_feature_files, key_values, progress_display, check_extraction, SizeOption,
    DataRootOption, SeedOption, check_data_options, DEVICE_HELP, PRECISION_HELP, SEVERAL,
)
from ._output import check_output, data_inputs, emit, format_option, out_option, write_csv


@app.command("score")
def score_cmd(
    features: Optional[list[Path]] = FeatureFilesOption,
    model_name: Optional[list[str]] = ModelNamesOption,
    dataset_name: str = DatasetNameOption,
    task: Optional[str] = TaskOption,
    metric: list[str] = typer.Option(["all"], "--metric",
                                     help=f"Metric names (modelrank list metrics), {SEVERAL}; or all."),
    ped: bool = typer.Option(False, "--ped", help="Score the PED-moved features (Li et al. ICCV'23): logme -> ped_logme, ..."),
    parameter: list[str] = typer.Option([], "--set", help="Metric parameter METRIC.KEY=VALUE, repeatable (e.g. transrate.eps=1e-3; "
                                        "modelrank list parameters); such a metric's column is named with it."),
    out: Optional[Path] = out_option("the scores (Dataset, Model, <metric>..., then <metric>_seconds, _flags, "
                                     "[_low, _high, _p_best,] _rank)"),
    fmt: str = format_option(),
    bootstrap: int = typer.Option(0, "--bootstrap", show_default=False,
                                  help="Resample the samples B times (seeded by --bootstrap-seed): "
                                  "each score's 95% interval and each model's probability of being best [default: off]."),
    bootstrap_seed: int = SeedOption("Seed of the --bootstrap resamples.", "--bootstrap-seed"),
    bootstrap_exact: bool = typer.Option(False, "--bootstrap-exact", help="Recompute every metric on every resample "
                                         "(LogME otherwise uses its resampled form: a few scores' cost)."),
    dataset: Optional[str] = typer.Option(None, "-d", "--dataset", help="Score cached/extracted features of this dataset (with -m)."),
    models: Optional[list[str]] = typer.Option(None, "-m", "--models", help=f"Model names (with -d), {SEVERAL}."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split for -d [default: the dataset's first]."),
    limit: Optional[int] = SizeOption("--limit", "Seeded random subset of at most N samples (-d)."),
    per_class: Optional[int] = SizeOption("--per-class", "Seeded subset of N samples per class (-d)."),
    seed: int = SeedOption("Seed of the subsampling (-d)."),
    device: Optional[str] = typer.Option(None, "--device", help=f"Extraction of missing features (-d): {DEVICE_HELP} "
                                         "[default: auto]."),
    precision: Optional[str] = typer.Option(None, "--precision", help=f"Extraction of missing features (-d): "
                                            f"{PRECISION_HELP} [default: auto]."),
    data_root: Optional[Path] = DataRootOption,
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Score models with transferability metrics and print a ranking per dataset."""
    set_interrupt_note("extracted features are kept in the feature cache; no scores were written; rerun to resume")
    from ..scoring import bootstrap_scores, check_metric_request, rank_scores, score_feature_sets, scoring_reporter
    from ._score_table import footnotes, plain_frame, score_tables

    check_output(fmt, out, data_inputs(dataset, features))
    if bootstrap < 0 or bootstrap == 1:
        raise ModelrankError(f"--bootstrap takes B >= 2 resamples (or 0 for none), not {bootstrap}")
    if bootstrap_exact and not bootstrap:
        raise ModelrankError("--bootstrap-exact goes with --bootstrap B")
    check_data_options(features, dataset, models, model_name, dataset_name, task,
                       {"--split": split, "--limit": limit, "--per-class": per_class, "--device": device,
                        "--precision": precision})
    metric_names = names_of(metric)
    if ped:
        from ..metrics.ped import ped_variant

        if metric_names == ["all"]:
            raise ModelrankError("--ped needs named metrics (e.g. --metric logme,sfda --ped)")
        metric_names = [ped_variant(name) for name in metric_names]
    params: dict[str, dict[str, object]] = {}
    for key, value in key_values(parameter, "--set").items():
        name, dot, field = key.partition(".")
        if not (dot and name and field):
            raise ModelrankError(f"--set takes METRIC.KEY=VALUE, got {key!r}")
        params.setdefault(ped_variant(name) if ped else name, {})[field] = value
    specs, _ = check_metric_request(metric_names, params)  # names, parameters and values before any extraction
    if features:
        feature_sets = load_feature_files(features, model_name, dataset_name, task)
    else:
        from ..extraction import check_device_options, load_feature_pairs

        names = names_of(models)
        device, precision = device or "auto", precision or "auto"
        check_device_options(device, precision)
        check_extraction(names, dataset, split, cache_dir)
        with progress_display() as display:
            loaded = load_feature_pairs([(m, dataset) for m in names], split, limit=limit, per_class=per_class,
                                        seed=seed, device=device, precision=precision,
                                        cache_dir=str(cache_dir) if cache_dir else None,
                                        data_root=str(data_root) if data_root else None, progress=display)
        feature_sets = [loaded[m, dataset] for m in names]
    with progress_display() as display:
        frame = score_feature_sets(feature_sets, metric_names, **params,
                                   progress=scoring_reporter(display, len(feature_sets), len(specs)))
        if bootstrap:
            frame = bootstrap_scores(feature_sets, frame, bootstrap, bootstrap_seed, exact=bootstrap_exact, **params,
                                     progress=scoring_reporter(display, len(feature_sets), None, "bootstrap"))
    for note in frame.attrs["notes"]:
        err_console.print(f"[yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)
    frame = rank_scores(frame)
    if fmt == "table" and (out is None or str(out) != "-"):
        if console.is_terminal:
            console.print(Group(*score_tables(frame, console.width)))
        else:
            emit(plain_frame(frame), "table")
        for line in footnotes(frame):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        if out is not None:
            write_csv(frame, out)
    else:
        emit(frame, fmt, out)
        for line in footnotes(frame):  # why ranks are blank: stdout holds only the data, so they go to stderr
            err_console.print(line, highlight=False, soft_wrap=True, markup=False)
    failures = frame.attrs["failures"]
    where = f"written to {out}" if out else "shown above"
    if failures:  # the other metrics' scores are shown and written, yet the run did not do all that was asked: exit 2
        raise ModelrankError(f"{len(failures)} of {len(frame.attrs['higher_is_better'])} metrics failed "
                             f"({', '.join(failures)}; the warnings above say why); the other scores are {where}")
    # Under --metric all every metric may skip a model (text labels under --task regression, a single sample), each
    # with a note: the others were ranked without it and the run exited 0, as if the model had been scored.
    unscored = frame[list(frame.attrs["higher_is_better"])].isna().all(axis=1)
    if unscored.any():
        models = [f"{model}/{dataset}" for dataset, model in frame.loc[unscored, ["Dataset", "Model"]].to_numpy()]
        raise ModelrankError(f"no metric could score {short_list(models)} (the notes above say why); the other scores "
                             f"are {where}")
