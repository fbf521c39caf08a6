"""Built zoo models are ordinary registry models: ``zoo/<preset>/<arch>-<source>`` read from the cache.

``modelrank zoo build`` writes ``<cache>/zoo/<preset>/manifest.json`` (one record per model: architecture,
base model, source dataset, parameters, source accuracy, weights file with its sha256, the training config).
``register_zoo_models`` turns every record into a ``ModelSpec``; ``modelrank.models`` calls it lazily (when a
``zoo/...`` name is asked for, and when listing), so importing modelrank does no work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

from ..cache import atomic_write_bytes, cache_root
from ..errors import InvalidInputError, MissingResourceError
from ..models.base import MODELS, ModelSpec


def zoo_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "zoo"


def manifest_path(preset: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return zoo_root(cache_dir) / preset / "manifest.json"


def read_manifest(preset: str, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The zoo's manifest; an absent one is empty, a damaged one (unparsable, or not {"preset", "models": {...}})
    is reported and read as empty: `zoo build` rewrites it from the finished runs, which it does not retrain."""
    path = manifest_path(preset, cache_dir)
    empty = {"preset": preset, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        warnings.warn(f"zoo manifest {path} is unreadable ({exc}); run `modelrank zoo build` to rewrite it")
        return empty
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        warnings.warn(f"zoo manifest {path} is not a zoo manifest; run `modelrank zoo build` to rewrite it")
        return empty
    return {**manifest, "preset": preset}


def write_manifest(manifest: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    path = manifest_path(manifest["preset"], cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return path


def _spec(record: dict[str, Any], folder: Path) -> ModelSpec:
    meta = {k: record[k] for k in ("base", "source_dataset", "source_accuracy", "source_classes", "zoo_preset") if k in record}
    description = (f"{record['base']} fine-tuned on {record['source_dataset']} "
                   f"(source accuracy {record['source_accuracy']:.3f}), {record['input_size']} px"
                   if record.get("weights") else f"{record['base']} as pretrained, {record['input_size']} px")
    if not record.get("weights"):  # the base model itself, read at the zoo's input size
        base = MODELS.get(record["base"]) if record["base"] in MODELS else None
        if base is not None:
            return dataclasses.replace(base, name=record["name"], input_size=record["input_size"], meta=meta,
                                       description=description)
        return ModelSpec(record["name"], arch=record["base"], family=record["family"], pretraining=record["pretraining"],
                         source="zoo build", input_size=record["input_size"], meta=meta, description=description)
    weights = str(folder / record["weights"])
    return ModelSpec(
        record["name"], arch=record["arch"], family=record["family"], pretraining=record["pretraining"],
        source=f"zoo build ({record['zoo_preset']})", weights=lambda: _verified(weights, record),
        input_size=record["input_size"],
        num_classes=record["num_classes"], meta=meta, description=description,
    )


def _verified(weights: str, record: dict[str, Any]) -> str:
    """The zoo model's weights file, once its sha256 matches the manifest (a damaged or replaced file is refused
    before it is loaded)."""
    from ..models import file_fingerprint

    if not os.path.isfile(weights):
        raise MissingResourceError(f"{record['name']}: weights {weights} are missing; run `modelrank zoo build`")
    if file_fingerprint(weights) != record.get("sha256"):
        raise InvalidInputError(f"{record['name']}: {weights} does not match the sha256 in the zoo manifest; "
                                f"run `modelrank zoo build --preset {record.get('zoo_preset', '?')}` to rebuild it")
    return weights


def register_zoo_models(cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Register every model of every built zoo under ``cache_dir``; returns their names.

    A name registered before from a different record (another cache folder, a rebuilt zoo) is replaced.
    """
    root = zoo_root(cache_dir)
    names = []
    for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        manifest = read_manifest(path.parent.name, cache_dir)
        for name, record in manifest.get("models", {}).items():
            try:
                stamp = {**record, "folder": str(path.parent)}
                if name in MODELS and MODELS.entry(name).meta.get("record") == stamp:
                    names.append(name)
                    continue
                spec = _spec(record, path.parent)
            except (KeyError, TypeError, ValueError) as exc:
                warnings.warn(f"zoo manifest {path}: the record of {name} is damaged ({exc!r}); skipped")
                continue
            MODELS.remove(name)
            MODELS.add(name, spec, record=stamp)
            names.append(name)
    return names
