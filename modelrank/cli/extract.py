"""The `extract` command: features into the shared cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelrankError
from ..registry import names_of
from ._common import (
    set_interrupt_note, app, CacheDirOption, DataRootOption, MAX_WORKERS, SizeOption, check_extraction, progress_display,
    SeedOption, DEVICE_HELP, PRECISION_HELP, SEVERAL,
)
from ._output import check_format, emit, format_option


@app.command("extract")
def extract_cmd(
    models: list[str] = typer.Option(..., "-m", "--models", help=f"Model names (modelrank list models), {SEVERAL}."),
    dataset: str = typer.Option(..., "-d", "--dataset", help="Dataset name, folder:PATH or csv:PATH."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False,
                                              help="Local weights for the (single) model: same as -m ARCH@PATH."),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test | trainval | all | extra, as the "
                                        "dataset has them (modelrank list datasets) [default: the dataset's first]."),
    limit: Optional[int] = SizeOption("--limit", "Seeded random subset of at most N samples."),
    per_class: Optional[int] = SizeOption("--per-class", "Seeded subset of N samples per class."),
    seed: int = SeedOption("Seed of the subsampling."),
    batch_size: int = SizeOption("--batch-size", "Images per forward pass.", 64, short="-b"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    workers: Optional[int] = SizeOption("--workers", f"Data-loading processes, at most 4 per CPU core ({MAX_WORKERS} "
                                        "here) [default: auto].", minimum=0, maximum=MAX_WORKERS),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: compute only the chunks j with j mod n = i (job arrays)."),
    data_root: Optional[Path] = DataRootOption,
    download: bool = typer.Option(False, "--download", help="Let torchvision download a missing dataset (needs network)."),
    fmt: str = format_option(),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Extract penultimate features, source logits and labels into the Parquet feature cache.

    Interrupted runs resume: only missing chunks are computed. Progress goes to stderr, the summary to stdout.
    """
    set_interrupt_note("finished chunks are kept in the feature cache; rerun the same command to resume")
    import pandas as pd

    check_format(fmt)
    names = names_of(models)
    if checkpoint:
        if len(names) != 1:
            raise ModelrankError("--checkpoint goes with exactly one model")
        if "@" in names[0]:  # it became ARCH@PATH@PATH: "weight file PATH@PATH does not exist"
            raise ModelrankError(f"-m {names[0]} names its weight file already; give it either after the @ or with "
                                 "--checkpoint, not both")
        names = [f"{names[0]}@{checkpoint}"]
    with progress_display() as display:
        display("extract", "loading the model registry", 0, None)  # seconds on a cold start
        from ..extraction import check_device_options, extract, parse_shard

        shard_spec = parse_shard(shard)
        check_device_options(device, precision)
        check_extraction(names, dataset, split, cache_dir)
        summaries = extract(
            names, dataset, split, limit=limit, per_class=per_class, seed=seed, batch_size=batch_size,
            device=device, precision=precision, workers=workers, shard=shard_spec, cache_dir=cache_dir,
            data_root=data_root,
            download=download, progress=display,
        )
    frame = pd.DataFrame([{
        "model": s["model"], "family": s["model_info"]["family"], "params": f"{s['model_info']['params'] / 1e6:.1f}M",
        "input": "x".join(map(str, s["model_info"]["input_size"][1:])), "samples": s["samples"],
        "computed": s["computed"], "img/s": s["images_per_s"] if s["images_per_s"] else "cached",
        "complete": "yes" if s["complete"] else "partial (other shards)",
    } for s in summaries])
    emit(frame, fmt, title=f"features of {dataset}/{summaries[0]['split']}")
