"""`modelrank zoo build`: fine-tune every (base model, source dataset) pair of a preset into a multi-source zoo.

Model Spider's multi-source zoo (architectures x source datasets, each fine-tuned from ImageNet) in miniature:
each base model gets a fresh head and is fine-tuned on each source's train split (``finetune_full``), early
stopped on a validation split and scored on the source's test split (the "source accuracy" in the metadata).
Weights go to ``<cache>/zoo/<preset>/<arch>-<source>/weights.pt`` with their sha256 and the full config in
the manifest. Deterministic given the preset's seed; resumable at two levels (finished models are skipped, an
interrupted model continues from its last epoch).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..data import load_dataset
from ..finetune.full import finetune_full
from ..models import file_fingerprint, load_model
from ..models.base import MODELS
from ..progress import ProgressFn, epoch_reporter, report
from .presets import Preset, get_preset
from .registry import manifest_path, read_manifest, register_zoo_models, write_manifest, zoo_root

#: on_event(kind, model_name, info): kind is "start" (info: index, total), "epoch" (the epoch's metrics),
#: "done" (the model's record) or "cached" (the record of a model built before).
EventFn = Callable[[str, str, dict[str, Any]], None]


def _stamp(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of ``path``, None when absent: what tells a reused file from a rewritten one."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _pretraining(base: str) -> str:
    return MODELS.get(base).pretraining if base in MODELS else ("none (random init)" if base.startswith("random:") else base)


def build_zoo(
    preset: str | Preset,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    data_root: str | None = None,
    on_event: EventFn | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Build (or finish building) a preset's zoo; returns one metadata row per zoo model.

    ``progress`` shows the model k/N (row "zoo") and its epochs (row "epoch")."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    folder = zoo_root(cache_dir) / preset.name
    manifest = read_manifest(preset.name, cache_dir)
    manifest.setdefault("models", {})
    # Every source is read before the first model trains: a missing one (Fashion-MNIST not installed for `full`) is
    # an error now, not after the models of the sources before it have trained.
    for source in preset.sources:
        load_dataset(source, "train", root=data_root)
    jobs = [(arch, source) for arch in preset.archs for source in preset.sources]
    for index, (arch, source) in enumerate(jobs):
        base = preset.archs[arch]
        name = preset.zoo_name(arch, source)
        if on_event:
            on_event("start", name, {"index": index, "total": len(jobs)})
        report(progress, "zoo", f"zoo/{preset.name}: fine-tuning {name}", index, len(jobs))
        checkpoint = folder / name.rsplit("/", 1)[1]
        finished = _stamp(checkpoint / "result.json")  # unchanged after the call: the finished run was reused
        result = finetune_full(
            base, source, split="train", test_split="test", config=preset.source_training, device=device,
            checkpoint_dir=checkpoint, data_root=data_root,
            progress=epoch_reporter(progress, f"{name}: epochs", preset.source_training.epochs,
                                    (lambda info, name=name: on_event("epoch", name, info)) if on_event else None),
        )
        cached = finished is not None and _stamp(checkpoint / "result.json") == finished
        spec = MODELS.get(base) if base in MODELS else None
        record = {
            "name": name, "arch": spec.arch if spec else base.removeprefix("random:"), "base": base,
            "family": spec.family if spec else base.removeprefix("random:").split("_")[0],
            "pretraining": f"{_pretraining(base)} → {source.removeprefix('source/')}",
            "source_dataset": source, "source_classes": result.classes, "num_classes": len(result.classes),
            "source_accuracy": result.test_accuracy, "source_val_accuracy": result.val_accuracy,
            "params": result.total_params, "trained_params": result.trained_params, "input_size": preset.input_size,
            "weights": f"{name.rsplit('/', 1)[1]}/weights.pt", "sha256": file_fingerprint(result.weights),
            "train_samples": result.n_train, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
            "seconds": result.seconds, "config": result.config, "zoo_preset": preset.name,
        }
        manifest["models"][name] = record
        write_manifest(manifest, cache_dir)
        if on_event:
            on_event("cached" if cached else "done", name, record)
    report(progress, "zoo", f"zoo/{preset.name} built", len(jobs), len(jobs))
    if preset.include_base:
        for arch, base in preset.archs.items():
            loaded = load_model(base, input_size=preset.input_size)
            manifest["models"][preset.base_name(arch)] = {
                "name": preset.base_name(arch), "arch": loaded.info["arch"], "base": base, "family": loaded.info["family"],
                "pretraining": _pretraining(base), "source_dataset": "imagenet-1k", "source_classes": [],
                "num_classes": loaded.info["num_classes"], "source_accuracy": None, "params": loaded.info["params"],
                "trained_params": 0, "input_size": preset.input_size, "weights": None, "sha256": loaded.fingerprint,
                "zoo_preset": preset.name,
            }
        write_manifest(manifest, cache_dir)
    register_zoo_models(cache_dir)
    return zoo_table(preset.name, cache_dir)


#: the numeric fields of a zoo table (blank where a record has none)
ZOO_NUMBERS = ("num_classes", "params", "trained_params", "input_size", "source_accuracy", "epochs_run", "seconds")


def zoo_table(preset: str, cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The metadata of a built zoo, one row per model, in build order.

    A damaged record is left out and a field that is not a number left blank, each with a warning (as
    ``register_zoo_models`` skips such records): one record that was no dict blanked every row of `zoo ls`, and
    text in ``params`` or ``source_accuracy`` was a traceback."""
    columns = ["name", "family", "base", "source_dataset", "num_classes", "params", "trained_params", "input_size",
               "source_accuracy", "epochs_run", "seconds", "sha256"]
    records = []
    for name, record in read_manifest(preset, cache_dir)["models"].items():
        if isinstance(record, dict):
            records.append(record)
        else:
            warnings.warn(f"zoo manifest {manifest_path(preset, cache_dir)}: the record of {name} is damaged (not a "
                          "record); skipped")
    table = pd.DataFrame(records).reindex(columns=columns)
    for column in ZOO_NUMBERS:
        values = pd.to_numeric(table[column], errors="coerce")
        wrong = values.isna() & table[column].notna()
        if wrong.any():
            model, value = table.loc[wrong, "name"].iloc[0], table.loc[wrong, column].iloc[0]
            warnings.warn(f"zoo manifest {manifest_path(preset, cache_dir)}: {column} of {model} is not a number "
                          f"({value!r}); left blank")
        table[column] = values
    return table
