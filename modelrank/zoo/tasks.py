"""Source datasets and target tasks derived from the offline datasets, registered as ordinary datasets.

A derived dataset takes a registered base dataset, keeps a subset of its classes (relabelled 0..k-1 in the
order given), optionally a seeded number of images per class (few-shot sizes), and optionally a domain shift
applied to every image (inverted, Gaussian noise, blur, rotated). Sources (``source/...``) mirror their base's
train/test splits, so the zoo trains on ``train`` and reports source accuracy on ``test``. Target tasks
(``task/...``) are cut from a base split the zoo never trained on (the ``test`` splits, or datasets no source
uses: faces, textures) and carry their own seeded ``all``/``train``/``test`` splits.

The target-task design follows Model Spider's sampled training tasks (random class subsets of a pool of
datasets) and the graph seed's DomainNet tasks (classes x domains), at the scale of packaged datasets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..data.base import DATASETS, ImageDataset, register_dataset, seeded_split
from ..errors import InvalidInputError
from . import datasets as _packaged  # noqa: F401  (registers mnist-sample, faces, textures)

SHIFTS = ("none", "invert", "noise", "blur", "rotate")
NOISE_STD = 0.25 * 255  # Gaussian pixel noise of the "noise" shift, in 0..255 units
BLUR_RADIUS = 1.5


def apply_shift(image: Image.Image, shift: str, key: tuple[int, int]) -> Image.Image:
    """One domain shift; ``key`` (seed, sample index) seeds the noise so every image is reproducible."""
    if shift == "none":
        return image
    if shift == "invert":
        return ImageOps.invert(image)
    if shift == "noise":
        pixels = np.asarray(image, dtype=np.float32)
        noisy = pixels + np.random.default_rng(key).normal(0.0, NOISE_STD, size=pixels.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))
    if shift == "blur":
        return image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    if shift == "rotate":
        return image.rotate(90)
    raise InvalidInputError(f"unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")


def _shifted_image(load: Callable[[int], Image.Image], idx: np.ndarray, shift: str, seed: int, i: int) -> Image.Image:
    """Image ``i`` of a derived dataset: the base's image ``idx[i]`` with the shift applied."""
    j = int(idx[i])
    return apply_shift(load(j), shift, (seed, j))


@dataclass(frozen=True)
class DerivedSpec:
    """A class subset / few-shot sample / domain shift of a registered base dataset."""

    name: str
    base: str
    #: The base split samples come from, split again into all/train/test; None mirrors the base's train/test.
    base_split: str | None
    classes: tuple[str, ...] | None = None
    per_class: int | None = None
    shift: str = "none"
    seed: int = 0
    description: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "test") if self.base_split is None else ("all", "train", "test")

    def metadata(self) -> dict[str, Any]:
        """Task facts known without loading images (``samples`` is the per-class cap)."""
        return {**asdict(self), "domain": self.shift, "classes": list(self.classes) if self.classes else None}

    def load(self, split: str = "all", root: str | None = None, **_) -> ImageDataset:
        from ..data import load_dataset

        if split not in self.splits:
            raise InvalidInputError(f"dataset {self.name} has splits {', '.join(self.splits)}, not {split!r}")
        base = load_dataset(self.base, self.base_split or split, root=root)
        names = base.class_names or [str(c) for c in np.unique(base.targets)]
        if self.classes is None:
            wanted = np.unique(base.targets)
        else:
            missing = [c for c in self.classes if c not in names]
            if missing:
                raise InvalidInputError(f"{self.name}: {self.base} has no class {', '.join(missing)}")
            wanted = np.asarray([names.index(c) for c in self.classes])
        idx = np.flatnonzero(np.isin(base.targets, wanted))
        if self.per_class is not None:
            rng = np.random.default_rng(self.seed)
            idx = np.sort(np.concatenate([
                rng.permutation(idx[base.targets[idx] == c])[: self.per_class] for c in wanted
            ]))
        relabel = np.full(int(base.targets.max()) + 1, -1, dtype=np.int64)
        relabel[wanted] = np.arange(len(wanted))
        targets = relabel[base.targets[idx]]
        if self.base_split is not None:
            keep = seeded_split(targets, split, seed=self.seed)
            idx, targets = idx[keep], targets[keep]

        load = partial(_shifted_image, base.load, idx, self.shift, self.seed)
        # "definition" enters the feature-cache key, so a redefined task never reuses stale features, nor a task on
        # another copy of its base data (the base's own definition: its folder under --data-root and files).
        definition = {k: v for k, v in asdict(self).items() if k != "description"}
        if "definition" in base.meta:
            definition["base_data"] = base.meta["definition"]
        meta = {"base": self.base, "domain": self.shift, "base_split": self.base_split or split,
                "definition": definition}
        return ImageDataset(self.name, split, targets, load, [names[w] for w in wanted], meta=meta)


DERIVED: dict[str, DerivedSpec] = {}


