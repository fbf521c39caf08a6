"""Slow, straightforward reference implementations of the metrics, written from the papers' equations.

They loop over classes (or class pairs) and build the matrices the papers write down (pinv of covariances,
N x N kernels, per-class Bayesian regressions), sharing no code with ``modelrank.metrics``. Used by
``tests/test_metrics_i.py`` (fast == slow) and ``benchmarks/bench_metrics.py`` (speed-up of the fast code).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import scipy.optimize
import torch
from scipy.special import digamma, gammaln, logsumexp
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture


def encode(labels):
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes, len(classes)


def class_mean_per_sample(features, codes, n_classes):
    g = np.zeros_like(features)
    for c in range(n_classes):
        g[codes == c] = features[codes == c].mean(axis=0)
    return g


def hscore_ref(features, labels, rcond=1e-15):
    f = np.asarray(features, dtype=np.float64)
    codes, n_classes = encode(labels)
    cov_f = np.cov(f, rowvar=False)
    cov_g = np.cov(class_mean_per_sample(f, codes, n_classes), rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=rcond) @ cov_g))


def hscore_reg_ref(features, labels):
    f = np.asarray(features, dtype=np.float64)
    codes, n_classes = encode(labels)
    lw = LedoitWolf(assume_centered=False).fit(f)
    cov_g = np.cov(class_mean_per_sample(f, codes, n_classes), rowvar=False)
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cov_g)))


def leep_ref(probs, labels):
    codes, n_classes = encode(labels)
    n, n_source = probs.shape
    joint = np.zeros((n_classes, n_source))
    for c in range(n_classes):
        joint[c] = probs[codes == c].sum(axis=0) / n
    p_z = joint.sum(axis=0)
    cond = np.where(p_z > 0, joint / np.where(p_z > 0, p_z, 1), 0.0)
    total = 0.0
    for c in range(n_classes):
        total += np.log(probs[codes == c] @ cond[c]).sum()
    return total / n


def nce_ref(probs, labels):
    codes, n_classes = encode(labels)
    z = probs.argmax(axis=1)
    n = len(codes)
    score = 0.0
    for zz in np.unique(z):
        p_z = np.mean(z == zz)
        for c in range(n_classes):
            p_yz = np.sum((z == zz) & (codes == c)) / n
            if p_yz > 0:
                score += p_yz * math.log(p_yz / p_z)
    return score


def nleep_ref(
    features, labels, pca_variance=0.8, max_dims=None, components_per_class=5, covariance_type="diag", seed=0
):
    """sklearn PCA + GaussianMixture on all samples (no subsample), then LEEP."""
    codes, n_classes = encode(labels)
    reduced = PCA(n_components=pca_variance, svd_solver="full").fit_transform(np.asarray(features, np.float64))
    reduced = reduced[:, :max_dims]
    k = min(components_per_class * n_classes, len(codes) // 10)
    gmm = GaussianMixture(n_components=k, covariance_type=covariance_type, random_state=seed).fit(reduced)
    return leep_ref(gmm.predict_proba(reduced), codes)


def logme_ref(features, targets, max_iter=11, tol=1e-3, decomposition="eigh"):
    """Per-target loop over one decomposition of F^T F (the LogME ICML / TLlib code's structure), m and the
    residual computed explicitly in feature space. ``targets``: class labels (1-D ints) or (N, K) floats.
    ``decomposition``: "eigh", or "svd" as the public ICML / TLlib code does (same values, slower)."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    targets = np.asarray(targets)
    if targets.ndim == 1 and targets.dtype.kind in "iu":
        codes, n_classes = encode(targets)
        y_all = np.eye(n_classes)[codes]
    else:
        y_all = targets.reshape(n, -1).astype(np.float64)
    if decomposition == "svd":
        v, lam, _ = np.linalg.svd(f.T @ f)
    else:
        lam, v = np.linalg.eigh(f.T @ f)
    lam = np.clip(lam, 0, None)
    evidences = []
    for k in range(y_all.shape[1]):
        y = y_all[:, k]
        fty = v.T @ (f.T @ y)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = float(np.sum(beta * lam / (alpha + beta * lam)))
            m = v @ (beta * fty / (alpha + beta * lam))
            alpha = gamma / float(m @ m)
            beta = (n - gamma) / float(np.sum((y - f @ m) ** 2))
            if abs(alpha / beta - t) / t <= tol:
                break
        m = v @ (beta * fty / (alpha + beta * lam))
        res2 = float(np.sum((y - f @ m) ** 2))
        evidence = (
            d / 2 * math.log(alpha)
            + n / 2 * math.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * lam))
            - beta / 2 * res2
            - alpha / 2 * float(m @ m)
            - n / 2 * math.log(2 * math.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _pactran_posterior(probs, labels, alpha, n_iter, expected_log_lik):
    codes, n_classes = encode(labels)
    log_s = np.log(probs)
    prior = np.array([alpha * np.mean(codes == c) for c in range(n_classes)])
    q = probs.copy()
    for _ in range(n_iter):
        a_w = np.stack([prior[c] + q[codes == c].sum(axis=0) for c in range(n_classes)])
        e_log = expected_log_lik(a_w)
        logits = log_s + np.stack([e_log[c] for c in codes])
        log_q = logits - logsumexp(logits, axis=1, keepdims=True)
        q = np.exp(log_q)
    return codes, n_classes, log_s, prior, a_w, q, log_q


def pactran_dir_ref(probs, labels, alpha=1.0, n_iter=10):
    codes, n_classes, log_s, prior, a_w, q, log_q = _pactran_posterior(
        probs, labels, alpha, n_iter, lambda a: digamma(a) - digamma(a.sum(axis=0))
    )
    log_c0 = math.lgamma(prior.sum()) - sum(math.lgamma(a) for a in prior)
    elbo = 0.0
    for z in range(probs.shape[1]):
        log_c = math.lgamma(a_w[:, z].sum()) - sum(math.lgamma(a) for a in a_w[:, z])
        elbo += log_c0 - log_c
    elbo -= np.sum(q * (log_q - log_s))
    return elbo / (len(codes) * n_classes)


def pactran_gamma_ref(probs, labels, alpha=1.0, n_iter=10):
    codes, n_classes, log_s, prior, a_w, q, log_q = _pactran_posterior(
        probs, labels, alpha, n_iter, lambda a: digamma(a)
    )
    bound = np.sum(gammaln(prior)[:, None] - gammaln(a_w))
    lw = probs @ a_w.sum(axis=0)
    bound += np.sum(q * (log_q - log_s)) + np.sum(np.log(lw) - 1.0)
    return -(bound / (len(codes) * n_classes) + 1.0)


def pactran_gauss_ref(features, labels, lda_factor=1.0, s2_factor=100.0, tol=1e-12, max_iter=1000):
    """Gradient by torch autograd; curvature by a loop over classes."""
    codes, n_classes = encode(labels)
    x = np.asarray(features, np.float64)
    x = x - x.mean(axis=0)
    n, d = x.shape
    lam = lda_factor * n
    xt, yt = torch.from_numpy(x), torch.from_numpy(codes)

    def loss_t(theta):
        w, b = theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]
        ce = torch.nn.functional.cross_entropy(xt @ w + b, yt, reduction="mean")
        return ce + 0.5 * (w**2).sum() / lam

    def fun(theta_np):
        theta = torch.from_numpy(theta_np).requires_grad_(True)
        loss = loss_t(theta)
        loss.backward()
        return loss.item(), theta.grad.numpy().copy()

    res = scipy.optimize.minimize(
        fun, np.zeros((d + 1) * n_classes), jac=True, method="L-BFGS-B", tol=tol, options={"maxiter": max_iter}
    )
    theta = res.x
    w, b = theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]
    logits = x @ w + b
    p = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    total_h = 0.0
    for c in range(n_classes):
        g2 = p[:, c] * (1 - p[:, c])
        total_h += np.sum((x**2).T @ g2) + d / lam + np.sum(g2)
    inv_s2 = lam * total_h / (d * n_classes)
    bound = res.fun + 0.5 * (d * n_classes / lam) * (s2_factor / d) * math.log(inv_s2)
    return -bound


