"""Small linear-algebra building blocks shared by several metrics (class statistics, PCA, spectra).

Everything is float64 and vectorised (except the float32 products of ``float32_centred_scatter``); nothing
here builds an N x N matrix when N > D.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterable, Iterator

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

#: Rows per block for (rows, Z) temporaries over a wide softmax (Z = 1000: ~32 MB per float64 block).
ROW_BLOCK = 4096


#: Scale-invariant metrics whose sums are of fourth order in the features (squared Gram or covariance entries)
#: rescale features whose largest magnitude lies outside [1 / UNIT_SCALE_BOUND, UNIT_SCALE_BOUND] (``unit_scaled``):
#: beyond it those sums overflow float64 or underflow to 0 (at 1e100 LFC and the shrinkage H-Score raised
#: OverflowError; at 1e-150 the shrinkage H-Score and PARC returned wrong numbers).
UNIT_SCALE_BOUND = 2.0**60
#: The eigensolvers square the matrix entries: ``pca_project`` rescales a scatter matrix whose largest entry lies
#: outside [1 / EIGEN_SCALE_BOUND, EIGEN_SCALE_BOUND] (LAPACK's ``stebz`` failed at 1e200, features at 1e100).
EIGEN_SCALE_BOUND = 2.0**200


@functools.cache
def blas_threads() -> ThreadpoolController:
    """The process's BLAS thread pools (found once: looking them up scans the loaded libraries)."""
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread. L-BFGS's bookkeeping is vector operations of length (D + 1) C,
    which threaded BLAS makes several times slower, far more on busy cores (43 ms instead of 0.5 ms per step of a
    200 x 1280, 10-class logistic regression on 2 shared cores), and which small products do not win back."""
    return blas_threads().limit(limits=1, user_api="blas")


#: Largest N D C (samples x features x outputs) of an iterative fit run on one BLAS thread by
#: ``one_blas_thread_if_small``: a step's products (a few N D C flops) take at most ~50 ms there, about what
#: threaded BLAS loses per step on busy cores (a job array's node).
SMALL_FIT_SIZE = 2**30


def one_blas_thread_if_small(size: int) -> contextlib.AbstractContextManager:
    """``one_blas_thread()`` for an iterative fit (lbfgs, EM) of N D C = ``size`` up to ``SMALL_FIT_SIZE``, where
    the steps' many small operations dominate; threaded BLAS for larger products."""
    return one_blas_thread() if size <= SMALL_FIT_SIZE else contextlib.nullcontext()


def largest_magnitude(x: np.ndarray) -> float:
    """max |x|, from x.max() and x.min() (no |x| temporary)."""
    return max(abs(float(x.max())), abs(float(x.min())))


def unit_exponent(largest: float, bound: float) -> int:
    """0 when ``largest`` (a magnitude) is 0 or lies in [1 / bound, bound], else the e with largest / 2**e in
    [0.5, 1): dividing by 2**e brings it to 1's order exactly (a power of two does not round)."""
    if largest == 0 or 1.0 / bound <= largest <= bound:
        return 0
    return int(np.frexp(largest)[1])


def unit_scaled(x: np.ndarray, bound: float = UNIT_SCALE_BOUND, tiny_to_bound: bool = False) -> np.ndarray:
    """``x`` itself when its largest magnitude lies in [1 / bound, bound] (or x is all zero), else a copy times the
    power of two that brings that magnitude to [0.5, 1), in x's dtype. Exact, so a scale-invariant metric scores
    the copy as it would score ``x`` in exact arithmetic, without overflow or underflow. ``tiny_to_bound``
    (``bound`` a power of two): tiny features are raised only to [1 / (2 bound), 1 / bound), for a metric that
    scores all features that small alike but not like unit ones."""
    return unit_scaling(x, bound, tiny_to_bound)[0]


