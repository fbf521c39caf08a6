"""Linear-probe ground truth: the accuracy of a regularised linear head on frozen features.

Protocol (Kornblith et al., "Do Better ImageNet Models Transfer Better?", CVPR'19, the "linear evaluation" that
SSL-transfer (Ericsson et al., CVPR'21) and SFDA's self-supervised zoo follow): standardise the features with the
train split's statistics; fit multinomial logistic regression (L-BFGS) for every inverse regularisation
strength C of a log-spaced sweep; pick C on the validation split; refit on train + val with that C; report the
test split. Regression targets get ridge regression with alpha = 1 / C over the same sweep, all alphas from
one SVD.

Each logistic fit of the sweep starts from the previous solution (C increasing, so from the smoother problem),
which is what makes a 20-45 point sweep affordable. Backend: sklearn's ``LogisticRegression(warm_start=True)``
(lbfgs). scripts/bench_linear_probe.py compares it with a full-batch torch L-BFGS of the same objective: torch
took 0.7-1.0x sklearn's CPU time at 8000 x 512 x 50 classes (same iterations), but its first use imports
torch._dynamo (~4 s) and, on a busy 2-core machine, the 1078 x 64 digits sweep ran 10x slower (thread
contention), so end to end sklearn is the faster choice on CPU. A CUDA torch path for large zoos is future work.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..features import FeatureSet
from ..metrics._linalg import one_blas_thread_if_small

# Half-decade steps over Kornblith et al.'s range 1e-6 ... 1e5 (they used 45 points; 23 keeps every other one).
DEFAULT_CS = np.logspace(-6, 5, 23)
CLASSIFICATION_METRICS = ("accuracy", "mean_per_class_accuracy")
REGRESSION_METRICS = ("r2", "neg_mse")
STD_FLOOR = 1e-6  # constant feature dimensions are centred, not blown up


def check_metric(metric: str | None, task: str) -> str:
    """``metric`` (None: the task's default) if it fits a ``task`` ("classification" or "regression") task."""
    allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    metric = metric or allowed[0]
    if metric not in allowed:
        raise InvalidInputError(f"metric {metric!r} does not fit a {task} task; choose one of {allowed}")
    return metric


@dataclass
class ProbeResult:
    """Outcome of one probe: the selected C, the validation curve over the sweep, and the test metric."""

    metric: str
    best_c: float
    val_metric: float
    test_metric: float
    cs: list[float]
    val_curve: list[float]
    iterations: int
    seconds: float
    unconverged_cs: list[float]  # C values whose fit hit max_iter (reported, not hidden)


def _check_splits(train: FeatureSet, val: FeatureSet, test: FeatureSet) -> None:
    dims = {s.features.shape[1] if s.features.ndim == 2 else None for s in (train, val, test)}
    if None in dims or len(dims) != 1:
        raise InvalidInputError("train, val and test features must be 2-D with the same number of columns")
    for name, split in (("train", train), ("val", val), ("test", test)):
        if split.n_samples < 1 or len(split.labels) != split.n_samples:
            raise InvalidInputError(f"{name} split: {len(split.labels)} labels for {split.n_samples} feature rows")
        if not np.all(np.isfinite(split.features)):
            raise InvalidInputError(f"{name} split: features contain NaN or infinite values")
    if len({train.task, val.task, test.task}) != 1:
        raise InvalidInputError("train, val and test must have the same task")


def _standardiser(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # An overflowing std (float32 squares overflow from |x| ~ 1.8e19) divided every feature to 0, and the probe
    # recorded chance accuracy as the features' with only a numpy warning: such features are standardised in
    # float64, and beyond float64's range they are an error.
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = train.mean(axis=0), train.std(axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            train = np.asarray(train, dtype=np.float64)
            mean, std = train.mean(axis=0), train.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise InvalidInputError(f"features as large as {np.abs(train).max():.3g} overflow when standardised; "
                                "rescale them")
    return mean, np.maximum(std, STD_FLOOR)


def class_metric(pred: np.ndarray, labels: np.ndarray, n_classes: int, metric: str) -> float:
    """Top-1 accuracy, or the mean over classes present in ``labels`` of per-class accuracy."""
    correct = pred == labels
    if metric == "accuracy":
        return float(correct.mean())
    per_class_total = np.bincount(labels, minlength=n_classes)
    per_class_correct = np.bincount(labels, weights=correct, minlength=n_classes)
    present = per_class_total > 0
    return float((per_class_correct[present] / per_class_total[present]).mean())


def _regression_metric(pred: np.ndarray, target: np.ndarray, metric: str) -> float:
    """R^2 averaged over target columns, or the negative mean squared error (higher = better for both)."""
    residual = ((target - pred) ** 2).sum(axis=0)
    if metric == "neg_mse":
        return float(-residual.sum() / target.size)
    total = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - residual / np.maximum(total, np.finfo(float).tiny)))


def _fit(model, x: np.ndarray, y: np.ndarray, c: float) -> tuple[int, bool]:
    """One warm-started lbfgs fit at ``c``: (iterations, converged)."""
    from sklearn.exceptions import ConvergenceWarning

    model.set_params(C=float(c))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return int(model.n_iter_.max()), not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _fit_logistic_path(x_train, y_train, x_val, val_y, n_classes, cs, metric, max_iter, tol):
    """Fit every C of the sweep, each from the previous solution; return the model, curve and best state."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(warm_start=True, max_iter=max_iter, tol=tol)
    curve, iterations, unconverged, best = [], 0, [], (-np.inf, None, None)
    for c in cs:
        used, converged = _fit(model, x_train, y_train, c)
        iterations += used
        if not converged:
            unconverged.append(float(c))
        score = class_metric(model.predict(x_val), val_y, n_classes, metric)
        curve.append(score)
        if score > best[0]:  # ties keep the smaller C (stronger regularisation)
            best = (score, float(c), (model.coef_.copy(), model.intercept_.copy()))
    return model, curve, iterations, unconverged, best


def _probe_classification(train, val, test, cs, metric, max_iter, tol, refit):
    classes, train_y = np.unique(train.labels, return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError(f"the train split has {classes.size} class; a probe needs at least 2")
    held_out = np.concatenate([val.labels, test.labels])
    unseen = np.unique(held_out[~np.isin(held_out, classes)])
    if unseen.size:
        raise InvalidInputError(f"val/test have classes the train split lacks: {unseen[:5].tolist()}")
    val_y, test_y = np.searchsorted(classes, val.labels), np.searchsorted(classes, test.labels)
    mean, std = _standardiser(train.features)
    x_train, x_val, x_test = ((f - mean) / std for f in (train.features, val.features, test.features))

    model, curve, iterations, unconverged, (best_score, best_c, (coef, intercept)) = _fit_logistic_path(
        x_train, train_y, x_val, val_y, classes.size, cs, metric, max_iter, tol
    )
    model.coef_, model.intercept_ = coef, intercept
    if refit:
        # Kornblith et al.: retrain on train + val with the chosen C, starting from the selected solution.
        used, converged = _fit(model, np.concatenate([x_train, x_val]), np.concatenate([train_y, val_y]), best_c)
        iterations += used
        if not converged:
            unconverged.append(best_c)
    test_score = class_metric(model.predict(x_test), test_y, classes.size, metric)
    return best_c, best_score, test_score, curve, iterations, unconverged


def _ridge_predictions(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge (unpenalised intercept) predictions of ``x_eval`` for every alpha at once, shape (n_alpha, n, k).

    One SVD of the centred X serves the whole sweep: W(alpha) = V diag(s / (s^2 + alpha)) U^T (Y - mean Y).
    """
    x_mean, y_mean = x_fit.mean(axis=0), y_fit.mean(axis=0)
    u, s, vt = np.linalg.svd(x_fit - x_mean, full_matrices=False)
    projected_y = u.T @ (y_fit - y_mean)  # (r, k)
    shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # (n_alpha, r)
    return np.einsum("nr,ar,rk->ank", (x_eval - x_mean) @ vt.T, shrink, projected_y, optimize=True) + y_mean


def _probe_regression(train, val, test, cs, metric, refit):
    to_2d = lambda y: np.asarray(y, dtype=np.float64).reshape(len(y), -1)  # noqa: E731
    y_train, y_val, y_test = to_2d(train.labels), to_2d(val.labels), to_2d(test.labels)
    if not all(np.all(np.isfinite(y)) for y in (y_train, y_val, y_test)):
        raise InvalidInputError("regression targets contain NaN or infinite values")
    # The regression analogue of a single class: a constant target recorded R^2 = 1 for every model, and a
    # constant val or test target R^2 = 1 - residual / 1e-308, numbers of any size from noise.
    if np.all(np.ptp(y_train, axis=0) == 0):
        raise InvalidInputError("the regression target is constant on the train split; a probe needs it to vary")
    for name, y in (("val", y_val), ("test", y_test)):
        if metric == "r2" and np.any(np.ptp(y, axis=0) == 0):
            raise InvalidInputError(f"R^2 is undefined on the {name} split, whose target is constant; use neg_mse")
    mean, std = _standardiser(train.features)
    x_train, x_val, x_test = ((f - mean) / std for f in (train.features, val.features, test.features))
    alphas = 1.0 / np.asarray(cs, dtype=np.float64)
    predictions = _ridge_predictions(x_train, y_train, x_val, alphas)
    curve = [_regression_metric(p, y_val, metric) for p in predictions]
    best = int(np.argmax(curve))
    if refit:
        x_fit, y_fit = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    else:
        x_fit, y_fit = x_train, y_train
    test_pred = _ridge_predictions(x_fit, y_fit, x_test, alphas[best : best + 1])[0]
    return float(cs[best]), curve[best], _regression_metric(test_pred, y_test, metric), curve, 0, []


def linear_probe(
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    cs=DEFAULT_CS,
    metric: str | None = None,
    refit: bool = True,
    max_iter: int = 500,
    tol: float = 1e-4,
) -> ProbeResult:
    """Linear probe of frozen features: C swept on ``val``, the chosen head (refit on train+val) scored on ``test``.

    ``cs``: increasing inverse regularisation strengths (sklearn's C; ridge uses alpha = 1/C). ``metric``:
    ``accuracy`` (default) or ``mean_per_class_accuracy`` for classification (SFDA uses the latter for
    aircraft, caltech101, flowers and pets); ``r2`` (default) or ``neg_mse`` for regression. ``max_iter`` and
    ``tol`` bound each L-BFGS fit (sklearn's meaning). Deterministic: L-BFGS starts from zero.
    """
    _check_splits(train, val, test)
    cs = check_cs(cs)
    regression = train.task == "regression"
    metric = check_metric(metric, train.task)
    start = time.perf_counter()
    if regression:
        outcome = _probe_regression(train, val, test, cs, metric, refit)
    else:
        # lbfgs's vector bookkeeping on threaded BLAS took 10-17x longer on 2 busy cores (400-8000 x 1280, 10
        # classes: 7.3 s vs 0.42 s, 42.8 s vs 4.3 s; same results), which products this small do not win back.
        with one_blas_thread_if_small(train.features.size * np.unique(train.labels).size):
            outcome = _probe_classification(train, val, test, cs, metric, max_iter, tol, refit)
    best_c, val_metric, test_metric, curve, iterations, unconverged = outcome
    return ProbeResult(
        metric=metric, best_c=best_c, val_metric=val_metric, test_metric=test_metric, cs=cs.tolist(),
        val_curve=curve, iterations=iterations, seconds=time.perf_counter() - start, unconverged_cs=unconverged,
    )


def holdout(data: FeatureSet, fraction: float, seed: int = 0) -> tuple[FeatureSet, FeatureSet]:
    """Seeded split of ``data`` into (rest, held-out ``fraction``), stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise InvalidInputError(f"a held-out fraction must be in (0, 1), got {fraction}")
    stratify = np.asarray(data.labels) if data.task == "classification" else None
    try:
        rest, held = train_test_split(np.arange(data.n_samples), test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:  # e.g. a class with a single sample cannot be stratified
        raise InvalidInputError(f"cannot hold out {fraction:g} of {data.dataset} ({data.n_samples} samples): {exc}") from None
    return _subset(data, np.sort(rest)), _subset(data, np.sort(held))


def check_cs(cs: Sequence[float] | np.ndarray) -> np.ndarray:
    """The C sweep as float64; anything but a non-empty increasing sequence of finite positive numbers (NaN
    included, which no comparison rejects) is an ``InvalidInputError``."""
    cs = np.asarray(cs, dtype=np.float64)
    if cs.ndim != 1 or cs.size < 1 or not np.isfinite(cs).all() or np.any(cs <= 0) or np.any(np.diff(cs) <= 0):
        raise InvalidInputError("cs must be a non-empty increasing sequence of finite positive numbers")
    return cs


def _subset(data: FeatureSet, idx: np.ndarray) -> FeatureSet:
    return FeatureSet(
        features=data.features[idx], labels=np.asarray(data.labels)[idx], model=data.model, dataset=data.dataset,
        task=data.task, source_probs=None if data.source_probs is None else data.source_probs[idx],
        sample_ids=None if data.sample_ids is None else np.asarray(data.sample_ids)[idx],
        class_names=data.class_names, meta=dict(data.meta),
    )


def split_feature_set(data: FeatureSet, val: float = 0.2, test: float = 0.2, seed: int = 0) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """Seeded train/val/test split of one FeatureSet (fractions of the whole), stratified for classification."""
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise InvalidInputError(f"val ({val}) and test ({test}) must be fractions in (0, 1) with val + test < 1")
    rest, test_set = holdout(data, test, seed)
    train, val_set = holdout(rest, val / (1 - test), seed)
    return train, val_set, test_set
