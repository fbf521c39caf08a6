"""EMMS: Efficient Multi-task Model Selector (Meng et al., "Foundation Model is Efficient Multimodal Multitask
Model Selector", NeurIPS 2023).

Labels of any form are turned into "F-labels" (embeddings of the label text by foundation text encoders, see
``modelrank.text``), and a model is scored by how well a linear map of its features fits a convex combination
of the F-labels. ``emms`` is the pure math on arrays; ``emms_classification`` (registered as "emms") builds the
F-labels from class names.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError, MissingResourceError
from ._checks import as_class_labels, as_features
from ._linalg import CrossProduct, OneHotCross, column_moments, column_space_coordinates, unit_scaled
from .base import SaturationWarning, _labels_are_text, caller_stacklevel, register_metric

#: std floor of the public code's standardisation
STD_EPS = 1e-8
DEFAULT_MAX_ITER = 10
DEFAULT_TOL = 1e-8


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of a vector onto {l : l_k >= 0, sum_k l_k = 1} (sort-based, Duchi et al. 2008).

    This is sparsemax: the l minimising ||l - v||, i.e. max(v - tau, 0) with tau chosen so the result sums to 1.
    """
    v = np.asarray(v, dtype=np.float64)
    descending = np.sort(v)[::-1]
    cumulative = np.cumsum(descending) - 1.0
    ranks = np.arange(1, len(v) + 1)
    support = ranks[descending - cumulative / ranks > 0][-1]
    return np.maximum(v - cumulative[support - 1] / support, 0.0)


def simplex_least_squares(gram: np.ndarray, linear: np.ndarray, start: np.ndarray,
                          tol: float = 1e-13, max_iter: int = 10_000) -> np.ndarray:
    """argmin over the simplex of l^T G l - 2 b^T l (G PSD, K x K), by accelerated projected gradient (FISTA).

    Exact up to ``tol`` for the K (number of label encoders) of a few that EMMS uses; unlike the public code,
    which projects the unconstrained least-squares solution onto the simplex, this solves the constrained problem.
    """
    lipschitz = 2.0 * float(np.linalg.eigvalsh(gram)[-1])
    if lipschitz <= 0:
        return start
    current = momentum_point = start
    t = 1.0
    for _ in range(max_iter):
        step = project_to_simplex(momentum_point - 2.0 * (gram @ momentum_point - linear) / lipschitz)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum_point = step + (t - 1.0) / t_next * (step - current)
        converged = np.abs(step - current).max() < tol
        current, t = step, t_next
        if converged:
            break
    return current


def emms(features: np.ndarray, label_embeddings: np.ndarray, *, max_iter: int = DEFAULT_MAX_ITER,
         tol: float = DEFAULT_TOL, return_weights: bool = False) -> float | tuple[float, np.ndarray]:
    """EMMS = -(1/(N D2)) min_{w, l in simplex} || X w - sum_k l_k Y_k ||_F^2.

    X: (N, D1) features and Y_k: (N, D2) label embeddings of encoder k, each standardised per column
    (std + 1e-8). Alternating minimisation: w = lstsq(X, Y l); l = argmin_{simplex} ||Y l - X w||^2 (solved
    exactly), repeated until the objective changes by less than ``tol`` (relative) or ``max_iter`` rounds; the
    score is the objective after the last l-step. The public code runs exactly 1 round and projects the
    unconstrained l with sparsemax; it also divides by N and then MULTIPLIES by D2 (an operator-precedence slip,
    a constant factor per dataset); here it is the mean squared residual. Higher is better.

    Everything reduces to two K x K matrices: G_kl = <Y_k, Y_l> and H_kl = <P Y_k, P Y_l> with P the projection
    on the column space of X, so each round costs O(K^2) after one O(N D1 min(N, D1)) factorisation (a pivoted
    Cholesky of X^T X when N > D1, see ``column_space_coordinates``).
    ``label_embeddings``: (N, D2) for one encoder or (N, D2, K) for K encoders. When the features span the whole
    centred sample space (N <= D1 + 1 for generic features) every embedding is fitted exactly and the score is 0
    for every model: a warning says so. Constant features explain nothing and score -1 (the variance of the
    standardised targets). ``return_weights=True`` also returns the encoder weights l.
    """
    x = unit_scaled(as_features(features, upcast=False))
    y = np.asarray(label_embeddings, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, :, None]
    if y.ndim != 3 or y.shape[0] != x.shape[0]:
        raise InvalidInputError(f"label_embeddings must be (N, D2) or (N, D2, K) with N = {x.shape[0]}, got {y.shape}")
    if not np.isfinite(y).all():
        raise InvalidInputError("label_embeddings contain NaN or inf")
    n, d2, n_encoders = y.shape
    _refuse_constant_embeddings(y, "sample")
    y = (y - y.mean(axis=0)) / (y.std(axis=0) + STD_EPS)
    targets = y.transpose(0, 2, 1).reshape(n, n_encoders * d2)  # encoder k owns columns k*D2 .. (k+1)*D2 - 1
    target_gram = np.einsum("nik,nil->kl", y, y)
    return _fit_label_mixture(x, lambda m, rows: m.T @ targets[rows], None, target_gram, d2, max_iter, tol,
                              return_weights)


