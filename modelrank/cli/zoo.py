"""The `zoo` and `benchmark` commands: the offline multi-source zoo and the end-to-end benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from ..display import escape
from ._common import (
    set_interrupt_note, app, err_console, CacheDirOption, DataRootOption, ExistingCacheDirOption, folder_path, log,
    progress_display,
)
from ._output import check_format, check_out, check_output, emit, format_option, json_records, out_option

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import ProgressDisplay
    from ..zoo.pipeline import BenchmarkResult

zoo_app = typer.Typer(help="The offline multi-source model zoo: ImageNet models fine-tuned on packaged datasets.",
                      no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
PresetOption = typer.Option("demo", "--preset", help="ci (seconds, tiny models) | demo (minutes on 2 CPU cores) | full.")
DeviceOption = typer.Option("auto", "--device", help="auto (CUDA with AMP if present), cpu, cuda ...")


def _zoo_frame(zoo: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({
        "model": zoo["name"], "family": zoo["family"], "source": zoo["source_dataset"], "classes": zoo["num_classes"],
        "params": _millions(zoo["params"]), "trained": _millions(zoo["trained_params"]),
        "px": zoo["input_size"], "source acc": zoo["source_accuracy"].astype(float).round(3), "sha256": zoo["sha256"],
    })


def _millions(counts: "pd.Series") -> "pd.Series":
    """Parameter counts as "3.38M"; blank where a record has none (it was "nanM")."""
    import pandas as pd

    return counts.map(lambda count: "" if pd.isna(count) else f"{count / 1e6:.2f}M")


def _zoo_events(display: "ProgressDisplay") -> Callable[[str, str, dict], None]:
    """Log lines of `zoo build` on stderr: each model as it starts and ends (epochs too when no bar shows them)."""

    def event(kind: str, name: str, info: dict) -> None:
        if kind == "start":
            log(f"[bold]{info['index'] + 1}/{info['total']}[/] {escape(name)}")
        elif kind == "epoch":
            if not display.enabled:
                log(f"    epoch {info['epoch'] + 1}/{info['epochs']}  loss {info['loss']:.3f}  "
                    f"val acc {info['val_accuracy']:.3f}")
        else:
            log(f"    {kind}: source accuracy {info['source_accuracy']:.3f} ({info['seconds']:.0f} s)")

    return event


def _check_run(preset: str, device: str) -> None:
    from ..extraction import resolve_device
    from ..zoo.presets import get_preset

    get_preset(preset)
    resolve_device(device)


@zoo_app.command("build")
def zoo_build_cmd(
    preset: str = PresetOption,
    device: str = DeviceOption,
    data_root: Optional[Path] = DataRootOption,
    fmt: str = format_option(),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Fine-tune every base model of the preset on every source dataset (resumable; finished models are skipped)."""
    set_interrupt_note("finished models (and the current one's last epoch) are kept; rerun the same command to resume")
    from ..zoo.build import build_zoo

    check_format(fmt)
    _check_run(preset, device)
    with progress_display() as display:
        zoo = build_zoo(preset, cache_dir=cache_dir, device=device, data_root=str(data_root) if data_root else None,
                        on_event=_zoo_events(display), progress=display)
    emit(_zoo_frame(zoo), fmt, title=f"zoo/{preset}")


