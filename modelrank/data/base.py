"""What every dataset loader returns: an indexable set of (PIL image, label) with labels known up front."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

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


def array_dataset(name: str, split: str, images: np.ndarray, targets: np.ndarray,
                  class_names: Sequence[str]) -> ImageDataset:
    """A dataset held as a uint8 array (n, h, w) grey or (n, h, w, 3) colour. Its ``meta["definition"]`` (part of
    the feature-cache key) is the digest of its images and labels (``arrays_definition``): another copy of the
    same data shares entries, changed data never does."""
    if images.dtype != np.uint8:
        raise InvalidInputError(f"{name}: expected uint8 images, got {images.dtype}")
    targets = np.asarray(targets)
    return ImageDataset(name, split, targets, partial(_array_image, images), list(class_names),
                        meta={"definition": arrays_definition(images, targets)})


def _array_image(images: np.ndarray, i: int) -> Image.Image:
    return Image.fromarray(images[i]).convert("RGB")


def split_arrays(name: str, split: str, images: np.ndarray, targets: np.ndarray,
                 class_names: Sequence[str]) -> ImageDataset:
    """One split of an array dataset that ships without splits (a seeded stratified 80/20 cut, see seeded_split)."""
    idx = seeded_split(targets, split)
    return array_dataset(name, split, images[idx], targets[idx], class_names)


def stat_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 over the sizes and modification times of ``paths``; stat only, so cheap (no pixel is read). A missing
    file is hashed as such (it is reported when it is read)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(b"missing\n")
    return digest.hexdigest()[:16]


def arrays_definition(*arrays: np.ndarray) -> dict[str, str]:
    """``meta["definition"]`` of data read whole into arrays (a package's data files, IDX files): a digest of the
    arrays' bytes. The content, not its location or file times: the same data installed in another environment or
    copied under another root shares cache entries, and changed data is another entry (blake2b: ~0.1 s for
    Fashion-MNIST's 47 MB)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return {"content": digest.hexdigest()}


def files_definition(path: Path, names: Sequence[str] | None = None) -> dict[str, str]:
    """``meta["definition"]`` of data read from files we do not map to samples (a torchvision dataset under
    --data-root, IDX or pickle files shipped in a package): the resolved ``path`` and a fingerprint of its files
    ``names`` (relative to it; default: every file below it, or the file itself when ``path`` is one): their names,
    sizes and modification times. Another copy of the data, or the same folder changed, is another cache entry; the
    same folder unchanged reuses it. Stat only: 100k files cost about 1 s here (listing them: 0.1 s)."""
    root = path.expanduser().resolve()
    if root.is_file():
        root, names = root.parent, [root.name]
    elif names is None:
        names = [f[len(str(root)) + 1 :] for f in files_under(root)]
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\n".encode())
    digest.update(stat_digest(os.path.join(root, name) for name in names).encode())
    return {"path": str(root), "fingerprint": digest.hexdigest()[:16]}


def files_under(folder: Path) -> list[str]:
    """The files below ``folder`` whose path holds no hidden name, sorted by path (component by component, as
    pathlib sorts); symlinked folders are followed, each real folder once (a link back up is no loop). Strings, not
    Paths: a torchvision folder holds 100k files, and pathlib took seconds to make and sort them."""
    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True, onerror=_unlistable):
        real = os.path.realpath(top)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(top, name) for name in names if not name.startswith(".")]
    return sorted(files, key=lambda path: path.split(os.sep))


def _unlistable(exc: OSError) -> None:
    """``os.walk``'s onerror: it skips a folder it cannot list (no permission) without a word, which left that
    folder's images out of the data. A folder that is gone has nothing to leave out."""
    if not isinstance(exc, FileNotFoundError):
        raise InvalidInputError(f"cannot list folder {exc.filename}: {exc.strerror}")


#: Longest side / shortest side an image may have. Models resize the shorter side to their input size, so a
#: 6000 x 1 px image (which passes Pillow's decompression-bomb check) became 1.5 GB on the way in, and a smaller
#: machine's "out of memory" named no image; 100:1 stays below 100 MB for a 256-px input.
MAX_ASPECT_RATIO = 100


def open_image(path: str) -> Image.Image:
    """Decode an image file fully (PIL is lazy), upright as its EXIF orientation says, turning decoder errors into one
    clear line; images more elongated than ``MAX_ASPECT_RATIO`` are refused before decoding."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
                raise ValueError(f"it is {width} x {height} px, more elongated than {MAX_ASPECT_RATIO}:1: resized for "
                                 "a model, its longer side would need gigabytes")
            # Cameras store portrait photos landscape with an EXIF orientation tag that viewers apply: unapplied,
            # the model saw them rotated by 90 degrees (fine-tuning and features alike).
            return to_rgb(ImageOps.exif_transpose(img))
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