def unit_scaling(x: np.ndarray, bound: float = UNIT_SCALE_BOUND, tiny_to_bound: bool = False) -> tuple[np.ndarray, int]:
    """(``unit_scaled(x)``, e) with x = 2**e times it: for metrics that depend on the scale only through a
    term they can rescale themselves (a variance: times 4**e)."""
    exponent = unit_exponent(largest_magnitude(x), bound)
    if tiny_to_bound and exponent < 0:
        exponent += int(np.log2(bound))
    if exponent == 0:
        return x, 0
    return np.ldexp(x, -exponent), exponent


def row_blocks(n: int) -> Iterator[slice]:
    """Consecutive slices of at most ``ROW_BLOCK`` rows covering 0..n-1."""
    for start in range(0, n, ROW_BLOCK):
        yield slice(start, min(start + ROW_BLOCK, n))


def float64_row_blocks(x: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, float64 rows of x) for consecutive row blocks, written into one reused buffer (valid until the
    next step). A float32 x is converted one block at a time, and no block allocates fresh memory: at 50k x 2048
    features fresh 64 MB temporaries per block cost as much in page faults as the arithmetic on them."""
    n, dim = x.shape
    buffer = np.empty((min(n, ROW_BLOCK), dim))
    for rows in row_blocks(n):
        block = buffer[: rows.stop - rows.start]
        block[...] = x[rows]
        yield rows, block


def one_hot_sparse(codes: np.ndarray, n_classes: int, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """(C, N) sparse indicator: row c marks the samples of class c (with ``weights`` instead of ones when
    given), so ``M @ X`` gives (weighted) class sums."""
    n = codes.shape[0]
    return sp.csr_matrix((np.ones(n) if weights is None else weights, (codes, np.arange(n))),
                         shape=(n_classes, n))


def class_sums(x: np.ndarray, codes: np.ndarray, n_classes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(C, D) per-class sums of the rows of ``x`` (each row times ``weights[i]`` when given), in float64 (a
    float32 ``x`` is converted one row block at a time rather than copied whole)."""
    if x.dtype == np.float64 or x.shape[0] <= ROW_BLOCK:
        return np.asarray(one_hot_sparse(codes, n_classes, weights) @ np.asarray(x, dtype=np.float64))
    return sum(np.asarray(one_hot_sparse(codes[rows], n_classes, None if weights is None else weights[rows])
                          @ np.asarray(x[rows], dtype=np.float64))
               for rows in row_blocks(x.shape[0]))


def class_means(x: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) class means and (C,) class counts."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return class_sums(x, codes, n_classes) / counts[:, None], counts


def class_members(codes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """For each class 0..C-1, the indices of its samples in ascending order (one stable sort of the codes)."""
    return np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes, minlength=n_classes))[:-1])


#: Elements of one piece of a class's rows (8 MB in float64), gathered once for several reductions: gathering a
#: class once for two passes matters more than a piece that fits in L2 (LEEP at 50k x 1000, 100 classes: 25% less
#: time than with 2 MB pieces).
CLASS_PIECE_ELEMENTS = 1_048_576


