"""Input validation shared by all metrics: every user error becomes an InvalidInputError with one clear line."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InvalidInputError
from ..features import as_array
from ._linalg import largest_magnitude


def available_memory() -> int | None:
    """Bytes the kernel estimates can be allocated without swapping (Linux ``MemAvailable``); None elsewhere."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_memory(n_bytes: float, what: str, remedy: str) -> None:
    """Refuse work whose O(n^2) arrays would not fit in the memory available: past it the process would swap for
    hours or be killed by the kernel's OOM killer, with no message and nothing kept."""
    available = available_memory()
    if available is not None and n_bytes > available:
        raise InvalidInputError(f"{what} needs about {n_bytes / 2**30:.1f} GiB of memory, more than the "
                                f"{available / 2**30:.1f} GiB available; {remedy}")


def as_features(features: np.ndarray, name: str = "features", upcast: bool = True) -> np.ndarray:
    """(n, d) finite float array, copy-free where possible.

    ``upcast=True``: float64 (float16/float32 are upcast for stable sums). ``upcast=False``: float32 and float64
    are kept as they are (float16 becomes float32, integers and booleans float64) for metrics that convert row blocks
    themselves, so a float32 feature matrix is never copied whole.
    """
    x = as_float_matrix(features, name, upcast)
    check_finite(x, name)
    return x


def check_finite(x: np.ndarray, name: str) -> None:
    """Refuse a NaN or inf in the (n, d) array ``x`` (integers and booleans hold none), naming how many rows hold one.

    A NaN or inf makes its row's sum non-finite; the exact (N x D boolean) check runs only then, or on overflow.
    The row sums are one BLAS pass in x's own precision (a float64 sum of float32 costs 2.4x)."""
    if x.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf and overflowing sums: decided exactly below
        row_sums = x @ np.ones(x.shape[1], x.dtype)
    if not np.isfinite(row_sums).all() and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise InvalidInputError(f"{name} contain NaN or inf in {bad} of {x.shape[0]} rows")


def as_float_matrix(features: np.ndarray, name: str, upcast: bool = True) -> np.ndarray:
    """``as_features`` without the finiteness check: the shape and dtype checks and the conversion."""
    x = as_array(features, name)
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (n_samples, dim), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty (shape {x.shape})")
    if x.dtype.kind not in "biuf":  # booleans are the numbers 0 and 1 (binary codes, thresholded activations)
        raise InvalidInputError(f"{name} must be real numbers, got dtype {x.dtype}")
    if upcast or x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64 if upcast or x.dtype != np.float16 else np.float32, copy=False)
    return x


