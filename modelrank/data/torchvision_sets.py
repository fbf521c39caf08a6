"""The torchvision datasets used in the transferability literature, loaded from --data-root.

Their archives come from the internet: ``--download`` passes through to torchvision for users with network;
without it a missing dataset says exactly where it was looked for.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, MissingResourceError
from .base import ImageDataset, register_dataset, seeded_split

# name -> (torchvision class, split name -> constructor kwargs, attribute(s) holding the labels)
TORCHVISION_DATASETS: dict[str, tuple[str, dict[str, dict[str, Any]], str]] = {
    "pets": ("OxfordIIITPet", {"trainval": {"split": "trainval"}, "test": {"split": "test"}}, "_labels"),
    "cifar10": ("CIFAR10", {"train": {"train": True}, "test": {"train": False}}, "targets"),
    "cifar100": ("CIFAR100", {"train": {"train": True}, "test": {"train": False}}, "targets"),
    "dtd": ("DTD", {s: {"split": s} for s in ("train", "val", "test")}, "_labels"),
    "aircraft": ("FGVCAircraft", {s: {"split": s} for s in ("train", "val", "trainval", "test")}, "_labels"),
    "cars": ("StanfordCars", {s: {"split": s} for s in ("train", "test")}, "_samples"),
    "flowers102": ("Flowers102", {s: {"split": s} for s in ("train", "val", "test")}, "_labels"),
    "caltech101": ("Caltech101", {"all": {}, "train": {}, "test": {}}, "y"),
    "sun397": ("SUN397", {"all": {}, "train": {}, "test": {}}, "_labels"),
    "food101": ("Food101", {s: {"split": s} for s in ("train", "test")}, "_labels"),
    "eurosat": ("EuroSAT", {"all": {}, "train": {}, "test": {}}, "targets"),
    "stl10": ("STL10", {s: {"split": s} for s in ("train", "test")}, "labels"),
    "svhn": ("SVHN", {s: {"split": s} for s in ("train", "test", "extra")}, "labels"),
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


def _make_loader(key: str, cls_name: str, splits: dict[str, dict[str, Any]], attribute: str) -> Callable[..., ImageDataset]:
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
        return ImageDataset(key, split, targets[keep], partial(_image, ds, keep), _class_names(ds),
                            meta={"torchvision": cls_name})

    return load


for _key, (_cls, _splits, _attr) in TORCHVISION_DATASETS.items():
    register_dataset(
        _key, splits=tuple(_splits), source="torchvision", needs_root=True,
        description=f"torchvision.datasets.{_cls} under --data-root",
    )(_make_loader(_key, _cls, _splits, _attr))
