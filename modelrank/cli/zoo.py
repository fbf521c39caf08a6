"""The `zoo` and `benchmark` commands: the offline multi-source zoo and the end-to-end benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._common import set_interrupt_note, app, console, err_console, CacheDirOption, print_table


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
    set_interrupt_note("finished models (and the current one's last epoch) are kept; rerun the same command to resume")
    from ..zoo.build import build_zoo

    zoo = build_zoo(preset, cache_dir=cache_dir, device=device, data_root=str(data_root) if data_root else None,
                    on_event=_zoo_event)
    print_table(f"zoo/{preset}", ZOO_COLUMNS, _zoo_rows(zoo))


@zoo_app.command("ls")
def zoo_ls_cmd(preset: str = PresetOption, cache_dir: Optional[Path] = CacheDirOption) -> None:
    """Show a built zoo's models and their metadata."""
    from ..zoo.build import zoo_table

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
    set_interrupt_note("every finished stage's results are kept in the cache; rerun the same command to resume")
    from ..evaluate.report import print_wide
    from ..zoo.pipeline import run_benchmark

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
