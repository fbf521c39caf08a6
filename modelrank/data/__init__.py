"""Dataset registry: torchvision datasets, datasets that ship inside packages, and user folders / CSVs."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError, MissingResourceError
from . import packaged, torchvision_sets  # noqa: F401  (register on import)
from .base import DATASETS, SPLITS, CorruptImageError, DatasetSpec, ImageDataset, register_dataset
from .files import FILE_SPLITS, check_file_split, load_csv, load_folder
from ..zoo import tasks as _zoo_tasks  # noqa: F401,E402  (registers mnist-sample, faces, textures, source/*, task/*)


def check_dataset(name: str, split: str | None = None) -> None:
    """Fail as ``load_dataset`` would on an unknown dataset or split or a missing folder / CSV, without loading
    anything: commands check their arguments before the work starts."""
    if split is not None and split not in SPLITS + ("extra",):
        raise InvalidInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    kind, _, path = name.partition(":")
    if kind in ("folder", "csv") and path:
        if not Path(path).expanduser().exists():  # the shell leaves the ~ of folder:~/x alone
            raise MissingResourceError(f"{kind} {path} does not exist")
        if split is not None:
            check_file_split(name, split)
        return
    spec = DATASETS.get(name)
    if split is not None and split not in spec.splits:
        raise InvalidInputError(f"dataset {name} has splits {', '.join(spec.splits)}, not {split!r}")


def load_dataset(name: str, split: str | None = None, root: str | None = None, download: bool = False) -> ImageDataset:
    """Load one split of a registered dataset, ``folder:PATH`` or ``csv:PATH``.

    ``split=None`` takes the dataset's first split (``train`` where there is one, else ``trainval`` or ``all``).
    """
    check_dataset(name, split)
    if name.startswith("folder:"):
        return load_folder(name.split(":", 1)[1], split or "all")
    if name.startswith("csv:"):
        return load_csv(name.split(":", 1)[1], split or "all")
    spec = DATASETS.get(name)
    return spec.loader(split=split or spec.splits[0], root=root, download=download)


def list_dataset_rows() -> tuple[list[str], list[list[str]]]:
    rows = [[e.name, e.obj.source, ", ".join(e.obj.splits), e.obj.description] for e in DATASETS]
    rows.append(["folder:PATH", "your files", ", ".join(FILE_SPLITS), "one sub-folder per class (ImageFolder layout)"])
    rows.append(["csv:PATH", "your files", ", ".join(FILE_SPLITS),
                 "columns path,label or path,target (regression), optionally split (its rows are the splits); "
                 "paths relative to the CSV's folder"])
    return ["name", "source", "splits", "description"], rows


__all__ = [
    "DATASETS", "SPLITS", "CorruptImageError", "DatasetSpec", "ImageDataset", "check_dataset", "list_dataset_rows", "load_csv",
    "load_dataset", "load_folder", "register_dataset",
]
