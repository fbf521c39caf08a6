"""PED: Potential Energy Decline (Li et al., "Exploring Model Transferability through the Lens of Potential
Energy", ICCV 2023).

PED is not a score but a preprocessing of the features: classes whose feature clusters overlap repel each other
(a force-driven simulation of how fine-tuning spreads classes apart), and an existing metric then scores the
moved features. ``ped_features`` is the pure simulation, ``ped(metric)`` wraps any feature-based metric, and
``ped_<base>`` is registered for the paper's bases (LogME, SFDA, GBC, N-LEEP) when they are available.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, UnknownNameError
from ._checks import MAX_FEATURE_MAGNITUDE, as_class_labels, as_features
from ._linalg import ROW_BLOCK, class_sums, float64_row_blocks
from .base import METRICS, Interval, register_metric

# Defaults of the public code's evaluation script (its function defaults differ: nsigma 2.0).
DEFAULT_TIME_STEP = 0.1
DEFAULT_EXIT_RATIO = 0.5
DEFAULT_NSIGMA = 0.6
DEFAULT_MAX_STEPS = 6
#: PED keeps float32 features in float32 while it moves no class further than this: float32 rows plus such an
#: offset round to at most float32's largest value (its spacing there is 2e31), never to inf.
FLOAT32_SAFE_MAGNITUDE = 1e30
#: Most steps ``steps`` may allow. Overlapping classes keep moving by ever smaller amounts, so with exit_ratio=0
#: nothing but ``steps`` ends the simulation (steps=10**9 ran for hours); a step costs O(C^2 D) (1000 steps of
#: 397 classes x 2048 dims: minutes). The public code stops after 6.
MAX_STEPS = 1_000
DEFAULT_FORCE_CONSTANT = 1.0
#: floor on the per-dimension std used for standardisation (the reference's eps)
STD_FLOOR = 1e-3
#: metrics the paper combines with PED; ``ped_<name>`` is registered for those that exist
PAPER_BASES = ("gbc", "logme", "nleep", "sfda")
REFERENCE = "Li et al., Exploring Model Transferability through the Lens of Potential Energy, ICCV 2023"


def class_displacements(means: np.ndarray, radius: np.ndarray, *, time_step: float, nsigma: float,
                        force_constant: float) -> np.ndarray:
    """(C, D) displacement of each class for one step of the simulation, from the classes' standardised centres
    mu_c (C, D) and radii R_c = sqrt(sum_d var_cd) (C,).

    For each pair, overlap = max(|nsigma| (R_i + R_j) - ||mu_i - mu_j||, 0), force F = force_constant * overlap,
    and each class moves away from the other along the unit vector between the centres by min(t^2 F / 2,
    overlap). Pairs with coincident centres have no direction and do not move. Written as
    shift_c = sum_j w_cj (mu_c - mu_j) with w_cj = move_cj / d_cj, so only C x C matrices are built (the
    reference materialises a C x C x D array).
    """
    from scipy.spatial.distance import cdist  # scipy.spatial is slow to import: only when PED runs

    distance = cdist(means, means)
    overlap = np.maximum(abs(nsigma) * (radius[:, None] + radius[None, :]) - distance, 0.0)
    move = np.minimum(0.5 * np.float64(time_step) ** 2 * force_constant * overlap, overlap)
    np.fill_diagonal(move, 0.0)
    weight = np.divide(move, distance, out=np.zeros_like(move), where=distance > 0)
    return weight.sum(axis=1)[:, None] * means - weight @ means


def ped_features(features: np.ndarray, labels: np.ndarray, *, steps: int = DEFAULT_MAX_STEPS,
                 step_size: float = DEFAULT_TIME_STEP, exit_ratio: float = DEFAULT_EXIT_RATIO,
                 nsigma: float = DEFAULT_NSIGMA, force_constant: float = DEFAULT_FORCE_CONSTANT,
                 source_mean: np.ndarray | None = None, source_std: np.ndarray | None = None) -> np.ndarray:
    """Features after the PED potential-energy dynamics, in the original units (a new array: float32 for float32
    features that stay well inside its range, else float64).

    1. Standardise: z = (x - m) / max(s, 1e-3). The paper uses the mean/std of the SAME model's features on the
       source (ImageNet val) data; pass them as ``source_mean``/``source_std``. Without them the target
       features' own statistics are used (source features are not available here).
    2. Repeat at most ``steps`` times: compute every class's displacement (``class_displacements`` with time
       step ``step_size``), movement = sum |displacement|; stop (discarding this step) once movement /
       first movement <= ``exit_ratio``; otherwise move every sample by its class's displacement.
    3. Undo the standardisation.

    A step moves whole classes, so the class radii never change and the centres move by the displacements:
    the simulation runs on the (C, D) class statistics alone, from two blocked passes (class sums; squared
    deviations from the class means, which also give the column std as within- plus between-class parts), and a
    moved row is x + s * (its class's total displacement), so the only (N, D) array is the result.
    """
    if not 0 <= steps <= MAX_STEPS:
        raise InvalidInputError(f"PED's steps must be in [0, {MAX_STEPS}] (the public code stops after 6), got {steps}")
    x = as_features(features, upcast=False)  # float32 stays: each pass converts one row block at a time
    y, n_classes = as_class_labels(labels, x.shape[0])
    n, dim = x.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    class_means = class_sums(x, y, n_classes) / counts[:, None]
    class_rows = np.empty((min(n, ROW_BLOCK), dim))
    deviations = np.zeros((n_classes, dim))  # per class and column: sum of squared deviations from the class mean
    for rows, block in float64_row_blocks(x):
        block -= np.take(class_means, y[rows], axis=0, out=class_rows[: block.shape[0]], mode="clip")
        block *= block
        deviations += class_sums(block, y[rows], n_classes)
    if source_mean is None or source_std is None:
        column_mean = counts @ class_means / n
        column_std = np.sqrt((deviations.sum(axis=0) + counts @ (class_means - column_mean) ** 2) / n)
    mean = column_mean if source_mean is None else _source_stat(source_mean, dim, "source_mean")
    std = column_std if source_std is None else _source_stat(source_std, dim, "source_std", non_negative=True)
    std = np.maximum(std, STD_FLOOR)
    means = (class_means - mean) / std  # the standardised centres z = (x - m) / s of the classes
    radius = np.sqrt((deviations / std**2).sum(axis=1) / counts)
    total_shift = np.zeros_like(means)
    first_movement = None
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging simulation is refused below
        for _ in range(steps):
            shift = class_displacements(means, radius, time_step=step_size, nsigma=nsigma,
                                        force_constant=force_constant)
            movement = float(np.abs(shift).sum())
            if first_movement is None:
                first_movement = movement
            if movement == 0 or movement / first_movement <= exit_ratio:
                break
            total_shift += shift
            means = means + shift
        offsets = total_shift * std  # back in the original units: (z + shift) * s + m = x + shift * s
    largest_offset = float(np.abs(offsets).max())
    if not largest_offset <= MAX_FEATURE_MAGNITUDE:  # also NaN
        raise InvalidInputError(f"PED moved classes by {largest_offset:.3g}, beyond what the base metric can score; "
                                f"lower step_size ({step_size}), nsigma ({nsigma}) or force_constant ({force_constant})")
    # float32 features stay float32 (rounded once more, to their own precision): half the memory of the one (N, D)
    # array, which the base metrics convert one row block at a time, as they do the features themselves.
    single = x.dtype == np.float32 and largest_offset < FLOAT32_SAFE_MAGNITUDE
    moved = np.empty((n, dim), dtype=np.float32 if single else np.float64)
    for rows, block in float64_row_blocks(x):
        np.add(block, np.take(offsets, y[rows], axis=0, out=class_rows[: block.shape[0]], mode="clip"), out=moved[rows])
    return moved


def _source_stat(value: np.ndarray, dim: int, name: str, non_negative: bool = False) -> np.ndarray:
    try:
        stat = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be {dim} finite numbers, got {type(value).__name__}") from None
    if stat.shape != (dim,) or not np.isfinite(stat).all():
        raise InvalidInputError(f"{name} must be {dim} finite numbers, got shape {np.shape(value)}")
    # A negative standard deviation is not one (a variance or a mean passed by mistake): the floor turned it into
    # 1e-3 and stretched that dimension silently.
    negative = int((stat < 0).sum()) if non_negative else 0
    if negative:
        raise InvalidInputError(f"{name} holds standard deviations, which are >= 0; {negative} are negative")
    return stat


PED_PARAMS = ("steps", "step_size", "exit_ratio", "nsigma", "force_constant", "source_mean", "source_std")


def ped(metric: str | Callable[..., float]) -> Callable[..., float]:
    """Wrap a feature-based metric ``f(features, labels, ...)``: PED-move the features, then score them.

    ``metric``: a registered metric name or a function. The returned function takes the base metric's
    arguments plus the keyword arguments of ``ped_features`` (``steps``, ``step_size``, ``exit_ratio``,
    ``nsigma``, ``force_constant``, ``source_mean``, ``source_std``), which it does not pass on.
    """
    if isinstance(metric, str):
        spec = METRICS.entry(metric).obj
        if spec.zoo_level or spec.needs[:2] != ("features", "labels"):
            raise InvalidInputError(f"PED moves features, so it cannot wrap {metric!r} (needs {', '.join(spec.needs)})")
        base = spec.fn
    else:
        base = metric

    @functools.wraps(base)
    def wrapped(features: np.ndarray, labels: np.ndarray, *args: Any, **kwargs: Any) -> float:
        ped_kwargs = {k: kwargs.pop(k) for k in PED_PARAMS if k in kwargs}
        return base(ped_features(features, labels, **ped_kwargs), labels, *args, **kwargs)

    wrapped.__doc__ = f"PED-moved features scored by {getattr(base, '__name__', 'the metric')}. " + (ped.__doc__ or "")
    # The signature callers (and the registry's parameter check) see: the base metric's, plus PED's keywords.
    base_signature = inspect.signature(base)
    ped_parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                      for name, p in inspect.signature(ped_features).parameters.items() if name in PED_PARAMS]
    kept = [p for p in base_signature.parameters.values() if p.name not in PED_PARAMS]
    var_keyword = [p for p in kept if p.kind is inspect.Parameter.VAR_KEYWORD]
    kept = [p for p in kept if p.kind is not inspect.Parameter.VAR_KEYWORD]
    wrapped.__signature__ = base_signature.replace(parameters=kept + ped_parameters + var_keyword)
    return wrapped


def ped_variant(name: str) -> str:
    """The registered PED name of metric ``name`` (e.g. "logme" -> "ped_logme"), for the CLI's ``--ped``."""
    variant = f"ped_{name.lower()}"
    if variant not in METRICS:
        available = sorted(e.name[4:] for e in METRICS if e.name.startswith("ped_"))
        raise UnknownNameError(f"no PED variant of metric {name!r}; PED is registered for {', '.join(available)}")
    return variant


def _register_paper_bases() -> None:
    for base in PAPER_BASES:
        try:  # a metric may live in a module of its own name or in another one (N-LEEP beside LEEP)
            importlib.import_module(f"{__package__}.{base}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{base}":
                raise  # the module exists but is broken
        if base not in METRICS:
            continue
        spec = METRICS.entry(base).obj
        register_metric(
            f"ped_{base}",
            needs=spec.needs,
            tasks=("classification",),
            higher_is_better=spec.higher_is_better,
            reference=f"{REFERENCE}; base: {spec.reference}",
            tie_rtol=spec.tie_rtol,
            tie_atol=spec.tie_atol,
            choices=spec.choices,
            ranges={**spec.ranges, "steps": Interval(0, MAX_STEPS, closed_high=True)},
        )(ped(base))


_register_paper_bases()