@zoo_app.command("ls")
def zoo_ls_cmd(
    preset: str = PresetOption,
    fmt: str = format_option(),
    out: Optional[Path] = out_option("the listing"),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """Show a built zoo's models and their metadata."""
    from ..zoo.build import zoo_table
    from ..zoo.presets import get_preset

    check_output(fmt, out)
    get_preset(preset)
    zoo = zoo_table(preset, cache_dir)
    if zoo.empty:
        err_console.print(f"zoo/{escape(preset)} is not built in this cache: modelrank zoo build --preset "
                          f"{escape(preset)}", highlight=False, soft_wrap=True)
    emit(_zoo_frame(zoo), fmt, out, title=f"zoo/{preset}")


def _results_folder(value: str) -> Path:
    """``benchmark --out``: a folder. '-', stdout for every other --out, would be a results folder named '-'."""
    if value.strip() == "-":
        raise typer.BadParameter("the results are a folder, not stdout; for a table on stdout use --format csv|json")
    return folder_path(value)


@app.command("benchmark")
def benchmark_cmd(
    preset: str = PresetOption,
    out: Optional[Path] = typer.Option(None, "--out", parser=_results_folder, metavar="DIR",
                                       help="Results folder [default: <cache>/benchmark/<preset>]."),
    device: str = DeviceOption,
    pool: Optional[int] = typer.Option(None, "--pool", min=0, help="Training tasks of the pool stage (learned rankers "
                                       "trained on sampled tasks, compared on held-out ones); 0: no pool stage "
                                       "[default: the preset's, ci 12, demo 200, full 300]."),
    data_root: Optional[Path] = DataRootOption,
    fmt: str = typer.Option("table", "--format", help="table | csv (the weighted-tau table only; every table is also "
                            "a CSV file in the results folder) | json (every table in one object)."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Zoo x target tasks: extract, score with every metric, fine-tune, evaluate; prints the weighted-tau table,
    then the pool stage's held-out comparison of the learned rankers (paired, per task).

    Every stage reuses the cache, so a rerun after an interruption does only what is missing.
    """
    set_interrupt_note("every finished stage's results are kept in the cache; rerun the same command to resume")
    from ..zoo.pipeline import run_benchmark

    check_format(fmt)
    _check_run(preset, device)
    if out is not None and not out.exists():
        check_out(out)  # the folder is created, so its parent must exist and be writable
    with progress_display() as display:
        result = run_benchmark(
            preset, cache_dir=cache_dir, out_dir=out, device=device, data_root=str(data_root) if data_root else None,
            on_stage=lambda stage, message: log(f"[bold cyan]{stage}[/] {escape(message)}"),
            zoo_events=_zoo_events(display), progress=display, pool_tasks=pool,
        )
    # The reasons for the table's blank cells ("no ranking": tied scores, a constant truth) and other warnings.
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    sanity = result.sanity[["task", "best_model", "best_accuracy", "worst_accuracy", "spread", "seed_std", "noise",
                            "f_stat", "p_value"]]
    if fmt == "json":
        _print_benchmark_json(result, sanity)
    elif fmt == "csv":
        emit(result.table.reset_index(), "csv")
    else:
        emit(result.table.round(3).reset_index(),
             title=f"weighted tau (Model Spider convention) vs linear probe, {result.preset}")
        if result.full_table is not None:
            emit(result.full_table.round(3).reset_index(), title="weighted tau vs fine-tuning")
        emit(sanity.round(3), title="ground truth: spread across models vs seed noise")
        if result.pool_table is not None:
            held = int(result.pool_tasks["held_out"].sum())
            # A row is a learner's weighted tau under a protocol versus another row: all four lead every block of a
            # plain table cut to the terminal (with the learner alone, the later blocks did not say which row was which).
            emit(result.pool_table.round(4), title=f"pool: trained on {len(result.pool_tasks) - held} sampled tasks, "
                 f"weighted tau on {held} held-out ones, paired per task (beats / loses only beyond 2 SE)", lead=4)
    log(f"stage seconds: {result.stage_seconds}; results in {escape(str(result.out_dir))}")


def _print_benchmark_json(result: "BenchmarkResult", sanity: "pd.DataFrame") -> None:
    """Every table of a benchmark run as one JSON object on stdout (NaN as null), for programs."""
    import json
    import sys

    def records(frame: "pd.DataFrame | None") -> list | None:
        return None if frame is None else json_records(frame)

    document = {
        "preset": result.preset, "results_dir": str(result.out_dir),
        "weighted_tau": records(result.table.reset_index()),
        "weighted_tau_finetune": records(None if result.full_table is None else result.full_table.reset_index()),
        "ground_truth": records(sanity), "pool": records(result.pool_table), "stage_seconds": result.stage_seconds,
    }
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