def derive(spec: DerivedSpec) -> DerivedSpec:
    """Register ``spec`` as a dataset (idempotent for the same spec)."""
    if spec.shift not in SHIFTS:
        raise InvalidInputError(f"unknown shift {spec.shift!r}; choose one of {', '.join(SHIFTS)}")
    if spec.name in DERIVED:
        if DERIVED[spec.name] != spec:
            raise InvalidInputError(f"{spec.name} is already defined differently")
        return spec
    DERIVED[spec.name] = spec
    description = spec.description or (
        f"{spec.base}/{spec.base_split or 'train,test'}" + (f", classes {', '.join(spec.classes)}" if spec.classes else "")
        + (f", {spec.per_class}/class" if spec.per_class else "") + (f", {spec.shift}" if spec.shift != "none" else "")
    )
    register_dataset(spec.name, splits=spec.splits, source=f"derived from {spec.base}", description=description)(spec.load)
    return spec


ANIMALS_A = ("bear", "bird", "cat", "cow", "dog")
ANIMALS_B = ("elephant", "giraffe", "horse", "sheep", "zebra")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# ------------------------------------------------------------------------------------ zoo sources
SOURCES = {
    spec.name: derive(spec) for spec in (
        DerivedSpec("source/digits", "digits", None, description="scikit-learn digits 8x8, 10 classes"),
        DerivedSpec("source/mnist", "mnist-sample", None, description="MNIST sample 28x28, 10 classes"),
        DerivedSpec("source/animals-a", "animal-mnist", None, ANIMALS_A, description="animal silhouettes: bear ... dog"),
        DerivedSpec("source/animals-b", "animal-mnist", None, ANIMALS_B, description="animal silhouettes: elephant ... zebra"),
        DerivedSpec("source/fashion", "fashion-mnist", None, description="Fashion-MNIST, 10 classes (Debian package)"),
    )
}

# ----------------------------------------------------------------------------------- target tasks
# Held-out data only: the test splits of the source datasets (the zoo trains on their train splits) and
# datasets no source uses (faces, textures).
HANDPICKED_TASKS = [
    DerivedSpec("task/faces", "faces", "all", description="faces vs non-faces (held-out domain)"),
    DerivedSpec("task/textures", "textures", "all", per_class=150, description="brick / grass / gravel patches (held-out domain)"),
    DerivedSpec("task/animals-mix5", "animal-mnist", "test", ("cat", "dog", "horse", "sheep", "zebra"), per_class=100),
    DerivedSpec("task/animals-invert4", "animal-mnist", "test", ("bear", "bird", "elephant", "giraffe"), per_class=100, shift="invert"),
    DerivedSpec("task/mnist-noise5", "mnist-sample", "test", DIGIT_NAMES[:5], per_class=100, shift="noise"),
    DerivedSpec("task/digits-blur10", "digits", "test", shift="blur"),
    DerivedSpec("task/mnist-rotate3", "mnist-sample", "test", ("five", "six", "seven"), per_class=100, shift="rotate"),
]
CI_TASKS = [
    DerivedSpec("task/ci-digits-invert3", "digits", "test", DIGIT_NAMES[:3], per_class=12, shift="invert"),
    DerivedSpec("task/ci-faces", "faces", "all", per_class=20),
]
SAMPLING_POOL = {  # base dataset -> class names a sampled task draws from
    "animal-mnist": ANIMALS_A + ANIMALS_B,
    "mnist-sample": DIGIT_NAMES,
    "digits": DIGIT_NAMES,
    "fashion-mnist": ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"),
}
SHORT = {"animal-mnist": "animals", "mnist-sample": "mnist", "digits": "digits", "fashion-mnist": "fashion"}


def sample_tasks(n: int, seed: int, bases: tuple[str, ...], ways=(2, 3, 5), shots=(10, 20, 40), shifts=SHIFTS) -> list[DerivedSpec]:
    """``n`` seeded random tasks: a base's test split, a random class subset, a few-shot size and a shift."""
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n):
        base = bases[int(rng.integers(len(bases)))]
        pool = SAMPLING_POOL[base]
        k, shot, shift = int(rng.choice(ways)), int(rng.choice(shots)), str(rng.choice(shifts))
        classes = tuple(pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False)))
        name = f"task/s{seed}-{i:02d}-{SHORT[base]}-{k}way-{shot}shot-{shift}"
        tasks.append(DerivedSpec(name, base, "test", classes, per_class=shot, shift=shift, seed=seed + i))
    return tasks


SAMPLED_DEMO = sample_tasks(3, seed=1, bases=("animal-mnist", "mnist-sample"), shots=(100,))
SAMPLED_FULL = sample_tasks(8, seed=2, bases=("animal-mnist", "mnist-sample", "digits", "fashion-mnist"), shots=(10, 20, 40, 80))
for _spec in [*HANDPICKED_TASKS, *CI_TASKS, *SAMPLED_DEMO, *SAMPLED_FULL]:
    derive(_spec)


def task_rows() -> list[dict[str, Any]]:
    """Metadata of every registered target task (what `modelrank list datasets` summarises)."""
    return [spec.metadata() for name, spec in DERIVED.items() if name.startswith("task/")]


__all__ = ["DERIVED", "DATASETS", "DerivedSpec", "SHIFTS", "SOURCES", "apply_shift", "derive", "sample_tasks", "task_rows"]
