"""Datasets a user brings: a folder of class sub-folders, or a CSV of image paths and labels/targets.

Their ``meta["definition"]`` (part of the feature-cache key) holds the resolved path and a fingerprint of the
sample list: the sha256 of every image's resolved path (and of the CSV's bytes). The same relative path in two
projects, relabelled rows, or added or removed images therefore never reuse stale features. ``meta["stamp"]``
stamps the images themselves (sizes and modification times) for any set of samples: the cache stores it with
each chunk, so an image replaced in place (a corrupt one repaired) makes only its own chunk be extracted again.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, MissingResourceError, ModelrankError
from ..tabular import column_any_case, read_csv_file
from .base import ImageDataset, files_under, open_image, seeded_split, stat_digest

#: A folder or CSV is one pool of samples: ``all``, or a seeded 80/20 cut of it into ``train`` and ``test``.
FILE_SPLITS = ("all", "train", "test")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def check_file_split(name: str, split: str) -> None:
    """Any other split (``val``, ``trainval``) would have been the ``train`` cut under another name. A CSV with a
    ``split`` column has the splits it names (checked when it is read: ``load_csv``)."""
    kind, _, path = name.partition(":")
    if not (kind == "csv" and _has_split_column(Path(path).expanduser())):
        _check_cut_split(name, split)


def csv_splits(data: ImageDataset) -> tuple[str, ...]:
    """The splits to probe a CSV dataset (any split of it, loaded) on: a fit split and ``test``, from its split column,
    when that names a test split and ``train`` or ``trainval``; else ``("all",)`` (a seeded cut, as of a folder)."""
    named = set(data.meta.get("splits", ()))
    fit = [split for split in ("train", "trainval") if split in named]
    return (*fit, "test", "all") if fit and "test" in named else ("all",)


def _check_cut_split(name: str, split: str) -> None:
    if split not in FILE_SPLITS:
        raise InvalidInputError(f"{name} has splits {', '.join(FILE_SPLITS)} (a seeded 80/20 cut), not {split!r}")


def _has_split_column(csv: Path) -> bool:
    """Whether a CSV has a ``split`` column (any case), from its header alone (no pass over its rows)."""
    try:
        header = read_csv_file(csv, allow_ragged=True, nrows=0).columns
    except ModelrankError:
        return False  # reported in full when the CSV is loaded
    return any(str(name).lower() == "split" for name in header)


def _paths_dataset(
    name: str, split: str, paths: list[str], targets: np.ndarray, class_names, task: str, source: Path,
    split_cells: np.ndarray | None = None,
) -> ImageDataset:
    """``split_cells``: a CSV's split column (lower case), whose rows the split takes instead of a seeded cut."""
    # Here, before any model is built: met while extracting, a missing image stopped the run after hours of chunks,
    # and data repaired by dropping it is other data (a new cache entry: those chunks are lost).
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise MissingResourceError(f"{name}: {len(missing)} of its {len(paths)} image paths lead to no file (missing, "
                                   f"a broken link or a folder), e.g. {missing[0]}")
    if split_cells is not None:
        idx = np.arange(len(targets)) if split == "all" else np.flatnonzero(split_cells == split)
        if not idx.size:
            raise InvalidInputError(f"{name} has no rows of split {split!r}; its split column holds "
                                    f"{', '.join(sorted(set(split_cells)))} (and `all` takes every row)")
    else:
        _check_cut_split(name, split)
        idx = seeded_split(targets, split) if task == "classification" else _regression_split(len(targets), split)
    chosen = [paths[i] for i in idx]
    # "orientation": features of images decoded without their EXIF orientation (before 0.1.0's fix) are not reused
    definition = {"path": str(source.resolve()), "fingerprint": _fingerprint(source, paths), "orientation": "exif"}
    meta = {"definition": definition, "stamp": partial(_stamp, chosen)}
    if split_cells is not None:  # the splits a CSV's split column names (``csv_splits``)
        meta["splits"] = tuple(sorted(set(split_cells)))
    return ImageDataset(name, split, targets[idx], partial(_open_nth, chosen), class_names, task, meta=meta)


def _open_nth(paths: list[str], i: int):
    return open_image(paths[i])


def _fingerprint(source: Path, paths: list[str]) -> str:
    """sha256 over the image files' resolved paths, plus the CSV's bytes when ``source`` is one (its labels): what
    the samples are, not what their files hold (``_stamp``)."""
    digest = hashlib.sha256()
    if source.is_file():
        digest.update(source.read_bytes())
    for path in paths:
        digest.update(f"{os.path.realpath(path)}\n".encode())
    return digest.hexdigest()[:16]