def otce_ref(source_x, source_y, target_x, target_y):
    """Returns (W, CE) with all samples; CE by a loop over class pairs."""
    cost = ot.dist(source_x, target_x)
    coupling = ot.emd(ot.unif(len(source_x)), ot.unif(len(target_x)), cost, numItermax=10_000_000)
    w = float(np.sum(coupling * cost))
    ce = 0.0
    for ys in np.unique(source_y):
        rows = source_y == ys
        p_ys = coupling[rows].sum()
        for yt in np.unique(target_y):
            p_joint = coupling[np.ix_(rows, target_y == yt)].sum()
            if p_joint > 0:
                ce -= p_joint * math.log(p_joint / p_ys)
    return w, ce


def gbc_ref(features, labels, gaussian_type="diagonal", floor=1e-4):
    """Pairwise loop with explicit diagonal covariance matrices, pinv and slogdet."""
    f = np.asarray(features, np.float64)
    codes, n_classes = encode(labels)
    d = f.shape[1]
    means, covs = [], []
    for c in range(n_classes):
        fc = f[codes == c]
        var = np.maximum(fc.var(axis=0), floor)
        if gaussian_type == "spherical":
            var = np.full(d, var.mean())
        means.append(fc.mean(axis=0))
        covs.append(np.diag(var))
    score = 0.0
    for i in range(n_classes):
        for j in range(n_classes):
            if i == j:
                continue
            cov = (covs[i] + covs[j]) / 2
            delta = means[i] - means[j]
            logdet = np.linalg.slogdet(cov)[1]
            logdet_i, logdet_j = np.linalg.slogdet(covs[i])[1], np.linalg.slogdet(covs[j])[1]
            db = delta @ np.linalg.pinv(cov) @ delta / 8 + 0.5 * (logdet - 0.5 * (logdet_i + logdet_j))
            score -= math.exp(-db)
    return score


def lfc_ref(features, labels):
    """Explicit N x N kernels (small N only)."""
    f = np.asarray(features, np.float64)
    codes, _ = encode(labels)
    k = f @ f.T
    y = np.where(codes[:, None] == codes[None, :], 1.0, -1.0)
    k = k - k.mean()
    y = y - y.mean()
    return float(np.sum(k * y) / (np.linalg.norm(k) * np.linalg.norm(y)))