def class_pieces(codes: np.ndarray, n_classes: int, row_width: int) -> list[list[np.ndarray]]:
    """For each class 0..C-1, its sample indices (ascending, from one stable sort of the codes) cut into pieces
    of at most ``CLASS_PIECE_ELEMENTS`` for rows of ``row_width`` elements: row blocks gathered by class that
    several reductions read while they are in cache."""
    max_rows = max(1, CLASS_PIECE_ELEMENTS // row_width)
    return [[rows[start : start + max_rows] for start in range(0, len(rows), max_rows)]
            for rows in class_members(codes, n_classes)]


def class_blocks(x: np.ndarray, pieces: list[np.ndarray]) -> Callable[[], Iterable[np.ndarray]]:
    """A reader of one class's rows of ``x`` (its ``class_pieces``) as float64 blocks, to call once per pass: a
    class of one piece is gathered once for every pass, a larger one again at each. Only the last pass may
    modify the blocks."""
    if len(pieces) == 1:
        held = [np.asarray(x[pieces[0]], dtype=np.float64)]
        return lambda: held
    return lambda: (np.asarray(x[rows], dtype=np.float64) for rows in pieces)


#: cross(block, rows) -> block^T Y[rows] in float64: the product of a float64 row block of X with the matching rows
#: of Y.
CrossProduct = Callable[[np.ndarray, slice], np.ndarray]


def no_cross(block: np.ndarray, rows: slice) -> np.ndarray:
    """The ``CrossProduct`` of no targets, for when only the Gram matrix is wanted."""
    return np.zeros((block.shape[1], 0))


class OneHotCross:
    """The ``CrossProduct`` of one-hot targets: M^T Y[rows] = the (k, C) class sums of M's rows, in O(N k)."""

    def __init__(self, codes: np.ndarray, n_classes: int):
        self.codes = codes
        self.n_classes = n_classes

    def __call__(self, block: np.ndarray, rows: slice) -> np.ndarray:
        return class_sums(block, self.codes[rows], self.n_classes).T


def gram_and_cross(
    x: np.ndarray, cross: CrossProduct, shift: np.ndarray | None = None, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(Z^T Z, Z^T Y) in float64 for Z = (X - shift) * scale, accumulated over row blocks; only the LOWER
    triangle of the Fortran-ordered Z^T Z is filled (LAPACK's lower=1 routines read nothing else).

    One pass over X: each block is written into one reused float64 buffer (a float32 X is never copied
    whole, which for 50k x 2048 features saves 800 MB and the page faults of allocating it) and used for both
    products while it is in cache. Z^T Z is accumulated in place by BLAS ``dsyrk`` (one triangle, no per-block
    temporaries). Cost O(N D^2), memory O(D^2 + block).
    """
    n, d = x.shape
    gram = np.zeros((d, d), order="F")
    cross_sum = None
    buffer = None if _is_plain_float64(x, shift, scale) else np.empty((min(n, ROW_BLOCK), d))
    for rows in row_blocks(n):
        block = x[rows] if buffer is None else _affine_float64(x[rows], shift, scale, buffer)
        # block is C-ordered (rows, D), so block.T is a Fortran (D, rows) matrix A and A A^T = block^T block.
        gram = sla.blas.dsyrk(1.0, block.T, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)
        block_cross = cross(block, rows)
        cross_sum = block_cross if cross_sum is None else cross_sum + block_cross
    return gram, cross_sum


#: Columns per panel of ``add_float32_gram``: panels this narrow add few entries above the diagonal.
TRIANGLE_PANEL = 256


def add_float32_gram(total: np.ndarray, block: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """total += block^T block on the lower triangle of the Fortran-ordered float64 ``total``, the product taken in
    float32 (BLAS ``ssyrk``, twice ``dsyrk``'s rate) into ``scratch``, a Fortran-ordered float32 D x D buffer reused
    across blocks (returned: BLAS may hand back another array). Rounding thus accumulates over one block's rows,
    not all N. The sum goes by column panels: the upper triangle is never read, and adding it too cost half of the
    time (0.13 s of a 50k x 2048 Gram pass)."""
    scratch = sla.blas.ssyrk(1.0, block.T, beta=0.0, c=scratch, trans=0, lower=1, overwrite_c=1)
    d = total.shape[0]
    for start in range(0, d, TRIANGLE_PANEL):
        columns = slice(start, min(start + TRIANGLE_PANEL, d))
        total[start:, columns] += scratch[start:, columns]
    return scratch


def float32_centred_scatter(x: np.ndarray) -> np.ndarray:
    """The centred scatter Xm^T Xm (Xm = X - column means) of float32 features, with the O(N D^2) products in
    float32: the lower triangle of a Fortran-ordered float64 matrix, as ``gram_and_cross``, twice as fast. For the
    leading principal axes of ``pca_project`` only: its rounding, ~1e-7 of the largest entry, moves the leading
    eigenvectors little but the small eigenvalues much (LogME and H-Score, which need those, multiply in float64).

    BLAS ``ssyrk`` runs at twice the rate of ``dsyrk``; each row block's float32 Gram is added to a float64 sum,
    so rounding accumulates over one block (at most ``ROW_BLOCK`` rows), not over all N. Features with a large
    common offset (post-ReLU, unnormalised) would lose their spread to that rounding, so every block is first
    shifted by s, the first block's column means rounded to float32: with Xc = X - s and c = Xc^T 1 (in float64),
    Xm^T Xm = Xc^T Xc - c c^T / N, free of the cancellation X^T X - N mean mean^T would suffer. Features whose
    products overflow float32 get the float64 pass (``gram_and_cross``) instead.
    """
    n, d = x.shape
    shift = x[:ROW_BLOCK].mean(axis=0, dtype=np.float64).astype(np.float32)
    gram = np.zeros((d, d), order="F")
    block_gram = np.zeros((d, d), dtype=np.float32, order="F")
    shifted = np.empty((min(n, ROW_BLOCK), d), dtype=np.float32)
    column_sums = np.zeros(d)
    with np.errstate(over="ignore", invalid="ignore"):
        for rows in row_blocks(n):
            block = shifted[: rows.stop - rows.start]
            np.subtract(x[rows], shift, out=block)
            block_gram = add_float32_gram(gram, block, block_gram)
            column_sums += block.sum(axis=0, dtype=np.float64)
    if not np.isfinite(gram).all():
        return gram_and_cross(x, no_cross, x.mean(axis=0, dtype=np.float64))[0]
    # Only the lower triangle is read downstream: a BLAS rank-1 update of it alone (an np.outer temporary of the
    # whole D x D matrix costs 0.13 s at D = 2048).
    return sla.blas.dsyr(-1.0 / n, column_sums, a=gram, lower=1, overwrite_a=1)


def _is_plain_float64(x: np.ndarray, shift: np.ndarray | None, scale: np.ndarray | None) -> bool:
    """Whether row blocks of ``x`` can be used as they are (float64, C-ordered, no affine map)."""
    return x.dtype == np.float64 and x.flags.c_contiguous and shift is None and scale is None


def _affine_float64(
    x: np.ndarray, shift: np.ndarray | None, scale: np.ndarray | None, buffer: np.ndarray | None = None
) -> np.ndarray:
    """(x - shift) * scale in float64 (either may be None): a new array, or the first len(x) rows of
    ``buffer``."""
    if buffer is None:
        out = np.array(x, dtype=np.float64)
    else:
        out = buffer[: x.shape[0]]
        out[...] = x
    if shift is not None:
        out -= shift
    if scale is not None:
        out *= scale
    return out


def eigh_projections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) of a symmetric ``a`` = V L V^T and the coordinates V^T b of the columns of b.
    Only the lower triangle of ``a`` is read.

    Same values as ``numpy.linalg.eigh`` followed by ``V.T @ b`` (eigenvector signs aside), but V is never
    formed: a = Q T Q^T (Householder tridiagonalisation, LAPACK ``dsytrd``), Q^T b by applying the
    reflectors (``dormqr``), T = W L W^T by divide and conquer (``dstevd``), then W^T (Q^T b). This skips
    the O(D^3) back-transformation V = Q W: 0.85 s instead of 1.45 s at D = 2048 on 2 cores.
    """
    d = a.shape[0]
    b = np.asarray(b, dtype=np.float64)
    if d < 3:
        evals, v = np.linalg.eigh(a)
        return evals, v.T @ b
    lapack = sla.lapack
    lwork = int(lapack.dsytrd_lwork(d, lower=1)[0])
    reflectors, diagonal, off_diagonal, tau, info = lapack.dsytrd(np.asfortranarray(a), lower=1, lwork=lwork)
    _check_lapack("dsytrd", info)
    # Q = H(1) ... H(d-1); reflector i acts on rows i+1.., stored below the subdiagonal of column i, which is
    # the layout dormqr expects for the (d-1) x (d-1) block starting at row 1.
    rotated = np.array(b, order="F")
    if b.shape[1]:
        tail, _, info = lapack.dormqr(
            "L", "T", reflectors[1:, : d - 1], tau, rotated[1:], lwork=max(1, 64 * b.shape[1]), overwrite_c=1
        )
        _check_lapack("dormqr", info)
        rotated[1:] = tail
    evals, w, info = lapack.dstevd(diagonal, off_diagonal, compute_v=1)
    _check_lapack("dstevd", info)
    return evals, w.T @ rotated


def _check_lapack(routine: str, info: int) -> None:
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK {routine} failed (info={info})")


def sample_spectrum(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs (s_i^2, u_i) of the N x N matrix Z Z^T (numerical zeros dropped): the left singular vectors
    of a float64 Z, for the N <= D side where the D x D matrix would be larger."""
    sigma, u = np.linalg.eigh(z @ z.T)
    keep = sigma > rank_cutoff(sigma, max(z.shape))
    return sigma[keep], u[:, keep]


def column_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population standard deviations in float64, two passes over row blocks."""
    mean = x.mean(axis=0, dtype=np.float64)
    squares = np.zeros(x.shape[1])
    for rows in row_blocks(x.shape[0]):
        squares += ((x[rows] - mean) ** 2).sum(axis=0)
    return mean, np.sqrt(squares / x.shape[0])


def has_distinct_rows(x: np.ndarray, codes: np.ndarray | None = None) -> bool:
    """Whether any row differs from the first (with class ``codes`` 0..C-1: from the first row of its class),
    stopping at the first block that has one."""
    if codes is None:
        return any(bool((x[rows] != x[0]).any()) for rows in row_blocks(x.shape[0]))
    firsts = np.unique(codes, return_index=True)[1]
    return any(bool((x[rows] != x[firsts[codes[rows]]]).any()) for rows in row_blocks(x.shape[0]))


def column_space_coordinates(
    x: np.ndarray, cross: CrossProduct, shift: np.ndarray | None = None, scale: np.ndarray | None = None
) -> tuple[int, np.ndarray]:
    """rank(Z) and Q^T Y for an orthonormal basis Q of the column space of Z = (X - shift) * scale.

    ``cross`` as in ``gram_and_cross``. N > D: rank-revealing (pivoted) Cholesky of Z^T Z, P^T Z^T Z P = L L^T,
    so Q = Z_S L_11^-T over the r selected columns S and Q^T Y = L_11^-1 Z_S^T Y; a Cholesky costs a tenth of
    the eigendecomposition LogME needs. N <= D: eigendecomposition of the N x N matrix Z Z^T = U S^2 U^T.
    Numerical rank: pivots / eigenvalues above max * max(N, D) * eps (numpy's ``matrix_rank`` rule).
    """
    n, d = x.shape
    if n <= d:
        _, u = sample_spectrum(_affine_float64(x, shift, scale))
        return u.shape[1], cross(u, slice(None))
    gram, cross_sum = gram_and_cross(x, cross, shift, scale)
    largest = float(gram.diagonal().max())
    if largest <= 0:
        return 0, np.zeros((0, cross_sum.shape[1]))
    factor, pivots, rank, _ = sla.lapack.dpstrf(gram, tol=largest * n * np.finfo(np.float64).eps, lower=1)
    selected = pivots[:rank] - 1
    coordinates = sla.solve_triangular(np.tril(factor[:rank, :rank]), cross_sum[selected], lower=True)
    return int(rank), coordinates


def rank_cutoff(eigenvalues: np.ndarray, size: int) -> float:
    """Eigenvalues at or below this are numerical zeros (numpy's ``matrix_rank`` rule: max * size * eps)."""
    return float(max(eigenvalues.max(initial=0.0), 0.0) * size * np.finfo(np.float64).eps)


def lower_triangle(a: np.ndarray) -> np.ndarray:
    """``np.tril(a)``, also fast for the Fortran-ordered matrices of ``gram_and_cross`` (``np.tril`` walks those
    across memory: 10x slower at D = 2048)."""
    return np.triu(a.T).T if a.flags.f_contiguous and not a.flags.c_contiguous else np.tril(a)


def symmetric_from_lower(lower: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose lower triangle is ``lower``'s (its upper triangle is not read), in one pass."""
    return np.where(np.tri(lower.shape[0], dtype=bool), lower, lower.T)


def class_scatter(x: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scatter, centred_means, counts)``: the centred scatter Xc^T Xc (lower triangle, Fortran order, as
    ``gram_and_cross``), the class-mean offsets mu_c - mu as columns (D, C) and the class counts (C,).

    One blocked pass: Xc itself (N x D float64) is never built. float32 features are converted one block at a
    time and multiplied in float64 (see ``hscore``: float32 products are too coarse for its pseudo-inverse).
    """
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    scatter, centred_sums = gram_and_cross(x, OneHotCross(codes, n_classes), x.mean(axis=0, dtype=np.float64))
    return scatter, centred_sums / counts, counts


#: ``safe_cholesky`` accepts a matrix only when LAPACK's condition estimate clears the rank cutoff by this factor:
#: the estimate is a lower bound of the 1-norm condition number, in practice within a factor of ~10 of it.
CHOLESKY_MARGIN = 1e3


def safe_cholesky(lower: np.ndarray, cutoff_ratio: float) -> np.ndarray | None:
    """Lower Cholesky factor L (A = L L^T) of a symmetric matrix of which only the lower triangle is read, or None
    unless every eigenvalue of A is safely above ``cutoff_ratio`` * its largest.

    Then A^+ = A^-1 and a pseudo-inverse with that rank cutoff is two triangular solves: O(D^3 / 3) flops at
    BLAS-3 speed instead of an eigendecomposition (10x faster at D = 2048). Callers fall back to their
    eigendecomposition on None (singular, indefinite or ill-conditioned A: there the cutoff decides which
    directions count, and only the eigenvalues can say).
    """
    factor, info = sla.lapack.dpotrf(lower, lower=1, clean=1)
    if info != 0:
        return None
    magnitudes = np.abs(lower_triangle(lower))
    one_norm = float((magnitudes.sum(axis=0) + magnitudes.sum(axis=1) - np.diag(magnitudes)).max())
    rcond, info = sla.lapack.dpocon(factor, one_norm, uplo="L")
    if info != 0 or not rcond > CHOLESKY_MARGIN * cutoff_ratio:
        return None
    return factor


def class_offsets_in_eigenbasis(scatter: np.ndarray, centred_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues l_k >= 0 of ``scatter`` (lower triangle read) and offsets[c, k] = v_k^T m_c (C, D)."""
    evals, offsets_t = eigh_projections(scatter, centred_means)
    return np.maximum(evals, 0.0), offsets_t.T


def principal_class_offsets(
    x: np.ndarray, codes: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectrum of the centred scatter Xc^T Xc and the class-mean offsets in its eigenbasis.

    Returns ``(evals, offsets, counts)``: eigenvalues l_k >= 0 (r = min(N, D) of them; numerical zeros are
    NOT dropped, the caller picks its cutoff), offsets[c, k] = v_k^T (mu_c - mu) (C, r), class counts (C,).
    Computed on the smaller side: N >= D eigendecomposes Xc^T Xc = V L V^T; N < D eigendecomposes
    Xc Xc^T = U L U^T and uses mu_c - mu = Xc^T 1_c / n_c, so v_k^T (mu_c - mu) = sqrt(l_k) u_k^T 1_c / n_c.
    """
    if x.shape[0] >= x.shape[1]:
        scatter, centred_means, counts = class_scatter(x, codes, n_classes)
        evals, offsets = class_offsets_in_eigenbasis(scatter, centred_means)
    else:
        counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
        xc = x - x.mean(axis=0, dtype=np.float64)
        evals, u = np.linalg.eigh(xc @ xc.T)
        evals = np.maximum(evals, 0.0)
        offsets = class_sums(u, codes, n_classes) * np.sqrt(evals) / counts[:, None]
    return np.maximum(evals, 0.0), offsets, counts


#: ``leading_eigenpairs`` runs Lanczos only for at most this fraction of the spectrum of a matrix this large.
LANCZOS_MAX_FRACTION, LANCZOS_MIN_SIZE = 0.25, 256
#: Restarts of ``leading_eigenpairs`` before it gives up: enough for spectra with a decaying head; a flat one is
#: better served by the tridiagonalisation anyway.
LANCZOS_MAX_RESTARTS = 60


def leading_eigenpairs(lower: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The k largest eigenpairs (descending) of a symmetric matrix, of which only the lower triangle is read, by
    implicitly restarted Lanczos (ARPACK) to machine precision; None when k is too large a part of the spectrum
    or Lanczos does not converge within its restart budget (callers then use ``top_eigenpairs``).

    Lanczos needs matrix-vector products only, no O(D^3) tridiagonalisation: the top 64 axes of a 2048 x 2048
    scatter matrix of real features in 0.3-0.5 s instead of 1.1 s (no faster on a flat, white-noise spectrum).
    The start vector is seeded, so results are reproducible.
    """
    d = lower.shape[0]
    if d < LANCZOS_MIN_SIZE or k > LANCZOS_MAX_FRACTION * d:
        return None
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh  # imported when needed

    matrix = np.asfortranarray(lower)
    # BLAS dsymv reads the lower triangle only: no symmetric copy of the matrix is made.
    operator = LinearOperator((d, d), matvec=lambda v: sla.blas.dsymv(1.0, matrix, np.ravel(v), lower=1),
                              dtype=np.float64)  # fmt: skip
    start = np.random.default_rng(0).standard_normal(d)
    try:
        # Hundreds of matrix-vector products and small dense steps: threaded BLAS gained little on them and lost
        # 25x on 2 busy cores (PARC's 32 axes of a 500 x 500 Gram matrix: 3.2 s instead of 0.13 s).
        with one_blas_thread():
            evals, vectors = eigsh(operator, k=k, which="LA", tol=0, v0=start, maxiter=LANCZOS_MAX_RESTARTS)
    except ArpackNoConvergence:
        return None
    order = np.argsort(evals)[::-1]
    return evals[order], vectors[:, order]


def top_eigenpairs(lower: np.ndarray, choose: Callable[[np.ndarray], int]) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (D, k) of a symmetric matrix, of which only
    the lower triangle is read; k = ``choose(all eigenvalues, descending)``.

    One Householder tridiagonalisation a = Q T Q^T (``dsytrd``), all eigenvalues of T (O(D^2)), the k wanted
    eigenvectors W of T only (``eigh_tridiagonal`` with an index range), then V = Q W by applying the reflectors
    (``dormqr``). ``numpy.linalg.eigh`` would also compute the D - k unwanted vectors and the O(D^3)
    back-transformation of all of them: PCA to 32-64 axes of 2048-d features costs a third of that.
    """
    d = lower.shape[0]
    if d < 3:
        evals, v = np.linalg.eigh(symmetric_from_lower(lower))
        k = choose(evals[::-1])
        return evals[::-1][:k], v[:, ::-1][:, :k]
    lapack = sla.lapack
    lwork = int(lapack.dsytrd_lwork(d, lower=1)[0])
    reflectors, diagonal, off_diagonal, tau, info = lapack.dsytrd(np.asfortranarray(lower), lower=1, lwork=lwork)
    _check_lapack("dsytrd", info)
    evals = sla.eigvalsh_tridiagonal(diagonal, off_diagonal)[::-1]
    k = choose(evals)
    if k == 0:
        return evals[:0], np.zeros((d, 0))
    _, w = sla.eigh_tridiagonal(diagonal, off_diagonal, select="i", select_range=(d - k, d - 1))
    vectors = np.array(w[:, ::-1], order="F")
    tail, _, info = lapack.dormqr(
        "L", "N", reflectors[1:, : d - 1], tau, vectors[1:], lwork=max(1, 64 * k), overwrite_c=1
    )
    _check_lapack("dormqr", info)
    vectors[1:] = tail
    return evals[:k], vectors


def pca_project(x: np.ndarray, variance: float | None = None, n_dims: int | None = None) -> np.ndarray:
    """Project centred ``x`` on its leading principal axes, in float64.

    ``variance`` in (0, 1]: keep the fewest axes that explain at least that fraction of the variance
    (sklearn's ``PCA(n_components=0.8)`` rule); ``n_dims``: keep at most that many axes. Both may be given
    (the smaller count wins). Axes with zero variance are never kept. Exact: N >= D eigendecomposes the D x D
    scatter matrix (one blocked pass over ``x``, which is never copied whole; float32 ``x`` gets float32 products
    (``float32_centred_scatter``), and for its projection, on row blocks centred in float32: 2.4x faster, within
    ~1e-7 of the largest coordinate), N < D the N x N Gram matrix, both
    for the kept eigenvectors only: by Lanczos (``leading_eigenpairs``) for a fixed count of axes, else by
    ``top_eigenpairs``.
    """
    n, d = x.shape

    def kept(evals_descending: np.ndarray) -> int:
        keep = int((evals_descending > rank_cutoff(evals_descending, max(n, d))).sum())
        if variance is not None:
            ratio = np.cumsum(evals_descending[:keep]) / evals_descending[:keep].sum()
            keep = min(keep, int(np.searchsorted(ratio, variance - 1e-12) + 1))
        if n_dims is not None:
            keep = min(keep, n_dims)
        return max(keep, 1)

    def leading(lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The largest entry of a PSD matrix is on its diagonal. Rescaled, the eigenvectors are the same and the
        # rule of ``kept`` (relative to the spectrum) picks the same count.
        exponent = unit_exponent(float(np.abs(np.diagonal(lower)).max()), EIGEN_SCALE_BOUND)
        if exponent:
            evals, vectors = leading(np.ldexp(lower, -exponent))
            return np.ldexp(evals, exponent), vectors
        # Only the variance rule needs the whole spectrum; a fixed count needs the top n_dims pairs alone.
        found = None if variance is not None or n_dims is None else leading_eigenpairs(lower, n_dims)
        if found is None:
            return top_eigenpairs(lower, kept)
        evals, vectors = found
        k = kept(evals)
        return evals[:k], vectors[:, :k]

    mean = x.mean(axis=0, dtype=np.float64)
    if n < d:
        xc = np.asarray(x, dtype=np.float64) - mean
        # Xc Xc^T (lower triangle, BLAS dsyrk: half a general product) from the Fortran-ordered view Xc^T (trans=1):
        # given C-ordered Xc, f2py copies it first and the product runs at half the rate (27 vs 14 ms at 500 x 2048).
        # Xc = U S V^T, so the projection Xc V = U S.
        evals, u = leading(sla.blas.dsyrk(1.0, xc.T, trans=1, lower=1))
        return u * np.sqrt(np.maximum(evals, 0.0))
    if x.dtype == np.float32:
        scatter = float32_centred_scatter(x)
    else:
        scatter, _ = gram_and_cross(x, no_cross, mean)
    _, axes = leading(scatter)
    projected = np.empty((n, axes.shape[1]))
    if x.dtype == np.float32:  # float32 products here too, on blocks centred by the float32-rounded mean
        mean32, axes32 = mean.astype(np.float32), axes.astype(np.float32)
        for rows in row_blocks(n):
            projected[rows] = (x[rows] - mean32) @ axes32
        projected -= (mean - mean32) @ axes  # the rounded mean's offset, removed in float64
        return projected
    for rows in row_blocks(n):
        projected[rows] = (np.asarray(x[rows], dtype=np.float64) - mean) @ axes
    return projected


def seeded_subsample(n: int, max_n: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of ``max_n`` of ``n`` samples drawn without replacement, or None when all fit."""
    if max_n is None or n <= max_n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))
