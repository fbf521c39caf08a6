"""What every dataset loader returns: an indexable set of (PIL image, label) with labels known up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInputError, ModelrankError
from ..registry import Registry

SPLITS = ("train", "val", "test", "trainval", "all")


class CorruptImageError(ModelrankError):
    """An image file that cannot be decoded."""


@dataclass
class ImageDataset:
    """Images and labels of one split. ``targets`` is known without decoding any image, so subsampling and
    sharding never touch pixels. ``load(i)`` returns an RGB PIL image. ``meta["definition"]``, when present,
    describes how a derived dataset is made and becomes part of the feature-cache key. ``load`` must pickle (a
    module-level function or a ``functools.partial`` of one, never a closure): data-loading workers started by
    spawn or forkserver (macOS, Windows, Python 3.14's default on Linux) receive the dataset pickled."""

    name: str
    split: str
    targets: np.ndarray
    load: Callable[[int], Image.Image]
    class_names: list[str] | None = None
    task: str = "classification"
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.targets)


def array_dataset(name: str, split: str, images: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> ImageDataset:
    """A dataset held as a uint8 array (n, h, w) grey or (n, h, w, 3) colour."""
    if images.dtype != np.uint8:
        raise InvalidInputError(f"{name}: expected uint8 images, got {images.dtype}")
    return ImageDataset(name, split, np.asarray(targets), partial(_array_image, images), list(class_names))


def _array_image(images: np.ndarray, i: int) -> Image.Image:
    return Image.fromarray(images[i]).convert("RGB")


def split_arrays(name: str, split: str, images: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> ImageDataset:
    """One split of an array dataset that ships without splits (a seeded stratified 80/20 cut, see seeded_split)."""
    idx = seeded_split(targets, split)
    return array_dataset(name, split, images[idx], targets[idx], class_names)


def open_image(path: str) -> Image.Image:
    """Decode an image file fully (PIL is lazy), turning decoder errors into one clear line."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # DecompressionBombError (over twice Pillow's MAX_IMAGE_PIXELS) derives from none of the others.
        raise CorruptImageError(f"cannot read image {path}: {exc}") from None


#: PIL's 16-bit grey modes ("I" is how some Pillow versions open a 16-bit PNG, and how they open 32-bit integer
#: TIFFs: those are read as 16-bit when their values fit).
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit grey is scaled to 8 bits (v * 255 / 65535): PIL's own conversion clips every value above
    255, which turns a 16-bit image almost entirely white. Pixels with no agreed 8-bit scale raise ValueError:
    floating-point pixels (mode "F", PIL's conversion truncates 0..1 images to black) and integers outside 0..65535
    (it clips them to white and black)."""
    if img.mode == "F":
        raise ValueError("its pixels are floating-point numbers (mode F), which have no standard 8-bit scale; "
                         "save the images as 8- or 16-bit")
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img, dtype=np.float64)
        if values.size and not 0 <= values.min() <= values.max() <= 65535:
            raise ValueError(f"its integer pixels span {values.min():.0f}..{values.max():.0f}, beyond the 16-bit "
                             "range 0..65535 that has a standard 8-bit scale; save the images as 8- or 16-bit")
        grey = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Callable[..., ImageDataset]
    splits: tuple[str, ...]
    source: str
    description: str
    #: True when the loader reads from --data-root (torchvision datasets), False when data ships in a package.
    needs_root: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, *, splits: tuple[str, ...], source: str, description: str, needs_root: bool = False):
    def decorator(loader: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        DATASETS.add(name, DatasetSpec(name, loader, splits, source, description, needs_root))
        return loader

    return decorator


def seeded_split(targets: np.ndarray, split: str, seed: int = 0, test_fraction: float = 0.2) -> np.ndarray:
    """Indices of a deterministic stratified train/test split for datasets that ship without one."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(targets), dtype=bool)
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        test[idx[: int(round(len(idx) * test_fraction))]] = True
    if split == "all":
        return np.arange(len(targets))
    return np.flatnonzero(test if split == "test" else ~test)