def as_class_labels(labels: np.ndarray, n_samples: int, min_per_class: int = 1) -> tuple[np.ndarray, int]:
    """Encode any hashable labels as 0..C-1 (sorted order) and return (codes, C).

    Requires at least two classes and ``min_per_class`` samples in each.
    """
    y = as_array(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InvalidInputError(f"class labels must be 1-D, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise InvalidInputError(f"{y.shape[0]} labels for {n_samples} feature rows")
    if y.dtype.kind in "cV":  # complex numbers and raw records: no class meaning, and NaN + 1j slips past NaN checks
        raise InvalidInputError(f"class labels must be integers or text, got {y.dtype} values")
    if y.dtype == object:  # e.g. a pandas column with gaps: NaN would become classes of their own
        missing = int(((y != y) | np.equal(y, None)).sum())  # elementwise: NaN != NaN; None
        if missing:
            raise InvalidInputError(f"labels contain {missing} missing values (NaN or None)")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise InvalidInputError("labels contain NaN or inf")
        if not np.all(y == np.round(y)):
            raise InvalidInputError("class labels are not integers; is this a regression task?")
    try:
        classes, codes = small_integer_codes(y) or np.unique(y, return_inverse=True)
    except TypeError as err:  # values that do not sort against each other, e.g. text mixed with numbers
        raise InvalidInputError(f"class labels must be all numbers or all text, got {y.dtype} values ({err})") from None
    if len(classes) < 2:
        raise InvalidInputError(f"need at least 2 classes, got {len(classes)}")
    if min_per_class > 1:
        counts = np.bincount(codes, minlength=len(classes))
        if counts.min() < min_per_class:
            small = classes[counts < min_per_class][:5].tolist()  # plain values: 3, not np.int64(3)
            raise InvalidInputError(
                f"every class needs at least {min_per_class} samples; classes {small} have fewer"
            )
    return codes.astype(np.int64), len(classes)


def small_integer_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``np.unique(values, return_inverse=True)`` of 1-D non-negative integers below ``4 N + 1024`` by counting
    instead of sorting (O(N + max) rather than O(N log N): 0.03 ms instead of 0.37 ms at N = 10k), the usual shape
    of class labels and source-class predictions; None for anything else."""
    if values.dtype.kind not in "iu" or values.ndim != 1 or values.size == 0:
        return None
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= 4 * values.shape[0] + 1024:
        return None
    present = np.bincount(values, minlength=high + 1) > 0
    return np.flatnonzero(present).astype(values.dtype), (np.cumsum(present) - 1)[values]


def as_targets(labels: np.ndarray, n_samples: int) -> np.ndarray:
    """Regression targets as an (n, k) finite float64 array."""
    given = as_array(labels, "targets")
    try:
        if given.dtype.kind == "c":
            raise TypeError
        y = given.astype(np.float64, copy=False)
    except (TypeError, ValueError):  # text, complex numbers, objects that are not numbers
        raise InvalidInputError(f"regression targets must be real numbers, got {given.dtype} values") from None
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n_samples:
        raise InvalidInputError(f"targets must have shape ({n_samples},) or ({n_samples}, k), got {y.shape}")
    if y.shape[1] == 0:  # the metrics' means over no targets were NaN, reported as a non-finite score
        raise InvalidInputError(f"targets have no columns (shape {y.shape}): give at least one regression target")
    if not np.isfinite(y).all():
        raise InvalidInputError("targets contain NaN or inf")
    check_magnitudes("regression", {"targets": y})  # also for the plain functions, which skip the registry's check
    return y


def as_probs(probs: np.ndarray, n_samples: int, name: str = "source_probs") -> np.ndarray:
    """(n, k) non-negative rows summing to 1 (within 1e-3), float64, renormalised to sum to 1 exactly.

    No (n, k) temporaries beyond the float64 array itself: rows already summing to 1 to rounding are returned
    as they are, and a private float64 copy (from float32 input) is renormalised in place.
    """
    p, sums, off_one = checked_probs(probs, n_samples, name)
    if not off_one:
        return p.astype(np.float64, copy=False)
    if p.dtype == np.float64 and not np.may_share_memory(p, probs):
        p /= sums[:, None]  # a private float64 copy (of integer input)
        return p
    return p / sums[:, None]


#: Rows of a probability matrix read at once by ``checked_probs``: ~1 MB float64 blocks stay in cache for every
#: reduction of the block.
PROB_BLOCK_ELEMENTS = 131_072

#: also(rows, block, row_sums): a caller's own statistics of the row block ``block = p[rows]``, taken in the pass
#: of ``checked_probs`` while the block is in cache.
BlockStatistics = Callable[[slice, np.ndarray, np.ndarray], None]


def checked_probs(
    probs: np.ndarray, n_samples: int, name: str = "source_probs", also: BlockStatistics | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(p, row sums, off_one) for (n, k) probabilities, not renormalised: p in float32 (float32 or float16 input) or
    float64, refused unless its entries are finite and non-negative and its rows sum to 1 within 1e-3; off_one when
    some row is off 1 by more than rounding (``as_probs`` then divides the rows by their sums).

    One pass over row blocks of ``PROB_BLOCK_ELEMENTS``, each converted to float64 in cache (a float32 matrix is
    never copied whole: 50k x 1000 float32 probabilities are 200 MB, 400 MB in float64) for its minimum, its row
    sums (BLAS) and ``also``'s float64 statistics, which are only used once the whole matrix passed. Non-negative
    entries (a NaN makes the minimum NaN) with finite row sums are all finite (an inf entry makes its row's sum
    inf), so the (n, k) finiteness pass of ``as_features`` runs only for input that is refused, to name what is
    wrong with it.
    """
    p = as_float_matrix(probs, name, upcast=False)
    if p.shape[0] != n_samples:
        raise InvalidInputError(f"{name} has {p.shape[0]} rows for {n_samples} samples")
    n, k = p.shape
    sums, smallest, ones, step = np.empty(n), np.inf, np.ones(k), max(1, PROB_BLOCK_ELEMENTS // k)
    buffer = None if p.dtype == np.float64 else np.empty((min(n, step), k))
    with np.errstate(all="ignore"):  # invalid input is refused below
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            if buffer is None:
                block = p[rows]
            else:
                block = buffer[: rows.stop - start]
                block[...] = p[rows]
            smallest = min(smallest, block.min())
            np.dot(block, ones, out=sums[rows])
            if also is not None:
                also(rows, block, sums[rows])
    if not (smallest >= 0 and np.isfinite(sums).all()):
        as_features(p, name)  # raises for NaN or inf entries
        if smallest < 0:
            raise InvalidInputError(f"{name} has negative entries; pass softmax probabilities, not logits")
    deviation = np.abs(sums - 1).max()
    if deviation > 1e-3:
        raise InvalidInputError(f"{name} rows must sum to 1 (found sums in [{sums.min():.3g}, {sums.max():.3g}])")
    return p, sums, bool(deviation > 8 * np.finfo(np.float64).eps)


#: Features beyond this magnitude overflow float64 in the second moments (x^2 summed over samples) most
#: metrics form; 1e150^2 = 1e300 still fits.
MAX_FEATURE_MAGNITUDE = 1e150


def check_magnitudes(name: str, arrays: dict[str, object]) -> None:
    """Refuse float inputs so large that float64 second moments overflow: the metrics would raise deep inside
    their linear algebra or return NaN, inf or a meaningless finite number."""
    for key, value in arrays.items():
        x = as_array(value, key) if value is not None else None
        # float16 and float32 values (at most 3.4e38) cannot exceed the limit: no pass over them (5 ms at 10k x 2048)
        if x is None or x.dtype.kind != "f" or x.size == 0 or float(np.finfo(x.dtype).max) <= MAX_FEATURE_MAGNITUDE:
            continue
        largest = largest_magnitude(x)
        if MAX_FEATURE_MAGNITUDE < largest < np.inf:  # NaN and inf are reported by the metric's own checks
            raise InvalidInputError(
                f"{name}: {key} reach magnitude {largest:.3g}, beyond what float64 second moments hold "
                f"(limit {MAX_FEATURE_MAGNITUDE:.0e}); rescale them (e.g. standardise) first"
            )
