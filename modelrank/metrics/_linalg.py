"""Small linear-algebra building blocks shared by several metrics (class statistics, PCA, spectra).

Everything is float64 and vectorised; nothing here builds an N x N matrix when N > D.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp

#: Rows per block for (rows, Z) temporaries over a wide softmax (Z = 1000: ~32 MB per float64 block).
ROW_BLOCK = 4096


def row_blocks(n: int) -> Iterator[slice]:
    """Consecutive slices of at most ``ROW_BLOCK`` rows covering 0..n-1."""
    for start in range(0, n, ROW_BLOCK):
        yield slice(start, min(start + ROW_BLOCK, n))


def one_hot_sparse(codes: np.ndarray, n_classes: int) -> sp.csr_matrix:
    """(C, N) sparse indicator: row c marks the samples of class c, so ``M @ X`` gives class sums."""
    n = codes.shape[0]
    return sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_classes, n))


def class_sums(x: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) per-class sums of the rows of ``x``."""
    return np.asarray(one_hot_sparse(codes, n_classes) @ x)


def class_means(x: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) class means and (C,) class counts."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return class_sums(x, codes, n_classes) / counts[:, None], counts


def rank_cutoff(eigenvalues: np.ndarray, size: int) -> float:
    """Eigenvalues at or below this are numerical zeros (numpy's ``matrix_rank`` rule: max * size * eps)."""
    return float(max(eigenvalues.max(initial=0.0), 0.0) * size * np.finfo(np.float64).eps)


def principal_class_offsets(
    x: np.ndarray, codes: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectrum of the centred scatter Xc^T Xc and the class-mean offsets in its eigenbasis.

    Returns ``(evals, offsets, counts)``: eigenvalues l_k >= 0 (r = min(N, D) of them; numerical zeros are
    NOT dropped, the caller picks its cutoff), offsets[c, k] = v_k^T (mu_c - mu) (C, r), class counts (C,).
    Computed on the smaller side: N >= D eigendecomposes Xc^T Xc = V L V^T; N < D eigendecomposes
    Xc Xc^T = U L U^T and uses mu_c - mu = Xc^T 1_c / n_c, so v_k^T (mu_c - mu) = sqrt(l_k) u_k^T 1_c / n_c.
    """
    xc = x - x.mean(axis=0)
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    if x.shape[0] >= x.shape[1]:
        evals, v = np.linalg.eigh(xc.T @ xc)
        offsets = (class_sums(xc, codes, n_classes) / counts[:, None]) @ v
    else:
        evals, u = np.linalg.eigh(xc @ xc.T)
        evals = np.maximum(evals, 0.0)
        offsets = class_sums(u, codes, n_classes) * np.sqrt(evals) / counts[:, None]
    return np.maximum(evals, 0.0), offsets, counts


def pca_project(x: np.ndarray, variance: float | None = None, n_dims: int | None = None) -> np.ndarray:
    """Project centred ``x`` on its leading principal axes.

    ``variance`` in (0, 1]: keep the fewest axes that explain at least that fraction of the variance
    (sklearn's ``PCA(n_components=0.8)`` rule); ``n_dims``: keep at most that many axes. Both may be given
    (the smaller count wins). Axes with zero variance are never kept. Exact (eigendecomposition of the
    D x D scatter matrix, or of the N x N Gram matrix when N < D).
    """
    xc = x - x.mean(axis=0)
    n, d = xc.shape
    if n < d:
        evals, u = np.linalg.eigh(xc @ xc.T)
        evals, u = evals[::-1], u[:, ::-1]
    else:
        evals, v = np.linalg.eigh(xc.T @ xc)
        evals, v = evals[::-1], v[:, ::-1]
    keep = int((evals > rank_cutoff(evals, max(n, d))).sum())
    if variance is not None:
        ratio = np.cumsum(evals[:keep]) / evals[:keep].sum()
        keep = min(keep, int(np.searchsorted(ratio, variance - 1e-12) + 1))
    if n_dims is not None:
        keep = min(keep, n_dims)
    keep = max(keep, 1)
    if n < d:
        # Xc = U S V^T, so the projection Xc V = U S.
        return u[:, :keep] * np.sqrt(np.maximum(evals[:keep], 0.0))
    return xc @ v[:, :keep]


def seeded_subsample(n: int, max_n: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of ``max_n`` of ``n`` samples drawn without replacement, or None when all fit."""
    if max_n is None or n <= max_n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))