def _refuse_constant_embeddings(embeddings: np.ndarray, unit: str) -> None:
    """Refuse an encoder whose (rows, D2, K) embeddings are the same in every row (every ``unit``): standardised, its
    targets are all 0, fitted exactly by any features, and EMMS put all its weight there and scored 0, its maximum,
    even on noise features (class names that are all the same text, e.g. empty)."""
    constant = np.flatnonzero((np.ptp(embeddings, axis=0) == 0).all(axis=0))
    if constant.size:
        raise InvalidInputError(f"EMMS: the label embeddings of encoder {int(constant[0])} are the same for every "
                                f"{unit} (identical class names?), so they say nothing of the labels")


def _emms_of_classes(x: np.ndarray, codes: np.ndarray, table: np.ndarray, max_iter: int, tol: float) -> float:
    """``emms(x, table[codes])`` without the (N, D2, K) F-label array: every F-label is a row of the class table.

    The per-sample standardisation becomes a count-weighted one of the (C, D2, K) table, G_kl a count-weighted
    sum over classes, and X^T Y = (class sums of X)^T table, so the O(N D1 D2 K) product shrinks to O(N D1).
    """
    n, n_classes = len(codes), table.shape[0]
    _refuse_constant_embeddings(table, "class")
    weights = np.bincount(codes, minlength=n_classes).astype(np.float64) / n
    mean = np.tensordot(weights, table, axes=1)
    std = np.sqrt(np.tensordot(weights, (table - mean) ** 2, axes=1))
    table = (table - mean) / (std + STD_EPS)
    d2, n_encoders = table.shape[1:]
    target_gram = n * np.einsum("c,cik,cil->kl", weights, table, table)
    class_targets = table.transpose(0, 2, 1).reshape(n_classes, n_encoders * d2)
    return _fit_label_mixture(x, OneHotCross(codes, n_classes), class_targets,
                              target_gram, d2, max_iter, tol, False)


def _fit_label_mixture(x: np.ndarray, cross: CrossProduct, class_targets: np.ndarray | None, target_gram: np.ndarray,
                       d2: int, max_iter: int, tol: float, return_weights: bool) -> float | tuple[float, np.ndarray]:
    """The alternating minimisation of ``emms`` given X, the standardised targets through ``cross`` (times
    ``class_targets`` when they are per class) and their K x K Gram matrix G."""
    n, n_encoders = x.shape[0], target_gram.shape[0]
    mean, std = column_moments(x)
    rank_x, coordinates = column_space_coordinates(x, cross, shift=mean, scale=1.0 / (std + STD_EPS))
    if class_targets is not None:
        coordinates = coordinates @ class_targets
    if rank_x >= n - 1:
        warnings.warn(
            f"EMMS: the {x.shape[1]}-d features span all {n} centred samples, so the regression fits any label "
            "embedding exactly and every model scores 0; use more samples than feature dimensions",
            SaturationWarning,
            stacklevel=caller_stacklevel(),
        )
    per_encoder = coordinates.reshape(rank_x, n_encoders, d2)
    projected_gram = np.einsum("rki,rli->kl", per_encoder, per_encoder)
    weights = np.full(n_encoders, 1.0 / n_encoders)
    objective = np.inf
    for _ in range(max_iter):
        # w-step: X w = P Y l. l-step: min ||Y l' - P Y l||^2 = l'^T G l' - 2 l'^T H l + l^T H l.
        new_weights = simplex_least_squares(target_gram, projected_gram @ weights, weights)
        new_objective = (new_weights @ target_gram @ new_weights - 2.0 * new_weights @ projected_gram @ weights
                         + weights @ projected_gram @ weights)
        weights, previous, objective = new_weights, objective, max(float(new_objective), 0.0)
        if abs(previous - objective) <= tol * max(objective, 1e-300):
            break
    score = -objective / (n * d2)
    return (score, weights) if return_weights else score


