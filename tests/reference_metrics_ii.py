"""Slow, literal references for the metrics-II family, written from the papers' equations.

Loops over classes, pairs and samples on purpose: these are the checks (tests) and the baselines
(benchmarks/bench_metrics_ii.py) for the vectorised implementations in modelrank.metrics. They take integer
labels 0..C-1 and float64 features, and never share code with the fast versions beyond numpy/scipy/sklearn.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg
from scipy.stats import rankdata


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _shrunk(s: np.ndarray, alpha: float) -> np.ndarray:
    d = s.shape[0]
    return (1 - alpha) * s + alpha * np.trace(s) / d * np.eye(d)


def _fisher_lda(x: np.ndarray, y: np.ndarray, shrinkage: float | None):
    """The sklearn-style eigen-solver LDA the SFDA code uses: returns (proba, directions, shrinkage)."""
    classes = np.unique(y)
    n, d = x.shape
    means = np.array([x[y == c].mean(axis=0) for c in classes])
    priors = np.array([(y == c).mean() for c in classes])
    sw = np.zeros((d, d))
    for c, p in zip(classes, priors):
        sw += p * np.atleast_2d(np.cov(x[y == c].T, bias=True))
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(sw)[-1]), 1e-10)
    sw_s = _shrunk(sw, shrinkage)
    st_s = _shrunk(np.atleast_2d(np.cov(x.T, bias=True)), shrinkage)
    evals, evecs = scipy.linalg.eigh(st_s - sw_s, sw_s)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return _softmax(x @ coef.T + intercept), evecs, shrinkage


def sfda_reference(x: np.ndarray, y: np.ndarray, confmix_strength: float = 1.0) -> float:
    x = x.copy()
    n = len(y)
    classes = np.unique(y)
    proba, _, shrinkage = _fisher_lda(x, y, None)
    soft = _softmax(proba)
    means = np.array([x[y == c].mean(axis=0) for c in classes])
    for c in classes:
        outer = np.mean([means[o] for o in classes if o != c], axis=0)
        for i in np.where(y == c)[0]:
            q = soft[i, c]
            x[i] = x[i] + confmix_strength * (1 - q) * (outer - x[i])
    proba, _, _ = _fisher_lda(x, y, shrinkage)
    return float(np.mean([proba[i, y[i]] for i in range(n)]))


def parc_reference(x: np.ndarray, y: np.ndarray, pca_dim: int = 32) -> float:
    """PARC on all samples (no subsampling); classification labels."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    f = PCA(n_components=min(pca_dim, *x.shape), svd_solver="full").fit_transform(x)
    f = StandardScaler().fit_transform(f)
    onehot = np.eye(y.max() + 1)[y]
    a, b = [], []
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            a.append(1 - np.corrcoef(f[i], f[j])[0, 1])
            b.append(1 - np.corrcoef(onehot[i], onehot[j])[0, 1])
    b = np.round(b, 12)  # the two exact values, without floating-point noise that would break their ties
    return float(100 * np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def transrate_reference(x: np.ndarray, y: np.ndarray, eps: float = 1e-4) -> float:
    """The D x D form of the TransRate code: R(Z) - (1/C) sum_c R(Z_c)."""
    def rate(z):
        n, d = z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1]

    z = x - x.mean(axis=0)
    classes = np.unique(y)
    return float(rate(z) - sum(rate(z[y == c]) for c in classes) / len(classes))


