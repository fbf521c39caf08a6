"""Real labelled image datasets that ship inside registry packages, so everything runs offline.

Each is read whole into arrays, and its feature-cache key holds a digest of them (``array_dataset``): the same
data installed in another environment or under another --data-root shares cache entries, changed data does not.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MissingResourceError, error_reason
from .base import ImageDataset, array_dataset, register_dataset, split_arrays

ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
FASHION_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@register_dataset(
    "digits", splits=("train", "test", "all"), source="scikit-learn",
    description="1,797 handwritten digits, 8x8, 10 classes (sklearn.datasets.load_digits); seeded 80/20 split",
)
def load_digits(split: str = "train", **_) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
    return split_arrays("digits", split, images, bunch.target.astype(np.int64), DIGIT_CLASSES)


@register_dataset(
    "animal-mnist", splits=("train", "test", "all"), source="PyPI animal-mnist",
    description="10,000 animal silhouettes, 28x28, 10 classes; seeded 80/20 split (pip install --no-deps animal-mnist)",
)
def load_animal_mnist(split: str = "train", **_) -> ImageDataset:
    try:
        folder = importlib.resources.files("animal_mnist") / "data" / "Animal_MNIST"
    except ModuleNotFoundError:
        raise MissingResourceError(
            "dataset animal-mnist is not installed; run `pip install --no-deps animal-mnist`"
        ) from None
    names = ["animal_data_version_3.gz", "animal_label_version_3.gz"]
    try:
        with gzip.open(folder / names[0], "rb") as f:
            images = np.asarray(_ArrayUnpickler(f).load(), dtype=np.uint8)
        with gzip.open(folder / names[1], "rb") as f:
            targets = np.asarray(_ArrayUnpickler(f).load(), dtype=np.int64)
    except (EOFError, gzip.BadGzipFile, zlib.error, pickle.UnpicklingError) as exc:  # EOFError: as in _read_idx
        raise InvalidInputError(f"cannot read the animal-mnist data in {folder}: a damaged or truncated file "
                                f"({error_reason(exc)}); reinstall it (`pip install --force-reinstall --no-deps "
                                "animal-mnist`)") from None
    return split_arrays("animal-mnist", split, images, targets, ANIMAL_CLASSES)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only (the format the package ships its data in): any other
    global a pickle names, e.g. os.system in a replaced file, is refused instead of called."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise InvalidInputError(f"refusing to unpickle {module}.{name} from the animal-mnist data files")
        return super().find_class(module, name)


def _read_idx(path: Path) -> np.ndarray:
    """IDX files (the MNIST format): magic (0, 0, 8 = uint8, ndim), dims, then raw uint8 data; gzipped or not. A
    truncated, damaged or foreign file is an ``InvalidInputError`` naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # EOFError would reach the CLI as an interruption
        raise InvalidInputError(f"cannot read {path}: a damaged or truncated gzip file ({error_reason(exc)})") from None
    ndim = data[3] if len(data) >= 4 and data[:3] == b"\0\0\x08" else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if not ndim or len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise InvalidInputError(f"{path} is not a complete IDX file of uint8 (truncated, damaged or another format)")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@register_dataset(
    "fashion-mnist", splits=("train", "test"), source="Debian dataset-fashion-mnist or --data-root",
    description="Fashion-MNIST 60k/10k, 28x28, 10 classes (apt-get install dataset-fashion-mnist)",
)
def load_fashion_mnist(split: str = "train", root: str | None = None, **_) -> ImageDataset:
    prefix = "train" if split == "train" else "t10k"
    candidates = [Path(root) / "FashionMNIST" / "raw", Path(root)] if root else []
    candidates.append(FASHION_DEBIAN_DIR)
    for folder in candidates:
        for suffix in ("", ".gz"):
            img = folder / f"{prefix}-images-idx3-ubyte{suffix}"
            lab = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
            if img.is_file() and lab.is_file():
                images, targets = _read_idx(img), _read_idx(lab).astype(np.int64)
                if images.ndim != 3 or targets.ndim != 1 or len(images) != len(targets):
                    raise InvalidInputError(f"{img} holds images of shape {images.shape} and {lab} labels of shape "
                                            f"{targets.shape}: expected n images and n labels")
                return array_dataset("fashion-mnist", split, images, targets, FASHION_CLASSES)
    raise MissingResourceError(
        "Fashion-MNIST not found; run `apt-get install dataset-fashion-mnist` or put the idx files under "
        f"--data-root/FashionMNIST/raw (looked in {', '.join(map(os.fspath, candidates))})"
    )