def _stamp(paths: list[str], ids: np.ndarray) -> str:
    """The sizes and modification times of the images ``paths[ids]`` (``stat_digest``)."""
    return stat_digest(paths[i] for i in ids)


def _regression_split(n: int, split: str, seed: int = 0, test_fraction: float = 0.2) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if split == "all":
        return np.arange(n)
    return np.sort(order[:n_test] if split == "test" else order[n_test:])


def load_folder(path: str, split: str = "all") -> ImageDataset:
    """``folder:PATH``: one sub-folder per class, images inside (torchvision ImageFolder layout).

    Images in nested folders belong to the class folder they are in; symlinked folders are followed, as
    ImageFolder does. Names starting with "." are skipped at every level. Every other file must be an image (by
    suffix), and every class folder must hold one: anything else is reported rather than silently skipped or
    made into a class without samples (e.g. the ``__MACOSX`` folder an unzip leaves).
    """
    root = Path(path).expanduser()
    if root.is_file():
        raise InvalidInputError(f"image folder {root} is a file; folder:PATH takes a folder of class sub-folders")
    if not root.is_dir():
        raise MissingResourceError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InvalidInputError(f"image folder {root} has no class sub-folders")
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:  # no class to give them; a README or licence file beside the class folders is no news
        warnings.warn(f"image folder {root}: {len(loose)} image(s) beside the class folders belong to no class and "
                      f"are left out ({', '.join(sorted(loose)[:3])}{', ...' if len(loose) > 3 else ''})",
                      stacklevel=2)
    paths, labels = [], []
    for label, cls in enumerate(classes):
        for f in files_under(root / cls):
            if os.path.splitext(f)[1].lower() not in IMAGE_SUFFIXES:
                raise InvalidInputError(f"{f} is not an image file (allowed: {', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.append(f)
            labels.append(label)
    if not paths:
        raise InvalidInputError(f"image folder {root} contains no images")
    present = set(labels)
    empty = [repr(cls) for label, cls in enumerate(classes) if label not in present]
    if empty:
        raise InvalidInputError(f"image folder {root}: no images in class folder {', '.join(empty)}; remove it or "
                                "add images")
    return _paths_dataset(f"folder:{root}", split, paths, np.asarray(labels, dtype=np.int64), classes, "classification",
                          root)


def load_csv(path: str, split: str = "all") -> ImageDataset:
    """``csv:PATH``: columns ``path,label`` (classification) or ``path,target`` (regression), and optionally
    ``split``: then the split is the rows whose split cell names it (``train``, ``val``, ``test``, ``trainval``; any
    case), ``all`` every row, and the class ids are those of every row; without it, a seeded 80/20 cut.

    Relative image paths are resolved against the CSV's folder. Cells are read as the text they hold: a label
    is a class name as typed ("NA", "None" and "null" are classes, not missing values); only a blank cell is
    missing.
    """
    csv = Path(path).expanduser()
    table = read_csv_file(csv, dtype=str, keep_default_na=False)
    cols = {name: column for name in ("path", "label", "target", "split")
            if (column := column_any_case(table.columns, name, str(csv))) is not None}
    if "path" not in cols or not ({"label", "target"} & set(cols)):
        raise InvalidInputError(f"{csv} needs columns path,label (classification) or path,target (regression)")
    if {"label", "target"} <= set(cols):  # which task is meant? (it was regression, without a word)
        raise InvalidInputError(f"{csv} has both a label and a target column: keep label for classification or "
                                "target for regression")
    blank = table.apply(lambda column: column.str.strip() == "")
    if blank[cols["path"]].any():
        raise InvalidInputError(f"{csv}: column path has {int(blank[cols['path']].sum())} blank cell(s)")
    paths = [str(p if Path(p).is_absolute() else csv.parent / p) for p in table[cols["path"]]]
    if "split" in cols and blank[cols["split"]].any():
        raise InvalidInputError(f"{csv}: column split has {int(blank[cols['split']].sum())} blank cell(s)")
    split_cells = table[cols["split"]].str.strip().str.lower().to_numpy() if "split" in cols else None
    if "target" in cols:
        targets = pd.to_numeric(table[cols["target"]].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(targets).all():
            raise InvalidInputError(f"{csv}: column target has missing or non-numeric values")
        return _paths_dataset(f"csv:{csv}", split, paths, targets, None, "regression", csv, split_cells)
    raw = table[cols["label"]]
    if blank[cols["label"]].any():
        raise InvalidInputError(f"{csv}: column label has missing values")
    classes = sorted(raw.unique())
    codes = np.searchsorted(np.asarray(classes), raw.to_numpy()).astype(np.int64)
    return _paths_dataset(f"csv:{csv}", split, paths, codes, classes, "classification", csv, split_cells)