def _class_texts(labels: np.ndarray, classes: np.ndarray, class_names: Sequence[str] | None) -> list[str] | None:
    """Text for each sorted class value: ``class_names[class id]``, or the labels themselves when they are text."""
    if class_names is not None:
        # booleans are the class ids 0 and 1 (a binary task's labels, as every metric reads them)
        is_id = classes.dtype.kind in "biu" or (classes.dtype.kind == "f" and np.all(classes == np.round(classes)))
        if not is_id or classes.min() < 0 or classes.max() >= len(class_names):
            raise InvalidInputError(f"labels must be class ids in 0..{len(class_names) - 1} to use class_names")
        return [str(class_names[int(c)]) for c in classes]
    # Text as the registry reads it: Python ints in an object array (a pandas object column) are class ids, and
    # were embedded as the words "0", "1", ... when EMMS was called directly
    if _labels_are_text(labels):
        # bytes labels (an .npz of b"cat", a Parquet binary column) are text too: str() would embed "b'cat'"
        return [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in classes]
    return None


@register_metric(
    "emms",
    needs=("features", "labels", "class_names"),
    # iterated to a relative tolerance of 1e-8; scores lie in [-1, 0] and saturate at 0 (about -1e-15)
    tie_rtol=1e-8,
    tie_atol=1e-10,
    reference="Meng et al., Foundation Model is Efficient Multimodal Multitask Model Selector, NeurIPS 2023",
)
def emms_classification(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None, *,
                        encoders: str | Sequence[str] | None = None, max_iter: int = DEFAULT_MAX_ITER,
                        tol: float = DEFAULT_TOL) -> float:
    """EMMS of a classification task whose F-labels are text embeddings of the class names (see ``emms``).

    ``class_names[c]`` names class id c; text labels (strings) are used as their own names. ``encoders``: one
    or several text encoder names (default: the offline all-MiniLM-L6-v2 of ``modelrank.text``; several must share
    one embedding size), L2-normalised per class name (the Normalize module of that sentence-transformers model).
    This is NOT the public code's setting: it uses K = 3 encoders (BERT-large, GPT-2-medium and the CLIP text
    tower) whose features it does not normalise, so scores are comparable between models here, not with the
    paper's numbers. Without names or without any usable
    encoder, one-hot labels are used as F-labels (a warning says so), which makes EMMS a plain least-squares fit
    of the one-hot labels.
    """
    from ..text import DEFAULT_TEXT_ENCODER, encode_texts

    x = unit_scaled(as_features(features, upcast=False))
    codes, n_classes = as_class_labels(labels, x.shape[0])
    classes = np.unique(np.asarray(labels).reshape(len(codes)))
    texts = _class_texts(labels, classes, class_names)
    if encoders is None or isinstance(encoders, (list, tuple)):
        names = list(encoders or [DEFAULT_TEXT_ENCODER])
    else:  # one name (or something else, refused below)
        names = [encoders]
    if not all(isinstance(name, str) for name in names):
        raise InvalidInputError(f"encoders must be a text encoder name or a list of names, not {encoders!r}")
    table = None
    if texts is None:
        warnings.warn("EMMS: no class names, so one-hot labels stand in for the text F-labels",
                      stacklevel=caller_stacklevel())
    else:
        try:
            tables = [encode_texts(texts, name) for name in names]
        except MissingResourceError as err:
            warnings.warn(f"EMMS: {err}; one-hot labels stand in for the text F-labels", stacklevel=caller_stacklevel())
        else:
            if len({t.shape for t in tables}) > 1:
                raise InvalidInputError(f"text encoders {names} give embeddings of different sizes")
            table = np.stack(tables, axis=-1)  # (C, D2, K)
    if table is None:
        table = np.eye(n_classes)[:, :, None]
    return _emms_of_classes(x, codes, table, max_iter, tol)
