"""When two scores are the same: the one tie rule that `score`, `evaluate`, `benchmark` and `spider eval` share.

Two scores a, b of one metric on one task are tied when

    |a - b| <= rtol * max(|a|, |b|) + atol.

``rtol`` is the metric's relative precision: ``DEFAULT_RTOL`` = 1e-9 for float64 closed forms (a few thousand
rounding errors of 1.1e-16 each), looser for iterative or float32 paths; ``atol`` covers scores whose true value
is 0 (a saturated EMMS is -1e-15, not 0). Each metric may declare both at registration
(``register_metric(..., tie_rtol=, tie_atol=)``); ``metric_tolerance`` looks them up by column name, and
methods that are not registered metrics (published tables) get the defaults.

The rule compares neighbours after sorting and chains them (single linkage): scores that are within the
tolerance of a neighbour share one tie group, so no two scores within the tolerance are ever ranked apart.
Measures then see tied scores as exactly equal (``snap_ties``) and treat them the standard way (scipy's average
ranks, tau-b, ...). A task on which every score falls in one group gives no ranking at all (``no_ranking``).
"""

from __future__ import annotations

import numpy as np

from ..metrics.base import DEFAULT_ATOL, DEFAULT_RTOL  # declared where metrics register their tolerance


def _values(scores) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite to be grouped into ties")
    return values


def tie_groups(scores, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """Integer tie group of each score: 0 for the lowest group, increasing with the score.

    Sorted neighbours a <= b fall in one group when b - a <= rtol * max(|a|, |b|) + atol.
    """
    values = _values(scores)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    limit = rtol * np.maximum(np.abs(ordered[:-1]), np.abs(ordered[1:])) + atol
    groups = np.empty(values.size, dtype=np.int64)
    with np.errstate(over="ignore"):  # neighbours 1.7e308 and -1.7e308 are inf apart: rightly apart, no warning
        groups[order] = np.concatenate([[0], np.cumsum(np.diff(ordered) > limit)]) if values.size else []
    return groups


def tie_ranks(scores, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, higher_is_better: bool = True) -> np.ndarray:
    """Rank of each score, 1 = best, tied scores sharing the average of their ranks (scipy's "average").

    E.g. scores (9.000000000000005, 8.999999999999998, 3.0) -> ranks (1.5, 1.5, 3.0).
    """
    groups = tie_groups(scores, rtol, atol)
    sizes = np.bincount(groups).astype(np.float64)
    ahead = groups.size - np.cumsum(sizes) if higher_is_better else np.cumsum(sizes) - sizes  # in better groups
    return (ahead + (sizes + 1) / 2)[groups]


def snap_ties(scores, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """The scores with every tie group replaced by its mean: tied scores become exactly equal, the order between
    groups is kept, so any rank measure then treats them as ties."""
    values = _values(scores)
    groups = tie_groups(values, rtol, atol)
    # The mean as the group's lowest value plus the mean offset from it: a plain sum of two tied scores near 1.7e308
    # overflowed to inf, which every measure then refused as a non-finite score.
    lowest = np.full(groups.max(initial=-1) + 1, np.inf)
    np.minimum.at(lowest, groups, values)
    offsets = np.bincount(groups, weights=values - lowest[groups]) / np.bincount(groups)
    return (lowest + offsets)[groups]


def no_ranking(scores, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> str | None:
    """Why ``scores`` rank nothing (all of them tied), or None when they separate at least two models."""
    values = _values(scores)
    if values.size < 2 or tie_groups(values, rtol, atol).max() > 0:
        return None
    if np.all(values == values[0]):
        return f"all {values.size} scores are equal ({values[0]:.6g})"
    return f"all {values.size} scores are equal within the metric's precision ({values.min():.17g} .. {values.max():.17g})"


def paired_differences(first, second) -> np.ndarray:
    """``first - second`` element by element, 0 where the two values are equal but for rounding:
    |a - b| <= ``DEFAULT_RTOL`` * max(1, |a|, |b|) (measures are O(1), so near 0 the bound is absolute). The weighted
    tau of two different rankings can be one number computed in another order, 1e-16 apart: that is no win."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    diff = first - second
    diff[np.abs(diff) <= DEFAULT_RTOL * np.maximum(1.0, np.maximum(np.abs(first), np.abs(second)))] = 0.0
    return diff


def metric_tolerance(method: str) -> tuple[float, float]:
    """(rtol, atol) of a score column: the registered metric's declared tolerance, else the defaults.

    ``method`` may carry parameters (``nleep[seed=1]``, as ``score`` names such columns), and is matched without
    case, hyphens, underscores or spaces, as published tables spell the metrics (``H-Score``, ``N-LEEP``,
    ``PED-LogME``).
    """
    from ..metrics import METRICS

    def bare(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch not in "-_ ")

    name = bare(str(method).split("[", 1)[0])
    registered = next((known for known in METRICS.names() if bare(known) == name), None)
    if registered is not None:
        spec = METRICS.get(registered)
        return spec.tie_rtol, spec.tie_atol
    return DEFAULT_RTOL, DEFAULT_ATOL
