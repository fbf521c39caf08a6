"""modelrank against the structure of the public reference code, same arrays, one table of ratios.

    python benchmarks/bench_public.py                          # N=10k, D=2048, C=100, 1 BLAS thread
    python benchmarks/bench_public.py --n 50000 --metrics logme,hscore --threads 2
    python benchmarks/bench_public.py --with-slow              # also TransRate's D x D per-class code (minutes)
    python benchmarks/bench_public.py --n 50000 --with-slow --metrics sfda,ped_sfda,transrate

Each reference below re-implements the public code's computation as it is written (its decompositions, loops,
dtypes and solver settings), so the ratio public s / modelrank s measures modelrank's implementation, not a
different algorithm. Arrays: the anchors' ``speed_arrays`` (``../shared/anchors/reference-scores/make_inputs.py``:
float32 post-ReLU features, balanced classes, a 1000-way source softmax) when present, else the same recipe here.
Timings are the fastest of ``--repeat`` calls; run it alone on the machine, or compare ratios measured in one run.
On a shared machine ``--clock cpu`` times the process's CPU seconds (with 1 BLAS thread: the single thread's), which
waiting for a busy CPU does not inflate.

``--floors`` also times, for the pairs in ``FLOORS``, the work that any exact implementation of the same computation
must do on these arrays (a product or a pass that the public side runs as well, or skips only by approximating):
public s / floor s is then the largest ratio reachable here, e.g. below 5x for an argmax both sides need.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.optimize  # noqa: E402
from scipy.special import digamma, loggamma, logsumexp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
ANCHOR_INPUTS = Path(os.environ.get("MODELRANK_ANCHORS") or ROOT.parent / "shared" / "anchors") / "reference-scores"

import reference_metrics as ref_i  # noqa: E402
import reference_metrics_ii as ref_ii  # noqa: E402

from modelrank.metrics._linalg import seeded_subsample  # noqa: E402
from modelrank.metrics.emms import DEFAULT_MAX_ITER, DEFAULT_TOL, _emms_of_classes  # noqa: E402
from modelrank.metrics.gbc import gbc  # noqa: E402
from modelrank.metrics.hscore import hscore  # noqa: E402
from modelrank.metrics.leep import leep, nce, nce_from_source_labels  # noqa: E402
from modelrank.metrics.lfc import lfc  # noqa: E402
from modelrank.metrics.logme import logme  # noqa: E402
from modelrank.metrics.ncti import ncti_terms  # noqa: E402
from modelrank.metrics.otce import otce  # noqa: E402
from modelrank.metrics.pactran import pactran_dirichlet, pactran_gamma, pactran_gauss  # noqa: E402
from modelrank.metrics.parc import parc  # noqa: E402
from modelrank.metrics.ped import ped  # noqa: E402
from modelrank.metrics.probes import knn  # noqa: E402
from modelrank.metrics.sfda import sfda  # noqa: E402
from modelrank.metrics.transrate import transrate  # noqa: E402

#: F-label embeddings per class for the EMMS pair: (C, D2, K), K = 3 encoders as in the EMMS code.
EMMS_LABEL_DIM, EMMS_ENCODERS = 384, 3
#: Model Spider's LFC holds two (N, N) kernels (int64 labels, float32 features): ~3 GB at N = 10k, 16 GB at its
#: own 45k cap, so the benchmark runs it only up to this N.
LFC_MAX_N = 20_000


class SkipReference(Exception):
    """The public structure cannot run at this size (the message says why)."""


def arrays_source() -> str:
    """Where ``speed_arrays`` takes its arrays from, for the report's header: runs on other arrays are not
    comparable."""
    if (ANCHOR_INPUTS / "make_inputs.py").is_file():
        return f"speed_arrays of {ANCHOR_INPUTS / 'make_inputs.py'}"
    return f"built-in synthetic (no {ANCHOR_INPUTS / 'make_inputs.py'}; MODELRANK_ANCHORS names the anchors folder)"


def speed_arrays(n: int, d: int, c: int) -> dict[str, np.ndarray]:
    if (ANCHOR_INPUTS / "make_inputs.py").is_file():
        sys.path.insert(0, str(ANCHOR_INPUTS))
        from make_inputs import speed_arrays as anchors_speed_arrays

        return anchors_speed_arrays(n=n, d=d, c=c)
    rng = np.random.default_rng(7)
    y = rng.permutation(np.repeat(np.arange(c), -(-n // c))[:n])
    x = np.maximum(rng.standard_normal((n, d), dtype=np.float32) + 0.12 * rng.standard_normal((c, d), dtype=np.float32)[y]
                   + 0.5, 0)  # fmt: skip
    logits = (x - x.mean(axis=0)) @ rng.standard_normal((d, 1000), dtype=np.float32)
    logits = logits.astype(np.float64) * (3.0 / logits.std(axis=1).mean())
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"features": x, "labels": y.astype(np.int64), "source_probs": probs / probs.sum(axis=1, keepdims=True)}


# ---------------------------------------------------------------------------------- public structures
def hscore_model_spider(x, y):
    """mptms/H_Score.py (and tllib's h_score): np.cov of the features and of the per-sample class means, pinv."""
    f = x.astype(np.float64)
    cov_f = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def leep_tllib(p, y):
    """tllib ranking/leep.py: per-class joint rows, the full (N, C) empirical prediction, a per-sample gather."""
    n = p.shape[0]
    normalised = p / float(n)
    joint = np.zeros((int(y.max()) + 1, p.shape[1]))
    for c in range(joint.shape[0]):
        joint[c] = normalised[y == c].sum(axis=0)
    given_source = (joint / joint.sum(axis=0, keepdims=True)).T
    prediction = p @ given_source
    return float(np.mean(np.log(np.array([row[label] for row, label in zip(prediction, y)]))))


def nce_tllib(source_labels, y):
    """tllib ranking/nce.py on precomputed source labels (the argmax is the caller's): a per-sample loop."""
    n = len(source_labels)
    joint = np.zeros((int(y.max()) + 1, int(source_labels.max()) + 1))
    for s, t in zip(source_labels, y):
        joint[int(t), int(s)] += 1.0 / n
    p_z = joint.sum(axis=0, keepdims=True)
    mask = p_z.reshape(-1) != 0
    given = (joint / np.where(p_z == 0, 1, p_z)).T[mask] + 1e-20
    entropy = np.sum(-given * np.log(given), axis=1, keepdims=True)
    return float(-np.sum(entropy * p_z.reshape((-1, 1))[mask]))


def pactran_gauss_pactran_metrics(x, y, lda_factor=1.0):
    """pactran_metrics calculate_pac_gauss: separate numpy loss and gradient functions (each recomputes the
    logits), N(0, 0.03^2) start, L-BFGS-B with maxiter 100, tol 1e-6; the diagonal Hessian; s2 = 100 / D."""
    f = x.astype(np.float64)
    f = f - f.mean(axis=0, keepdims=True)
    n, d = f.shape
    c = int(y.max()) + 1
    onehot = np.eye(c)[y]
    lam = lda_factor * n

    def logits_of(theta):
        theta = theta.reshape(d + 1, c)
        return f @ theta[:d] + theta[d:], theta[:d]

    def loss(theta):
        logits, w = logits_of(theta)
        log_q = logits - logsumexp(logits, axis=-1, keepdims=True)
        return np.sum(onehot * (np.log(onehot + 1e-10) - log_q)) / n + 0.5 * np.sum(w**2) / lam

    def grad(theta):
        logits, w = logits_of(theta)
        q = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        residual = (q - onehot) / n
        return np.concatenate([f.T @ residual + w / lam, residual.sum(axis=0, keepdims=True)]).ravel()

    np.random.seed(0)
    theta0 = np.ravel(np.concatenate([np.random.normal(size=(d, c)) * 0.03, np.zeros((1, c))]))
    theta = scipy.optimize.minimize(loss, theta0, method="L-BFGS-B", jac=grad, options={"maxiter": 100}, tol=1e-6).x
    value = loss(theta)
    logits, _ = logits_of(theta)
    q = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    h = np.sum((f**2).T @ (q * (1 - q))) + d * c / lam + np.sum(q * (1 - q))
    inv_s2 = h * lam / (d * c) + 1e-10
    return float(-(value + 0.5 * (d * c / lam) * (100.0 / d) * np.log(inv_s2)))


def parc_official(x, y, max_samples=500, seed=0):
    """dbolya/parc: sklearn randomized PCA to 32 axes (random_state 1919), standardise, 1 - corrcoef RDMs,
    Spearman of their upper triangles; on the same 500-sample subset modelrank draws."""
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA

    keep = np.sort(np.random.default_rng(seed).choice(len(y), size=max_samples, replace=False))
    f, labels = x[keep], y[keep]  # as given: sklearn keeps float32 features in float32
    f = PCA(n_components=32, svd_solver="randomized", iterated_power=1, random_state=1919).fit_transform(f)
    f = (f - f.mean(axis=0)) / f.std(axis=0)
    onehot = np.eye(int(labels.max()) + 1)[labels]
    upper = np.triu_indices(len(labels), k=1)
    return float(100 * spearmanr((1 - np.corrcoef(f))[upper], (1 - np.corrcoef(onehot))[upper]).statistic)


def ncti_official(x, y):
    """BUserName/NCTI NCTI_Score's terms: sklearn PCA(64) (its auto solver), eigen-solver LDA with the shrinkage
    exp(-sum of the top-32 explained variances)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    pca = PCA(n_components=64)
    f = pca.fit_transform(x)  # as given: sklearn keeps float32 features in float32
    shrinkage = max(float(np.exp(-pca.explained_variance_[:32].sum())), 1e-10)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(f, y)
    low = lda.transform(f)
    seli = np.linalg.norm(low - low.mean(axis=0), ord="nuc")
    proba = lda.predict_proba(f)
    ncc = np.mean(proba[np.arange(len(y)), y])
    vc = np.log(sum(np.linalg.norm(proba[y == c], ord="nuc") for c in np.unique(y)))
    return float(seli), float(ncc), float(vc)


def _sfda_fit_official(x, y, shrinkage):
    """One ``SFDA().fit(X, y).predict_proba(X)`` of TencentARC/SFDA metrics.py: np.add.at class means, S_w as the
    prior-weighted sum of per-class np.cov, lambda from 3 power iterations (utils.iterative_A), np.cov of all
    rows as S_t, scipy eigh(S_b, S_w) with every eigenvector, coef = M V V^T, softmax of X coef^T + intercept."""
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    priors = counts / len(y)
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, codes, x)
    means /= counts[:, None]
    sw = np.zeros((x.shape[1], x.shape[1]))
    for c in range(len(classes)):
        sw += priors[c] * np.atleast_2d(np.cov(x[codes == c].T, bias=1))
    if shrinkage is None:
        v = sw.sum(axis=1)
        for _ in range(3):
            w = sw @ v
            w /= np.linalg.norm(w)
            v = sw @ w
            v /= np.linalg.norm(v)
        shrinkage = max(float(np.exp(-5 * (v @ sw @ w))), 1e-10)
    dim = sw.shape[0]
    total = np.cov(x.T, bias=1)
    st = (1.0 - shrinkage) * total
    st.flat[:: dim + 1] += shrinkage * np.trace(total) / dim
    sw_shrunk = (1.0 - shrinkage) * sw
    sw_shrunk.flat[:: dim + 1] += shrinkage * np.trace(sw) / dim
    evals, evecs = scipy.linalg.eigh(st - sw_shrunk, sw_shrunk)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = (means @ evecs) @ evecs.T
    scores = x @ coef.T + (-0.5 * np.diag(means @ coef.T) + np.log(priors))
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True), shrinkage


def sfda_official(x, y):
    """TencentARC/SFDA SFDA_Score (PED's and EMMS's copies are the same): fit, soften, ConfMix class by class
    (in place, so on a copy here), refit with the first lambda, mean p(y_i|x_i)."""
    x = x.copy()
    proba, shrinkage = _sfda_fit_official(x, y, None)
    proba = np.exp(proba) / np.exp(proba).sum(axis=1, keepdims=True)
    means = np.zeros((int(y.max()) + 1, x.shape[1]))
    np.add.at(means, y, x)
    means /= np.bincount(y)[:, None]
    others = np.array([(means.sum(axis=0) - means[c]) / (len(means) - 1) for c in range(len(means))])
    for c in range(len(means)):
        rows = np.where(y == c)[0]
        keep = proba[rows, c][:, None]
        x[rows] = keep * x[rows] + (1 - keep) * others[c]
    proba, _ = _sfda_fit_official(x, y, shrinkage)
    return float(proba[np.arange(len(y)), y].sum() / len(y))


def logme_fixed_point_official(x, y):
    """LogME_Score of the SFDA/PED metrics.py (thuml LogME ``_fit_fixed_point``): truncated_svd (np.linalg.svd of
    F^T F, U = F V / s), then per class the scalar fixed point on U^T y (at most 11 rounds, 1e-3 tolerance)."""
    f = x.astype(np.float64)
    n, d = f.shape
    _, s, vh = np.linalg.svd(f.T @ f)
    s = np.sqrt(s)
    u_times_sigma = f @ vh.T
    rank = int((s > 1e-10).sum())
    s, vh = s[:rank].reshape(-1, 1), vh[:rank]
    u = u_times_sigma[:, :rank] / s.reshape(1, -1)
    sigma = s**2
    evidences = []
    for c in range(int(y.max()) + 1):
        target = (y == c).astype(np.float64).reshape(-1, 1)
        proj = u.T @ target
        proj2 = proj**2
        rest = float((target**2).sum() - proj2.sum())
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * proj2 / ((t + sigma) ** 2)).sum())
            res2 = float((proj2 / ((1 + sigma / t) ** 2)).sum()) + rest
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def ped_official(x, y, base, steps=6, time_step=0.1, exit_ratio=0.5, nsigma=0.6, constant=1.0, eps=1e-3):
    """lixiaotong97/PED PED_Score with the evaluation script's settings, standardised by the target features' own
    statistics (modelrank's default; the paper passes ImageNet features as ``general_X``): each One_Step_PED
    re-standardises all rows, takes np.add.at class means and per-class np.var, builds the (C, C, D) pair
    displacements, moves every row and maps back; then the base metric scores the moved features."""
    general_mean, general_std = np.mean(x, axis=0), np.maximum(np.std(x, axis=0), eps)
    n_classes = int(y.max()) + 1
    pair_i, pair_j = np.meshgrid(np.arange(n_classes), np.arange(n_classes))
    upper = np.triu(pair_i != pair_j, k=1)
    pair_i, pair_j = pair_i[upper], pair_j[upper]
    first_change = None
    for _ in range(steps):
        z = (x - general_mean) / general_std
        means = np.zeros((n_classes, z.shape[1]))
        np.add.at(means, y, z)
        means /= np.bincount(y)[:, None]
        variances = np.zeros((n_classes, z.shape[1]))
        for c in range(n_classes):
            variances[c] = np.var(z[y == c], axis=0)
        radius = np.sqrt(variances.sum(axis=1))
        pushes = np.zeros((n_classes, n_classes, z.shape[1]))
        np.zeros((n_classes, n_classes, z.shape[1]))  # the reference also allocates an unused second (C, C, D) array
        delta = means[pair_i] - means[pair_j]
        distance = np.sqrt((delta**2).sum(axis=1))
        overlap = np.maximum(abs(nsigma) * radius[pair_i] + abs(nsigma) * radius[pair_j] - distance, 0).reshape(-1, 1)
        pushes[upper] = -(delta / distance.reshape(-1, 1)) * np.minimum(0.5 * time_step**2 * constant * overlap,
                                                                          overlap)
        pushes = pushes - np.transpose(pushes, (1, 0, 2))
        total = pushes.sum(axis=1)
        moved = (z + total[y]) * general_std + general_mean
        change = float(np.abs(total).sum())
        first_change = change if first_change is None else first_change
        if change / first_change > exit_ratio:
            x = moved
        else:
            break
    return base(x, y)


def emms_official(x, table, y):
    """OpenGVLab/Multitask-Model-Selector EMMS on the per-sample F-labels Y = table[y] (N, D2, K): standardise
    every Y_k and X, one round of w = lstsq(X, Y l) and l = sparsemax(lstsq(Y, X w)), the residual."""
    targets = table[y]
    n, d2, k = targets.shape
    for i in range(k):
        targets[:, :, i] = (targets[:, :, i] - targets[:, :, i].mean(axis=0)) / (targets[:, :, i].std(axis=0) + 1e-8)
    f = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    weights = np.full(k, 1.0 / k)
    w = np.linalg.lstsq(f, targets @ weights, rcond=None)[0]
    fitted = f @ w
    weights = np.linalg.lstsq(targets.reshape(n * d2, k), fitted.reshape(n * d2), rcond=None)[0].reshape(1, k)
    ordered = np.sort(weights, axis=1)[:, ::-1]  # sparsemax of the row
    cumulative = np.cumsum(ordered, axis=1)
    support = 1 + np.arange(1, k + 1) * ordered > cumulative
    size = k - np.argmax(support[:, ::-1], axis=1)
    threshold = (cumulative[np.arange(1), size - 1] - 1) / size
    weights = np.maximum(0, weights - threshold.reshape(-1, 1)).reshape(k)
    return float(-np.sum((fitted - targets @ weights) ** 2) / n * d2)


def knn_sklearn(x, y, k=5):
    """Leave-one-out kNN through scikit-learn: NearestNeighbors (brute force, cosine) for k + 1 neighbours, the
    sample itself dropped, the majority label by scipy.stats.mode."""
    from scipy.stats import mode
    from sklearn.neighbors import NearestNeighbors

    _, neighbours = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    return float(np.mean(mode(y[neighbours[:, 1:]], axis=1).mode.ravel() == y))


def gbc_stable_transfer(x, y):
    """stable_transfer get_gbc_score (diagonal): per-class gather, mean and variance (floored at 1e-4), then a
    loop over the C (C - 1) ordered class pairs of D-vector operations; float32 as TensorFlow keeps it."""
    stats = {}
    for c in np.unique(y):
        rows = x[y == c]
        stats[c] = (rows.mean(axis=0), np.maximum(rows.var(axis=0), np.float32(1e-4)))
    total = np.float32(0)
    for c1 in stats:
        row = []
        for c2 in stats:
            if c1 != c2:
                (mu1, var1), (mu2, var2) = stats[c1], stats[c2]
                avg = (var1 + var2) / 2
                distance = np.sum((mu1 - mu2) ** 2 / avg) / 8 + 0.5 * (
                    np.sum(np.log(avg)) - 0.5 * np.sum(np.log(var1)) - 0.5 * np.sum(np.log(var2)))
                row.append(np.exp(-distance))
        total += np.sum(row)
    return float(-total)


def lfc_model_spider(x, y):
    """Model Spider mptms/LFC.py in torch: the (N, N) int64 label kernel from one-hot products, -1 off-class, the
    float32 (N, N) feature Gram, both centred by their means, one Frobenius inner product."""
    import torch
    import torch.nn.functional as F

    if len(y) > LFC_MAX_N:
        raise SkipReference(f"two {len(y)} x {len(y)} kernels do not fit in memory")
    onehot = F.one_hot(torch.from_numpy(y))
    labels = onehot @ onehot.T
    labels[labels == 0] = -1
    labels = labels.float()
    feats = torch.from_numpy(x)
    gram = feats @ feats.T
    labels = labels - torch.mean(labels).item()
    gram = gram - torch.mean(gram).item()
    return torch.sum(gram * labels).item() / (torch.sqrt(torch.sum(gram * gram)).item()
                                              * torch.sqrt(torch.sum(labels * labels)).item())


def _pactran_joint_counts(onehot, qz, rows_per_chunk=200):
    """sum_B of einsum("BY,BZ->BYZ"): the public code materialises all N (C, K) outer products at once (8 GB at
    N = 10k, C = 100, K = 1000); the same products and sums, a chunk of rows at a time."""
    return sum(np.einsum("BY,BZ->BYZ", onehot[rows], qz[rows]).sum(axis=0)
               for rows in (slice(i, i + rows_per_chunk) for i in range(0, len(qz), rows_per_chunk)))


def _pactran_mean_field(p, y, alpha, expected_log_lik):
    """The 10 mean-field rounds both pactran_metrics estimators run on the source softmax p: Dirichlet/Gamma
    counts aw from the (N, C, K) outer products, then q(z) from log p + the expected log-likelihood of aw."""
    onehot = np.eye(int(y.max()) + 1)[y]
    a0 = alpha * onehot.sum(axis=0)[:, None] / onehot.sum() + 1e-10
    qz, log_s = p, np.log(p + 1e-10)
    for _ in range(10):
        aw = a0 + _pactran_joint_counts(onehot, qz)
        logits = log_s + expected_log_lik(onehot, aw)
        log_qz = logits - logsumexp(logits, axis=-1, keepdims=True)
        qz = np.exp(log_qz)
    return onehot, a0, aw, qz, log_qz, log_s


def pactran_dir_official(p, y, alpha=1.0):
    """google-research pactran_metrics calculate_pac_dir on the source softmax."""
    onehot, a0, aw, qz, log_qz, log_s = _pactran_mean_field(
        p, y, alpha, lambda onehot, aw: onehot @ digamma(aw) - digamma(aw.sum(axis=0)).reshape(1, -1))
    log_c0 = loggamma(a0.sum()) - np.sum(loggamma(a0))
    log_c = loggamma(aw.sum(axis=0)) - np.sum(loggamma(aw), axis=0)
    return float(-np.sum(log_c0 - log_c - np.sum(qz * (log_qz - log_s), axis=0)) / onehot.size)


def pactran_gamma_official(p, y, alpha=1.0):
    """google-research pactran_metrics calculate_pac_gamma on the source softmax (beta = 1; its per-round lw
    depends on the last aw only)."""
    onehot, a0, aw, qz, log_qz, log_s = _pactran_mean_field(p, y, alpha, lambda onehot, aw: onehot @ digamma(aw))
    lw = p @ aw.sum(axis=0)[:, None]
    bound = np.sum(loggamma(a0) - loggamma(aw)) + np.sum(np.sum(qz * (log_qz - log_s), axis=-1)
                                                          + np.log(lw[:, 0]) - 1.0)
    return float(bound / onehot.size + 1.0)


def otce_model_spider(source_x, source_y, target_x, target_y, max_samples=2000, seed=0):
    """Model Spider mptms/OTCE.py on the subsets modelrank draws: torch squared distances (geomloss's formula),
    ot.emd capped at 1e5 iterations, the class-pair joint by repeat/tile fancy indexing, W + CE."""
    import ot
    import torch

    keep_s, keep_t = (seeded_subsample(len(labels), max_samples, draw) for labels, draw in ((source_y, seed),
                                                                                           (target_y, seed + 1)))
    keep_s = slice(None) if keep_s is None else keep_s
    keep_t = slice(None) if keep_t is None else keep_t
    xs, ys = torch.from_numpy(source_x[keep_s]), source_y[keep_s]
    xt, yt = torch.from_numpy(target_x[keep_t]), target_y[keep_t]
    cost = ((xs**2).sum(-1)[:, None] + (xt**2).sum(-1)[None, :] - 2 * xs @ xt.T).numpy()
    coupling = ot.emd(ot.unif(len(ys)), ot.unif(len(yt)), cost, numItermax=100_000)
    wasserstein = np.sum(coupling * cost)
    joint = np.zeros((ys.max() + 1, yt.max() + 1))
    for c1 in set(ys.tolist()):
        rows = np.where(ys == c1)[0]
        for c2 in set(yt.tolist()):
            cols = np.where(yt == c2)[0]
            joint[c1, c2] = np.sum(coupling[rows.repeat(len(cols)), np.tile(cols, len(rows))])
    marginal = joint.sum(axis=1)
    entropy = sum(-joint[a, b] * math.log(joint[a, b] / marginal[a])
                  for a in range(joint.shape[0]) for b in range(joint.shape[1]) if joint[a, b] != 0)
    return float(wasserstein + entropy)


# name -> (modelrank(data), public(data), what the public side is, slow)
Pair = tuple[Callable[[dict], object], Callable[[dict], object], str, bool]
PAIRS: dict[str, Pair] = {
    "logme": (lambda a: logme(a["features"], a["labels"]),
              lambda a: ref_i.logme_ref(a["features"], a["labels"], decomposition="svd"),
              "thuml/tllib ICML structure: SVD of F^T F, per-class fixed point", False),
    "hscore": (lambda a: hscore(a["features"], a["labels"]), lambda a: hscore_model_spider(a["features"], a["labels"]),
               "Model Spider / tllib: np.cov + pinv", False),
    "leep": (lambda a: leep(a["source_probs"], a["labels"]), lambda a: leep_tllib(a["source_probs"], a["labels"]),
             "tllib leep.py", False),
    "nce": (lambda a: nce(a["source_probs"], a["labels"]),
            lambda a: nce_tllib(a["source_probs"].argmax(axis=1), a["labels"]),
            "tllib nce.py, with the argmax of the same softmax", False),
    "nce_labels": (lambda a: nce_from_source_labels(a["source_argmax"], a["labels"]),
                   lambda a: nce_tllib(a["source_argmax"], a["labels"]),
                   "tllib nce.py, both given the argmax precomputed", False),
    "pactran_gauss": (lambda a: pactran_gauss(a["features"], a["labels"]),
                      lambda a: pactran_gauss_pactran_metrics(a["features"], a["labels"]),
                      "pactran_metrics calculate_pac_gauss", False),
    "parc": (lambda a: parc(a["features"], a["labels"]), lambda a: parc_official(a["features"], a["labels"]),
             "dbolya/parc on the same 500-sample subset", False),
    "ncti_terms": (lambda a: ncti_terms(a["features"], a["labels"]), lambda a: ncti_official(a["features"], a["labels"]),
                   "NCTI_Score: sklearn PCA(64) + eigen LDA", False),
    "transrate": (lambda a: transrate(a["features"], a["labels"]),
                  lambda a: ref_ii.transrate_reference(a["features"], a["labels"]),
                  "EMMS/tllib Transrate as written: float32 Z^T Z, D x D slogdet per class", True),
    "transrate_f64": (lambda a: transrate(a["features"], a["labels"]),
                      lambda a: ref_ii.transrate_reference(a["features"].astype(np.float64), a["labels"]),
                      "the same on features upcast to float64 (equal precision)", True),
    "sfda": (lambda a: sfda(a["features"], a["labels"]), lambda a: sfda_official(a["features"], a["labels"]),
             "TencentARC/SFDA SFDA_Score: per-class np.cov, eigh(S_b, S_w), twice", False),
    "ped_sfda": (lambda a: ped("sfda")(a["features"], a["labels"]),
                 lambda a: ped_official(a["features"], a["labels"], sfda_official),
                 "lixiaotong97/PED PED_Score (C x C x D steps) + SFDA_Score", False),
    "ped_logme": (lambda a: ped("logme")(a["features"], a["labels"]),
                  lambda a: ped_official(a["features"], a["labels"], logme_fixed_point_official),
                  "PED_Score + LogME_Score (fixed point on truncated_svd)", False),
    "emms": (lambda a: _emms_of_classes(a["features"], a["labels"], a["label_table"], DEFAULT_MAX_ITER, DEFAULT_TOL),
             lambda a: emms_official(a["features"], a["label_table"], a["labels"]),
             f"Multitask-Model-Selector EMMS, (N, {EMMS_LABEL_DIM}, {EMMS_ENCODERS}) F-labels, 1 round "
             "(modelrank: class-table path, up to 10 rounds)", False),
    "knn": (lambda a: knn(a["features"], a["labels"]), lambda a: knn_sklearn(a["features"], a["labels"]),
            "scikit-learn brute-force cosine NearestNeighbors, leave-one-out, k = 5", False),
    "gbc": (lambda a: gbc(a["features"], a["labels"]), lambda a: gbc_stable_transfer(a["features"], a["labels"]),
            "stable_transfer get_gbc_score (diagonal): class-pair loop", False),
    "lfc": (lambda a: lfc(a["features"], a["labels"]), lambda a: lfc_model_spider(a["features"], a["labels"]),
            "Model Spider LFC.py: two N x N torch kernels", False),
    "pactran_dir": (lambda a: pactran_dirichlet(a["source_probs"], a["labels"]),
                    lambda a: pactran_dir_official(a["source_probs"], a["labels"]),
                    "pactran_metrics calculate_pac_dir: (N, C, K) outer products per round", False),
    "pactran_gamma": (lambda a: pactran_gamma(a["source_probs"], a["labels"]),
                      lambda a: pactran_gamma_official(a["source_probs"], a["labels"]),
                      "pactran_metrics calculate_pac_gamma", False),
    "otce": (lambda a: otce(*a["otce_split"]), lambda a: otce_model_spider(*a["otce_split"]),
             "Model Spider OTCE.py on the same 2000 + 2000 samples (first half of the rows as the source)", False),
}  # fmt: skip


def _ssyrk(rows: np.ndarray) -> np.ndarray:
    """rows^T rows of a C-ordered float32 (N, D) matrix by BLAS ``ssyrk``, one triangle (no copy: rows.T is the
    Fortran-ordered (D, N) matrix)."""
    return scipy.linalg.blas.ssyrk(1.0, rows.T, lower=1)


def _float64_gram(a: dict) -> np.ndarray:
    """F^T F in float64 by BLAS ``dsyrk`` over row blocks converted from float32: what LogME and H-Score need in
    float64 (float32 products cost H-Score its precision on ill-conditioned features)."""
    x = a["features"]
    gram = np.zeros((x.shape[1], x.shape[1]), order="F")
    for start in range(0, len(x), 4096):
        block = np.asarray(x[start : start + 4096], dtype=np.float64)
        gram = scipy.linalg.blas.dsyrk(1.0, block.T, beta=1.0, c=gram, lower=1, overwrite_c=1)
    return gram


def _parc_floor(a: dict) -> None:
    x = a["features"][seeded_subsample(len(a["labels"]), 500, 0)].astype(np.float64)
    x -= x.mean(axis=0)
    scipy.linalg.blas.dsyrk(1.0, np.asfortranarray(x), lower=1)  # the 500 x 500 Gram matrix of the subsample
    np.sort(np.random.default_rng(0).random(500 * 499 // 2))  # Spearman's one sort of the RDM's upper triangle


def _otce_floor(a: dict) -> None:
    from scipy.optimize import linear_sum_assignment

    source_x, _, target_x, _ = a["otce_split"]
    keep_s, keep_t = seeded_subsample(len(source_x), 2000, 0), seeded_subsample(len(target_x), 2000, 1)
    source = source_x[slice(None) if keep_s is None else keep_s].astype(np.float64)
    target = target_x[slice(None) if keep_t is None else keep_t].astype(np.float64)
    cost = source @ target.T  # the float64 product of the squared distances
    cost *= -2.0
    cost += np.einsum("ij,ij->i", source, source)[:, None] + np.einsum("ij,ij->i", target, target)[None, :]
    linear_sum_assignment(cost - cost.min(axis=0))  # the fastest exact coupling found (network simplex: 2x slower)


#: name -> (the work any exact implementation of the pair's computation must do (the public side does it too, or
#: more), what it is). ``--floors`` times it: public s / floor s bounds the ratio any implementation can reach here.
FLOORS: dict[str, tuple[Callable[[dict], object], str]] = {
    "logme": (_float64_gram, "the float64 D x D Gram matrix"),
    "hscore": (_float64_gram, "the float64 D x D Gram matrix"),
    "nce": (lambda a: a["source_probs"].argmax(axis=1), "the (N, Z) argmax, which the public side runs too"),
    "leep": (lambda a: [a["source_probs"] @ np.ones(a["source_probs"].shape[1]) for _ in range(2)],
             "two reads of the (N, Z) probabilities (P(y | z) needs every row before any EEP_i), as BLAS gemv"),
    "ncti_terms": (lambda a: _ssyrk(a["features"]),
                   "the float32 D x D scatter that exact PCA needs (sklearn's randomized PCA does not)"),
    "parc": (_parc_floor, "the subsample's float64 Gram matrix and one sort of its RDM (no eigensolver)"),
    "otce": (_otce_floor, "the float64 distance product and an exact assignment (scipy) on the same samples"),
    "knn": (lambda a: _ssyrk(np.ascontiguousarray(a["features"].T)),
            "the float32 N x N similarity product (one triangle), which the public side runs in full"),
}  # fmt: skip


def benchmark_arrays(n: int, d: int, c: int) -> dict:
    """``speed_arrays`` plus what the pairs derive from them: the source argmax, the EMMS class table and OTCE's
    source/target halves."""
    arrays = speed_arrays(n, d, c)
    arrays["source_argmax"] = arrays["source_probs"].argmax(axis=1)
    arrays["label_table"] = np.random.default_rng(11).standard_normal((c, EMMS_LABEL_DIM, EMMS_ENCODERS))
    x, y = arrays["features"], arrays["labels"]
    arrays["otce_split"] = (x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :])
    return arrays


def fastest(fn: Callable[[], object], repeat: int,
            clock: Callable[[], float] = time.perf_counter) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = clock()
        value = fn()
        best = min(best, clock() - start)
    return best, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=100)
    parser.add_argument("--metrics", default=",".join(PAIRS), help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--repeat", type=int, default=2, help="keep the fastest of this many calls")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock seconds, or the process's CPU seconds (steadier on a shared machine)")
    parser.add_argument("--with-slow", action="store_true", help="also the references that take minutes")
    parser.add_argument("--floors", action="store_true",
                        help="also time each pair's unavoidable work (FLOORS) and print public s / floor s")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = set(names) - set(PAIRS)
    if unknown:
        parser.error(f"unknown metrics {sorted(unknown)}; choose from {', '.join(PAIRS)}")
    threadpool_limits(args.threads)
    arrays = benchmark_arrays(args.n, args.d, args.c)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"N={args.n} D={args.d} C={args.c}, {args.threads} BLAS thread(s), fastest of {args.repeat} "
          f"({args.clock} seconds), arrays: {arrays_source()}\n")
    floor_header = " floor s | public / floor |" if args.floors else ""
    print(f"| metric | modelrank s | public s | public / modelrank |{floor_header} public structure |")
    print("|---" * (5 + 2 * args.floors) + "|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            ours, public, what, slow = PAIRS[name]
            seconds, _ = fastest(lambda: ours(arrays), args.repeat, clock)
            if slow and not args.with_slow:
                print(f"| {name} | {seconds:.3f} | - | - | {what} (--with-slow) |", flush=True)
                continue
            try:
                public_seconds, _ = fastest(lambda: public(arrays), 1 if slow else args.repeat, clock)
            except SkipReference as reason:
                print(f"| {name} | {seconds:.3f} | - | - | {what} (not run: {reason}) |", flush=True)
                continue
            floor = ""
            if args.floors:
                floor = " - | - |"
                if name in FLOORS:
                    floor_seconds, _ = fastest(lambda: FLOORS[name][0](arrays), args.repeat, clock)
                    floor = f" {floor_seconds:.3f} | {public_seconds / floor_seconds:.2f}x |"
                    what = f"{what}; floor: {FLOORS[name][1]}"
            ratio = public_seconds / seconds
            print(f"| {name} | {seconds:.3f} | {public_seconds:.3f} | {ratio:.2f}x |{floor} {what} |", flush=True)


if __name__ == "__main__":
    main()
