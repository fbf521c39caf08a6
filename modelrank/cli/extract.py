"""The `extract` command: features into the shared cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelrankError
from ._common import set_interrupt_note, app, console, CacheDirOption, split_names, print_table


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
    set_interrupt_note("finished chunks are kept in the feature cache; rerun the same command to resume")
    from ..extraction import ExtractProgress, extract

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