def ncti_terms_reference(x: np.ndarray, y: np.ndarray, pca_dim: int = 64) -> tuple[float, float, float]:
    """The NCTI code's three terms with sklearn PCA + sklearn's eigen-solver LDA (always eigen, see ncti.py)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    pca = PCA(n_components=min(pca_dim, *x.shape), svd_solver="full")
    f = pca.fit_transform(x)
    shrinkage = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(shrinkage)).fit(f, y)
    low = lda.transform(f)
    seli = np.linalg.norm(low - low.mean(axis=0), ord="nuc")
    proba = lda.predict_proba(f)
    ncc = np.mean([proba[i, y[i]] for i in range(len(y))])
    vc = np.log(sum(np.linalg.norm(proba[y == c], ord="nuc") for c in np.unique(y)))
    return float(seli), float(ncc), float(vc)


def knn_reference(x: np.ndarray, y: np.ndarray, k: int = 5, metric: str = "cosine") -> float:
    """Leave-one-out kNN; ties between classes with equal votes go to the smaller sum of neighbour ranks; classes
    still tied share the credit (1/t each)."""
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    correct = 0
    for i in range(len(y)):
        dist = np.array([np.linalg.norm(x[i] - x[j]) if j != i else np.inf for j in range(len(y))])
        order = np.argsort(dist)[:k]
        keys = {}
        for c in np.unique(y):
            ranks = [r for r, j in enumerate(order) if y[j] == c]
            keys[c] = (-len(ranks), sum(ranks))
        winners = [c for c, key in keys.items() if key == min(keys.values())]
        correct += (y[i] in winners) / len(winners)
    return correct / len(y)


def linear_probe_reference(x: np.ndarray, y: np.ndarray, folds: int = 5, c: float = 1.0, max_iter: int = 200,
                           seed: int = 0) -> float:
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    accuracies = []
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std == 0] = 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = LogisticRegression(C=c, max_iter=max_iter).fit((x[train] - mean) / std, y[train])
        accuracies.append(np.mean(clf.predict((x[test] - mean) / std) == y[test]))
    return float(np.mean(accuracies))


def simplex_least_squares_reference(targets: list[np.ndarray], t: np.ndarray) -> np.ndarray:
    """argmin over the simplex of ||sum_k l_k Y_k - t||^2 by enumerating supports and solving each KKT system."""
    k = len(targets)
    a = np.stack([y.ravel() for y in targets], axis=1)
    best, best_value = None, np.inf
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            sub = a[:, support]
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = 2 * sub.T @ sub
            kkt[:size, size] = kkt[size, :size] = 1
            rhs = np.concatenate([2 * sub.T @ t.ravel(), [1.0]])
            solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (solution < -1e-12).any():
                continue
            lam = np.zeros(k)
            lam[list(support)] = solution
            value = np.sum((a @ lam - t.ravel()) ** 2)
            if value < best_value:
                best, best_value = lam, value
    return best


def emms_reference(x: np.ndarray, y: np.ndarray, iterations: int = 1) -> tuple[float, np.ndarray]:
    """EMMS by explicit alternation: w = lstsq(X, Y l), l = exact simplex least squares; y: (N, D2, K)."""
    def standardise(a):
        return (a - a.mean(axis=0)) / (a.std(axis=0) + 1e-8)

    x = standardise(x)
    targets = [standardise(y[:, :, k]) for k in range(y.shape[2])]
    lam = np.full(len(targets), 1 / len(targets))
    for _ in range(iterations):
        w = np.linalg.lstsq(x, sum(l * t for l, t in zip(lam, targets)), rcond=None)[0]
        fitted = x @ w
        lam = simplex_least_squares_reference(targets, fitted)
    residual = np.sum((fitted - sum(l * t for l, t in zip(lam, targets))) ** 2)
    return float(-residual / (x.shape[0] * targets[0].shape[1])), lam


def ped_features_reference(x: np.ndarray, y: np.ndarray, steps: int = 6, time_step: float = 0.1,
                           exit_ratio: float = 0.5, nsigma: float = 0.6, constant: float = 1.0) -> np.ndarray:
    """PED dynamics pair by pair, standardised with the target features' own statistics."""
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3)
    z = (x - mean) / std
    classes = np.unique(y)
    first = None
    for _ in range(steps):
        means = {c: z[y == c].mean(axis=0) for c in classes}
        radius = {c: np.sqrt(z[y == c].var(axis=0).sum()) for c in classes}
        shift = {c: np.zeros(z.shape[1]) for c in classes}
        for i, j in itertools.combinations(classes, 2):
            diff = means[i] - means[j]
            d = np.linalg.norm(diff)
            overlap = max(nsigma * (radius[i] + radius[j]) - d, 0.0)
            move = min(0.5 * time_step**2 * constant * overlap, overlap)
            if d > 0:
                shift[i] += move * diff / d
                shift[j] -= move * diff / d
        movement = sum(np.abs(s).sum() for s in shift.values())
        first = movement if first is None else first
        if movement == 0 or movement / first <= exit_ratio:
            break
        for i in range(len(y)):
            z[i] = z[i] + shift[y[i]]
    return z * std + mean
