"""The torchvision datasets used in the transferability literature, loaded from --data-root.

Their archives come from the internet: ``--download`` passes through to torchvision for users with network;
without it a missing dataset says exactly where it was looked for. Their ``meta["definition"]`` (part of the
feature-cache key) is the resolved folder (or file) the torchvision class reads under the root and a fingerprint
of its files' names, sizes and modification times (``files_definition``): two copies under two roots, or a copy
changed in place, never share features.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, MissingResourceError
from .base import ImageDataset, files_definition, register_dataset, seeded_split

# name -> (torchvision class, split name -> constructor kwargs, attribute(s) holding the labels, the folder or file
# the class reads, relative to the root: torchvision's own names, "{split}" filled in)
TORCHVISION_DATASETS: dict[str, tuple[str, dict[str, dict[str, Any]], str, str]] = {
    "pets": ("OxfordIIITPet", {"trainval": {"split": "trainval"}, "test": {"split": "test"}}, "_labels",
             "oxford-iiit-pet"),
    "cifar10": ("CIFAR10", {"train": {"train": True}, "test": {"train": False}}, "targets", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", {"train": {"train": True}, "test": {"train": False}}, "targets", "cifar-100-python"),
    "dtd": ("DTD", {s: {"split": s} for s in ("train", "val", "test")}, "_labels", "dtd"),
    "aircraft": ("FGVCAircraft", {s: {"split": s} for s in ("train", "val", "trainval", "test")}, "_labels",
                 "fgvc-aircraft-2013b"),
    "cars": ("StanfordCars", {s: {"split": s} for s in ("train", "test")}, "_samples", "stanford_cars"),
    "flowers102": ("Flowers102", {s: {"split": s} for s in ("train", "val", "test")}, "_labels", "flowers-102"),
    "caltech101": ("Caltech101", {"all": {}, "train": {}, "test": {}}, "y", "caltech101"),
    "sun397": ("SUN397", {"all": {}, "train": {}, "test": {}}, "_labels", "SUN397"),
    "food101": ("Food101", {s: {"split": s} for s in ("train", "test")}, "_labels", "food-101"),
    "eurosat": ("EuroSAT", {"all": {}, "train": {}, "test": {}}, "targets", "eurosat"),
    "stl10": ("STL10", {s: {"split": s} for s in ("train", "test")}, "labels", "stl10_binary"),
    "svhn": ("SVHN", {s: {"split": s} for s in ("train", "test", "extra")}, "labels", "{split}_32x32.mat"),
}


def _targets(ds: Any, attribute: str) -> np.ndarray:
    values = getattr(ds, attribute)
    if attribute == "_samples":  # StanfordCars keeps (path, label) pairs
        values = [label for _, label in values]
    return np.asarray(values, dtype=np.int64)


def _class_names(ds: Any) -> list[str] | None:
    for attr in ("classes", "categories"):
        names = getattr(ds, attr, None)
        if names:
            return [str(n) for n in names]
    return None


def _image(ds: Any, keep: np.ndarray, i: int):
    return ds[int(keep[i])][0].convert("RGB")


def _make_loader(key: str, cls_name: str, splits: dict[str, dict[str, Any]], attribute: str,
                 reads: str) -> Callable[..., ImageDataset]:
    def load(split: str = "train", root: str | None = None, download: bool = False, **_) -> ImageDataset:
        import torchvision.datasets as tvd

        if split not in splits:
            raise InvalidInputError(f"dataset {key} has splits {', '.join(splits)}, not {split!r}")
        root = root or os.environ.get("MODELRANK_DATA", os.path.expanduser("~/.cache/modelrank/data"))
        cls = getattr(tvd, cls_name)
        try:
            ds = cls(root, download=download, **splits[split])
        except (RuntimeError, FileNotFoundError) as exc:
            hint = "" if download else " Pass --download to fetch it (needs network), or point --data-root at a copy."
            raise MissingResourceError(f"dataset {key} ({cls_name}) not found under {root}: {exc}.{hint}") from None
        targets = _targets(ds, attribute)
        # Datasets published without a split get a seeded stratified one.
        keep = seeded_split(targets, split) if not splits[split] and split != "all" else np.arange(len(targets))
        # The split's own file for SVHN; the class's folder (every split's files) for the others.
        definition = files_definition(Path(root) / reads.format(split=split))
        return ImageDataset(key, split, targets[keep], partial(_image, ds, keep), _class_names(ds),
                            meta={"torchvision": cls_name, "definition": definition})

    return load


for _key, (_cls, _splits, _attr, _reads) in TORCHVISION_DATASETS.items():
    register_dataset(
        _key, splits=tuple(_splits), source="torchvision", needs_root=True,
        description=f"torchvision.datasets.{_cls} under --data-root",
    )(_make_loader(_key, _cls, _splits, _attr, _reads))
