"""Metrics I (H-Score, LEEP, NCE, N-LEEP, LogME, PACTran, OTCE, GBC, LFC): fast code == slow paper-equation
reference (tests/reference_metrics.py), invariances, label signal, degenerate inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference_metrics as ref

from modelrank.errors import InvalidInputError
from modelrank.features import FeatureSet
from modelrank.metrics import _checks, _linalg, compute_metric
from modelrank.metrics.base import METRICS
from modelrank.metrics.gbc import gbc, gbc_spherical
from modelrank.metrics.hscore import hscore, hscore_reg
from modelrank.metrics.leep import leep, nce, nleep
from modelrank.metrics.lfc import lfc
from modelrank.metrics.logme import logme
from modelrank.metrics.otce import otce, otce_source_free, otce_terms
from modelrank.metrics.pactran import pactran_dirichlet, pactran_gamma, pactran_gauss

RTOL = 1e-6
OURS = [
    "gbc", "gbc_spherical", "hscore", "hscore_reg", "leep", "lfc", "logme", "nce", "nleep", "otce_sf",
    "pactran_dir", "pactran_gamma", "pactran_gauss",
]  # fmt: skip


def make_task(seed: int, n: int = 300, d: int = 16, c: int = 5, z: int = 20, structured: bool = True):
    """Features with class signal (or pure noise), labels, and a source softmax correlated with the labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    x = rng.normal(size=(n, d)) + 3.0
    logits = rng.normal(size=(n, z))
    if structured:
        x += 2.0 * np.eye(c, d)[y]
        logits[:, :c] += 2.5 * np.eye(c)[y]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x, y, probs / probs.sum(axis=1, keepdims=True)


def close(fast: float, slow: float) -> None:
    assert np.isfinite(fast)
    assert fast == pytest.approx(slow, rel=RTOL, abs=1e-12)


# ------------------------------------------------------------------------------------ fast == reference
@pytest.mark.parametrize("seed,structured", [(0, True), (1, False), (2, True)])
class TestAgainstReference:
    def test_hscore(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        close(hscore(x, y), ref.hscore_ref(x, y))
        close(hscore(x, y, rcond=1e-15), ref.hscore_ref(x, y))
        xs, ys, _ = make_task(seed, n=40, d=64, structured=structured)  # n < d: the N x N branch, rank n - 1
        close(hscore(xs, ys, rcond=1e-10), ref.hscore_ref(xs, ys, rcond=1e-10))

    def test_hscore_reg(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        close(hscore_reg(x, y), ref.hscore_reg_ref(x, y))
        xs, ys, _ = make_task(seed, n=40, d=64, structured=structured)  # n < d: shrinkage keeps it invertible
        close(hscore_reg(xs, ys), ref.hscore_reg_ref(xs, ys))

    def test_leep_nce(self, seed, structured):
        _, y, p = make_task(seed, structured=structured)
        close(leep(p, y), ref.leep_ref(p, y))
        close(nce(p, y), ref.nce_ref(p, y))

    def test_nleep_matches_sklearn_pipeline(self, seed, structured):
        x, y, _ = make_task(seed, n=400, structured=structured)
        close(nleep(x, y, max_fit_samples=None), ref.nleep_ref(x, y))

    def test_logme_classification(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        close(logme(x, y), ref.logme_ref(x, y))

    def test_logme_regression(self, seed, structured):
        x, _, _ = make_task(seed, structured=structured)
        rng = np.random.default_rng(seed)
        targets = x[:, :3] @ rng.normal(size=(3, 2)) + rng.normal(size=(x.shape[0], 2))
        close(logme(x, targets, task="regression"), ref.logme_ref(x, targets))
        close(logme(x, targets[:, 0], task="regression"), ref.logme_ref(x, targets[:, :1]))

    def test_pactran_dirichlet_gamma(self, seed, structured):
        _, y, p = make_task(seed, structured=structured)
        close(pactran_dirichlet(p, y), ref.pactran_dir_ref(p, y))
        close(pactran_dirichlet(p, y, alpha=10.0), ref.pactran_dir_ref(p, y, alpha=10.0))
        close(pactran_gamma(p, y), ref.pactran_gamma_ref(p, y))

    def test_pactran_gauss(self, seed, structured):
        x, y, _ = make_task(seed, n=200, d=8, structured=structured)
        close(pactran_gauss(x, y, tol=1e-12, max_iter=1000), ref.pactran_gauss_ref(x, y))

    def test_otce(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        w, ce = ref.otce_ref(x[:120], y[:120], x[120:], y[120:])
        assert otce_terms(x[:120], y[:120], x[120:], y[120:]) == pytest.approx((w, ce), rel=RTOL)
        close(otce(x[:120], y[:120], x[120:], y[120:]), -(w + ce))
        # As many source as target samples: the optimal assignment is the optimal coupling (Birkhoff).
        w, ce = ref.otce_ref(x[:150], y[:150], x[150:], y[150:])
        assert otce_terms(x[:150], y[:150], x[150:], y[150:]) == pytest.approx((w, ce), rel=RTOL)
        # float32 features are upcast after subsampling: the same value as their float64 copy's
        x32 = x.astype(np.float32)
        assert otce_terms(x32[:150], y[:150], x32[150:], y[150:], max_samples=100) == otce_terms(
            x32[:150].astype(np.float64), y[:150], x32[150:].astype(np.float64), y[150:], max_samples=100)  # fmt: skip

    def test_otce_source_free(self, seed, structured):
        x, y, p = make_task(seed, structured=structured)
        # The documented construction: seeded permutation, first half = source side with argmax labels.
        rows = np.random.default_rng(0).permutation(np.arange(len(y)))
        a, b = rows[:150], rows[150:300]
        _, ce = ref.otce_ref(x[a], p[a].argmax(axis=1), x[b], y[b])
        close(otce_source_free(x, y, p, seed=0), -ce)

    def test_gbc(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        close(gbc(x, y), ref.gbc_ref(x, y))
        close(gbc_spherical(x, y), ref.gbc_ref(x, y, "spherical"))

    def test_lfc(self, seed, structured):
        x, y, _ = make_task(seed, structured=structured)
        close(lfc(x, y), ref.lfc_ref(x, y))
        xw, yw, _ = make_task(seed, n=50, d=80, structured=structured)  # N < D uses the N x N Gram branch
        close(lfc(xw, yw), ref.lfc_ref(xw, yw))


# ------------------------------------------------------------------------------------------ invariances
def feature_set(x, y, p, task="classification"):
    return FeatureSet(features=x, labels=y, source_probs=p, task=task)


PER_MODEL_METRICS = sorted(entry.name for entry in METRICS if not entry.obj.zoo_level)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", PER_MODEL_METRICS)
def test_metrics_leave_the_callers_arrays_untouched(name, dtype):
    """Metrics work in place on their own copies and buffers only (centring, mixing, renormalising, gathers)."""
    x, y, p = make_task(21, n=120)
    p[0] *= 1 + 1e-5  # a row off 1 by more than rounding: renormalised on a copy
    x, p = x.astype(dtype), p.astype(dtype)
    kept = (x.copy(), y.copy(), p.copy())
    names = ["cat", "dog", "car", "tree", "boat"]  # EMMS embeds the class names
    compute_metric(name, FeatureSet(features=x, labels=y, source_probs=p, class_names=names))
    for given, copy in zip((x, y, p), kept):
        np.testing.assert_array_equal(given, copy)


@pytest.mark.parametrize("name", PER_MODEL_METRICS)
def test_ragged_nested_lists_are_refused_in_one_line(name):
    """Nested lists whose rows differ in length: numpy's ValueError from np.asarray, named after its internal shapes,
    escaped from the plain functions and compute_metric alike."""
    x, y, p = make_task(22, n=60)
    spec = METRICS.get(name)
    ragged = {"features": [*x.tolist()[:-1], [1.0]], "labels": [*y[:-1].tolist(), [0, 1]],
              "source_probs": [*p.tolist()[:-1], [1.0]]}
    names = ["cat", "dog", "car", "tree", "boat"]
    for key in [k for k in ("features", "labels", "source_probs") if k in spec.needs]:
        given = {"features": x, "labels": y, "source_probs": p, "class_names": names, key: ragged[key]}
        with pytest.raises(InvalidInputError, match="rows differ in length"):
            spec.fn(**{k: given[k] for k in spec.needs if k != "task"})
        with pytest.raises(InvalidInputError, match="rows differ in length"):
            compute_metric(name, FeatureSet(given["features"], given["labels"], source_probs=given["source_probs"],
                                            class_names=names))


@pytest.mark.parametrize("name", ["nleep", "sfda", "gbc", "pactran_gauss"])
def test_plain_functions_refuse_features_beyond_float64_second_moments(name):
    """Only compute_metric checked the magnitudes: called directly these raised scipy's "array must not contain
    infs or NaNs" (LAPACK printing to stderr first) or blamed a non-finite score, after overflow warnings."""
    x, y, _ = make_task(23, n=120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInputError, match=r"features reach magnitude .*e\+160, beyond what float64"):
            METRICS.get(name).fn(x * 1e160, y)


@pytest.mark.parametrize("name", sorted(set(OURS) - {"nleep", "otce_sf"}))
def test_sample_permutation_invariance(name):
    # (N-LEEP's GMM initialisation and OTCE-sf's seeded split depend on the sample order by design.)
    x, y, p = make_task(3)
    perm = np.random.default_rng(9).permutation(len(y))
    a = compute_metric(name, feature_set(x, y, p))
    b = compute_metric(name, feature_set(x[perm], y[perm], p[perm]))
    assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize("name", OURS)
def test_label_renaming_invariance(name):
    x, y, p = make_task(4)
    renamed = np.array(["cat", "dog", "owl", "ant", "bee"])[y]  # strings, non-sorted meaning
    shifted = y * 7 + 3  # ints, not 0..C-1
    a = compute_metric(name, feature_set(x, y, p))
    assert compute_metric(name, feature_set(x, renamed, p)) == pytest.approx(a, rel=1e-6)
    assert compute_metric(name, feature_set(x, shifted, p)) == pytest.approx(a, rel=1e-6)


@pytest.mark.parametrize("name", ["hscore", "hscore_reg", "lfc"])
def test_feature_scale_invariance(name):
    x, y, p = make_task(5)
    a = compute_metric(name, feature_set(x, y, p))
    assert compute_metric(name, feature_set(1e3 * x, y, p)) == pytest.approx(a, rel=1e-6)


def test_hscore_invariant_to_invertible_linear_map():
    x, y, _ = make_task(6)
    mix = np.random.default_rng(6).normal(size=(x.shape[1], x.shape[1]))
    assert hscore(x @ mix, y) == pytest.approx(hscore(x, y), rel=1e-6)


@pytest.mark.parametrize("name", OURS)
def test_separable_scores_higher_than_shuffled(name):
    x, y, p = make_task(7, n=400)
    shuffled = np.random.default_rng(7).permutation(y)
    assert compute_metric(name, feature_set(x, y, p)) > compute_metric(name, feature_set(x, shuffled, p))


# -------------------------------------------------------------------------------------- degenerate input
@pytest.mark.parametrize("name", OURS)
def test_one_class_is_refused(name):
    x, y, p = make_task(8)
    with pytest.raises(InvalidInputError, match="2 classes"):
        compute_metric(name, feature_set(x, np.zeros_like(y), p))


@pytest.mark.parametrize("name", OURS)
def test_nan_features_or_probs_are_refused(name):
    x, y, p = make_task(8)
    x[3, 2] = np.nan
    p[5, 1] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        compute_metric(name, feature_set(x, y, p))


@pytest.mark.parametrize("name", OURS)
def test_float16_input_equals_its_float64_upcast(name):
    x, y, p = make_task(10)
    x16, p16 = x.astype(np.float16), p.astype(np.float16)
    a = compute_metric(name, feature_set(x16, y, p16))
    b = compute_metric(name, feature_set(x16.astype(np.float64), y, p16.astype(np.float64)))
    # LogME and the H-Scores multiply float32 (and so float16) features in float32. So does PAC-Gauss, whose capped
    # L-BFGS stops where the relative reduction of the loss falls below its tolerance: float32 rounding can move that
    # stop by an iteration (1.8e-5 here), within the tie tolerance the metric declares.
    float32_products = {"logme": 1e-6, "hscore": 1e-6, "hscore_reg": 1e-6,
                        "pactran_gauss": METRICS.get("pactran_gauss").tie_rtol}
    assert np.isfinite(a) and a == pytest.approx(b, rel=float32_products.get(name, 1e-9))


def _logme_stress_features(rng: np.random.Generator, y: np.ndarray) -> dict[str, np.ndarray]:
    """float32 features that are hard on float32 products: a large common offset, low rank, duplicated and
    constant columns, mixed column scales, a separating column, values that overflow or underflow float32."""
    n, c = len(y), y.max() + 1
    gauss = rng.normal(size=(n, 96)) + rng.normal(size=(c, 96))[y]
    relu = np.maximum(gauss + 0.5, 0)
    low_rank = gauss[:, :12] @ rng.normal(size=(12, 96))
    mixed = relu * np.logspace(-3, 3, 96)
    separating = gauss.copy()
    separating[:, 0] = 10.0 * y
    cases = {
        "offset": 0.01 * gauss + 1.0, "relu": relu, "low rank": low_rank, "mixed scales": mixed,
        "duplicated": np.hstack([gauss[:, :48], gauss[:, :48]]), "constant": np.hstack([gauss[:, :64], np.full((n, 32), 3.0)]),
        "separating": separating, "overflows float32": relu * 1e19, "underflows float32": relu * 1e-20,
    }  # fmt: skip
    return {name: x.astype(np.float32) for name, x in cases.items()}


def test_float32_features_score_as_float64(monkeypatch):
    """float32 features are converted one row block at a time and multiplied in float64, so LogME and the H-Scores
    equal their float64 scores. float32 products (summed in float64 per block) perturbed the small eigenvalues by
    ~1e-7 of the largest: LogME moved by 3e-3 and H-Score from 6.4 to 22.5 on features whose spectrum spans six
    decades (the "ill-conditioned" case)."""
    import modelrank.metrics._linalg as linalg_module

    monkeypatch.setattr(linalg_module, "ROW_BLOCK", 512)  # 2000 rows -> 4 blocks
    rng = np.random.default_rng(40)
    y = rng.integers(0, 6, 2000)
    # A noisy target: one that the features fit exactly has an evidence set by round-off in any precision.
    target = 0.3 * y + rng.normal(size=2000)
    cases = _logme_stress_features(rng, y)
    rotation = np.linalg.qr(rng.normal(size=(96, 96)))[0]
    spread = (rng.normal(size=(2000, 96)) + 0.3 * rng.normal(size=(6, 96))[y]) * np.logspace(0, -6, 96)
    cases["ill-conditioned"] = (spread @ rotation + 5.0).astype(np.float32)
    for case, x32 in cases.items():
        x64 = x32.astype(np.float64)
        assert logme(x32, y) == pytest.approx(logme(x64, y), rel=1e-12, abs=1e-12), case
        assert logme(x32, target, task="regression") == pytest.approx(
            logme(x64, target, task="regression"), rel=1e-12, abs=1e-12), case
        assert hscore(x32, y) == pytest.approx(hscore(x64, y), rel=1e-12), case
        assert hscore_reg(x32, y) == pytest.approx(hscore_reg(x64, y), rel=1e-12), case


def test_float32_centred_scatter_for_pca_axes(monkeypatch):
    """PCA's float32 products (``float32_centred_scatter``): block-shifted so that a common offset 100x the spread
    keeps the scatter accurate relative to the spread, not to the offset; products that overflow float32 are
    redone in float64."""
    import modelrank.metrics._linalg as linalg_module
    from modelrank.metrics._linalg import float32_centred_scatter, gram_and_cross, no_cross

    monkeypatch.setattr(linalg_module, "ROW_BLOCK", 512)
    rng = np.random.default_rng(41)
    x32 = _logme_stress_features(rng, rng.integers(0, 6, 2000))["offset"]
    exact, _ = gram_and_cross(x32, no_cross, x32.mean(axis=0, dtype=np.float64))
    spread = np.sqrt(np.outer(exact.diagonal(), exact.diagonal()))
    assert np.abs(np.tril(float32_centred_scatter(x32) - exact)).max() <= 1e-5 * spread.max()
    y = np.repeat(np.arange(2), 300)
    huge = ((rng.uniform(1, 1.01, size=(600, 4)) + 4.0 * y[:, None]) * 1e36).astype(np.float32)
    expected, _ = gram_and_cross(huge, no_cross, huge.mean(axis=0, dtype=np.float64))
    np.testing.assert_allclose(np.tril(float32_centred_scatter(huge)), np.tril(expected), rtol=1e-12)


@pytest.mark.parametrize("name", OURS)
def test_class_with_one_sample_gives_a_finite_score(name):
    x, y, p = make_task(11)
    y = y.copy()
    y[y == 4] = 3
    y[0] = 4  # class 4 now has exactly one sample
    assert np.isfinite(compute_metric(name, feature_set(x, y, p)))


@pytest.mark.parametrize("name", OURS)
def test_fewer_samples_than_dimensions_gives_a_finite_score(name):
    x, y, p = make_task(12, n=60, d=200)
    assert np.isfinite(compute_metric(name, feature_set(x, y, p)))


@pytest.mark.parametrize("name", ["hscore", "hscore_reg", "logme", "lfc", "sfda"])
def test_constant_features_are_refused(name):
    x, y, p = make_task(13)
    # 2.5 centres to exact zeros; one float64 row repeated leaves rounding noise in the centred rows, on which
    # hscore scored 1.0, hscore_reg 1.02 and sfda 1/C instead of refusing
    for constant in (np.full_like(x, 2.5), np.repeat(x[:1].astype(np.float64), len(x), axis=0)):
        with pytest.raises(InvalidInputError, match="constant"):
            compute_metric(name, feature_set(constant, y, p))


def test_gbc_constant_features_give_minus_number_of_ordered_pairs():
    # Identical class Gaussians: every BC is 1 (documented value, not an error).
    x, y, _ = make_task(13)
    assert gbc(np.full_like(x, 2.5), y) == pytest.approx(-5 * 4)


def test_duplicated_features():
    x, y, _ = make_task(14)
    doubled = np.hstack([x, x])
    # pinv only sees the column space: duplicating columns leaves the H-Score unchanged.
    assert hscore(doubled, y) == pytest.approx(hscore(x, y), rel=1e-6)
    for fn in (hscore_reg, logme, lfc, gbc, nleep):
        assert np.isfinite(fn(doubled, y))
    assert lfc(doubled, y) == pytest.approx(lfc(x, y), rel=1e-9)  # K doubles: LFC is scale-free


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hscore_cholesky_path_equals_the_eigendecomposition(monkeypatch, dtype):
    """Well-conditioned features take the Cholesky solve; forcing the eigendecomposition gives the same scores,
    and ill-conditioned ones (a near-duplicate column) are refused by the Cholesky path's condition check."""
    import importlib

    linalg = importlib.import_module("modelrank.metrics._linalg")
    hscore_module = importlib.import_module("modelrank.metrics.hscore")  # the package exports a same-named function

    x, y, _ = make_task(15, n=500, d=40)
    x = x.astype(dtype)
    taken = []
    real = linalg.safe_cholesky

    def spy(lower, cutoff_ratio):
        factor = real(lower, cutoff_ratio)
        taken.append(factor is not None)
        return factor

    monkeypatch.setattr(hscore_module, "safe_cholesky", spy)
    fast = hscore(x, y), hscore_reg(x, y)
    assert taken == [True, True]
    monkeypatch.setattr(hscore_module, "safe_cholesky", lambda lower, cutoff_ratio: None)
    assert fast == pytest.approx((hscore(x, y), hscore_reg(x, y)), rel=1e-10)
    near_duplicate = np.hstack([x, x[:, :1] * (1 + 1e-9)]).astype(np.float64)
    assert real(np.cov(near_duplicate, rowvar=False) * 499, 41 * np.finfo(np.float64).eps) is None


def test_lanczos_axes_equal_the_tridiagonal_ones():
    from modelrank.metrics._linalg import leading_eigenpairs, top_eigenpairs

    rng = np.random.default_rng(16)
    x = rng.normal(size=(600, 300)) * np.exp(-np.arange(300) / 40)  # a decaying spectrum, as real features
    scatter = np.tril((x - x.mean(axis=0)).T @ (x - x.mean(axis=0)))
    evals, vectors = leading_eigenpairs(scatter, 32)
    expected_evals, expected_vectors = top_eigenpairs(scatter, lambda all_evals: 32)
    assert evals == pytest.approx(expected_evals, rel=1e-12)
    assert np.abs(np.abs((vectors.T @ expected_vectors).diagonal()) - 1).max() < 1e-10
    assert np.array_equal(leading_eigenpairs(scatter, 32)[1], vectors)  # seeded start: reproducible
    assert leading_eigenpairs(scatter, 100) is None  # a third of the spectrum: the tridiagonalisation's job


def test_logme_rank_deficient_equals_reference_evidence():
    # N < D: the exact evidence counts only rank(F) prior directions; the eigen-reference agrees.
    x, y, _ = make_task(15, n=40, d=100)
    close(logme(x, y), ref.logme_ref(x, y))


def test_logme_task_and_target_checks():
    x, y, _ = make_task(16)
    with pytest.raises(InvalidInputError, match="regression"):
        logme(x, y + 0.5)  # non-integer labels in a classification task
    with pytest.raises(InvalidInputError, match="identically zero"):
        logme(x, np.zeros(len(y)), task="regression")
    fs = FeatureSet(features=x, labels=x[:, 0] * 2 + 1, task="regression")
    assert np.isfinite(compute_metric("logme", fs))
    with pytest.raises(InvalidInputError, match="classification tasks, not regression"):
        compute_metric("hscore", fs)


def test_source_prob_checks():
    x, y, p = make_task(17)
    with pytest.raises(InvalidInputError, match="sum to 1"):
        leep(p * 2, y)
    with pytest.raises(InvalidInputError, match="needs source_probs"):
        compute_metric("leep", FeatureSet(features=x, labels=y))
    from modelrank.metrics._checks import as_probs

    for given in (p.astype(np.float32), p * (1 + 1e-6)):  # renormalised: a private copy in place, or a new array
        before = given.copy()
        normalised = as_probs(given, len(y))
        np.testing.assert_array_equal(given, before)
        np.testing.assert_allclose(normalised.sum(axis=1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("block_rows", [None, 3])
@pytest.mark.parametrize("fn", [leep, nce])
@pytest.mark.parametrize("bad,message", [
    (np.nan, "NaN or inf in 1 of 300 rows"), (np.inf, "NaN or inf in 1 of 300 rows"),
    (-np.inf, "NaN or inf in 1 of 300 rows"), (-0.1, "negative entries"), (0.5, "sum to 1"),
])  # fmt: skip
def test_source_probs_checked_from_their_minimum_and_row_sums_refuse_every_bad_entry(monkeypatch, fn, bad, message,
                                                                                     block_rows):
    """The checks read the smallest entry and the row sums, not every entry's finiteness: a NaN (NaN minimum), an
    inf (inf row sum) or -inf must still be refused, with the same message as the full check gives, also when the
    bad row is in a later row block than the first."""
    _, y, p = make_task(5)
    if block_rows is not None:
        monkeypatch.setattr(_checks, "PROB_BLOCK_ELEMENTS", block_rows * p.shape[1])
        assert nce(p, y) == pytest.approx(ref.nce_ref(p, y), rel=1e-13)
        assert leep(p, y) == pytest.approx(ref.leep_ref(p, y), rel=1e-13)
    p[7, 4] = bad
    with pytest.raises(InvalidInputError, match=message):
        fn(p, y)
    p[7] = 0.0  # an all-zero row: no renormalisation by 1 / 0
    with pytest.raises(InvalidInputError, match="sum to 1"):
        fn(p, y)


def test_leep_renormalises_rows_inside_its_class_pieces(monkeypatch):
    """Rows off 1 by more than rounding are divided by their sums inside LEEP's reductions, as ``as_probs`` would,
    also when a class's samples are cut into several pieces."""
    _, y, p = make_task(6)
    off = p * np.linspace(1 - 1e-4, 1 + 1e-4, len(y))[:, None]
    expected = ref.leep_ref(_checks.as_probs(off, len(y)), y)
    assert leep(off, y) == pytest.approx(expected, rel=1e-13)
    monkeypatch.setattr(_linalg, "CLASS_PIECE_ELEMENTS", 7 * p.shape[1])  # ~60 samples a class: 9 pieces each
    assert leep(off, y) == pytest.approx(expected, rel=1e-13)
    off32 = off.astype(np.float32)
    assert leep(off32, y) == pytest.approx(ref.leep_ref(_checks.as_probs(off32, len(y)), y), rel=1e-13)


def test_nce_from_source_labels_equals_nce_of_the_probabilities_whose_argmax_they_are():
    from modelrank.metrics.leep import nce_from_source_labels

    _, y, p = make_task(8)
    argmax = p.argmax(axis=1)
    assert nce_from_source_labels(argmax, y) == nce(p, y)
    assert nce_from_source_labels(argmax.astype(np.uint16) + 1000, y) == nce(p, y)  # any integer ids
    for bad, message in ((argmax.astype(float), "integer source classes"), (p, "1-D array"),
                         (argmax[:-1], "299 source_labels for 300 labels")):
        with pytest.raises(InvalidInputError, match=message):
            nce_from_source_labels(bad, y)

    assert nce_from_source_labels(argmax.astype(np.int64) * 10**9, y) == pytest.approx(nce(p, y), rel=1e-15)  # sorted


@pytest.mark.parametrize("values", [
    np.array([5, 3, 3, 9], dtype=np.int16), np.array([7, 7, 7]), np.arange(300, dtype=np.uint8) % 7,
    np.array([0, 4 * 3 + 1023]),  # the largest value still counted
    np.array([0, 4 * 3 + 1024]), np.array([-1, 2, 2]), np.array([1.0, 0.0]),  # sorted by np.unique
])
def test_small_integer_codes_are_np_unique(values):
    classes, codes = np.unique(values, return_inverse=True)
    counted = _checks.small_integer_codes(values)
    if values.dtype.kind in "iu" and values.min() >= 0 and values.max() < 4 * len(values) + 1024:
        assert counted[0].dtype == classes.dtype and np.array_equal(counted[0], classes)
        assert np.array_equal(counted[1], codes)
    else:
        assert counted is None
    got_codes, n_classes = _checks.as_class_labels(values, len(values)) if len(classes) > 1 else (codes, 1)
    assert np.array_equal(got_codes, codes) and n_classes == len(classes)


def test_otce_checks_and_subsample():
    x, y, p = make_task(18, n=500)
    with pytest.raises(InvalidInputError, match="dimension"):
        otce(x, y, x[:, :5], y)
    # Subsampled to 100 per side with a seed: deterministic.
    assert otce(x, y, x + 1, y, max_samples=100) == otce(x, y, x + 1, y, max_samples=100)


@pytest.mark.parametrize("exponent", [-540, -1000, 400])
def test_source_free_otce_is_scale_invariant_down_to_underflow(exponent):
    """Source-free OTCE reads only the coupling, which scaling the costs leaves alone; at 2**-540 (~3e-163) the squared
    distances underflowed to 0, so any coupling looked optimal and the score was that of an arbitrary one."""
    x, y, p = make_task(21, n=200)
    assert otce_source_free(np.ldexp(x, exponent), y, p) == otce_source_free(x, y, p)


@pytest.mark.parametrize("offset", [1e8, 1e10])
def test_otce_couplings_keep_their_precision_under_a_large_offset(offset):
    """Squared distances ||a||^2 + ||b||^2 - 2 a.b of offset features cancelled to rounding noise, so the coupling
    was arbitrary: source-free OTCE moved by 4% at 1e8 and 50% at 1e10."""
    x, y, p = make_task(22, n=300)
    assert otce_source_free(x + offset, y, p) == otce_source_free(x, y, p)
    w, ce = otce_terms(x[:150], y[:150], x[150:] + 0.5, y[150:])
    w_offset, ce_offset = otce_terms(x[:150] + offset, y[:150], x[150:] + 0.5 + offset, y[150:])
    assert ce_offset == ce and w_offset == pytest.approx(w, rel=1e-4)  # W: the offset rounds the features


def test_nleep_parameters():
    x, y, _ = make_task(19, n=500)
    assert nleep(x, y, seed=3) == nleep(x, y, seed=3)
    assert np.isfinite(nleep(x, y, n_components=7, pca_variance=None, max_pca_dims=4))
    assert np.isfinite(nleep(x, y, covariance_type="full", max_fit_samples=200))
    with pytest.raises(InvalidInputError, match="pca_variance"):
        nleep(x, y, pca_variance=1.5)


def test_nleep_mixture_warnings_are_modelrank_flags():
    """sklearn's ConvergenceWarnings went through as plain warnings, so `score` did not flag the score. Fewer
    distinct rows than components (repeated samples): one component per distinct row, and no ConvergenceWarning;
    each holds one class, so N-LEEP is 0, its maximum: a SaturationWarning (the "saturated" flag), as for a
    component per sample of noise features. EM stopped at max_iter: a NotConvergedWarning (the "not_converged"
    flag)."""
    import warnings

    from modelrank.metrics.base import NotConvergedWarning, SaturationWarning

    rng = np.random.default_rng(0)
    x, y = np.repeat(rng.normal(size=(12, 8)), 25, axis=0), np.repeat(np.arange(3), 100)  # 12 rows for 15 components
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert nleep(x, y) == pytest.approx(0.0, abs=1e-12)  # each distinct row holds one class
    assert [w.category for w in caught] == [SaturationWarning]
    noise, labels = rng.normal(size=(60, 8)), rng.integers(0, 3, 60)
    with pytest.warns(SaturationWarning, match="60 mixture components .*60 fit samples"):
        assert nleep(noise, labels, n_components=60) == 0.0  # was the best score, without a word
    with pytest.warns(NotConvergedWarning, match="max_iter=1"):
        nleep(rng.normal(size=(300, 8)), y, max_iter=1)


def test_lfc_large_n_without_gram():
    # 30k samples: an N x N float64 Gram would be 7 GB; the identities need only D x D.
    rng = np.random.default_rng(20)
    y = rng.integers(0, 10, 30_000)
    x = rng.normal(size=(30_000, 32)) + np.eye(10, 32)[y]
    assert 0 < lfc(x, y) < 1


def test_row_blocks_do_not_change_the_result(monkeypatch):
    import modelrank.metrics._linalg as linalg_module

    _, y, p = make_task(21)
    monkeypatch.setattr(linalg_module, "ROW_BLOCK", 7)  # 300 rows -> 43 uneven blocks
    close(leep(p, y), ref.leep_ref(p, y))
    close(pactran_dirichlet(p, y), ref.pactran_dir_ref(p, y))
    close(pactran_gamma(p, y), ref.pactran_gamma_ref(p, y))
    x, y, _ = make_task(22)
    x32 = x.astype(np.float32)  # float32 blocks upcast one by one
    close(logme(x32, y), ref.logme_ref(x32, y))
    close(hscore(x32, y), ref.hscore_ref(x32, y))
    close(hscore_reg(x32, y), ref.hscore_reg_ref(x32, y))
    close(logme(x, y[:, None] * 0.5 + x[:, :1], task="regression"), ref.logme_ref(x, y[:, None] * 0.5 + x[:, :1]))


def test_pactran_log_space_steps_equal_the_product_form(monkeypatch):
    import modelrank.metrics.pactran as pactran_module

    _, y, p = make_task(23)
    product_form = pactran_dirichlet(p, y), pactran_gamma(p, y)
    monkeypatch.setattr(pactran_module, "SMALLEST_NORMALISER", 2.0)  # d_i <= 1 always: every block in log space
    for fast, log_space in zip(product_form, (pactran_dirichlet(p, y), pactran_gamma(p, y))):
        close(fast, log_space)


def test_finiteness_check_survives_overflowing_sums():
    """The cheap check sums the features; a sum that overflows must fall back to the exact check, not refuse."""
    from modelrank.metrics._checks import as_features

    huge = np.full((4, 3), 1e308)
    assert as_features(huge) is huge
    with pytest.raises(InvalidInputError, match="NaN or inf in 3 of 4 rows"):
        as_features(np.where(np.eye(4, 3, dtype=bool), np.inf, huge))
    assert as_features(np.ones((2, 2), np.float32), upcast=False).dtype == np.float32
    assert as_features(np.ones((2, 2), np.float16), upcast=False).dtype == np.float32


def test_logme_stays_finite_when_features_interpolate_the_labels():
    """A target fitted exactly by a tiny weight (rank(F) close to N, seen on real 200 x 1280 features): the
    residual underflows and beta diverges. That column is redone with floors; ordinary columns are untouched."""
    from modelrank.metrics.logme import max_evidence

    sigma = np.array([1e10, 1.0, 1e-3])
    projected = np.array([[1e5, 1.0], [0.0, 2.0], [0.0, 0.5]])
    y_norm2 = (projected**2).sum(axis=0) + np.array([0.0, 3.0])
    evidence, _ = max_evidence(sigma, projected, y_norm2, 3)
    assert np.isfinite(evidence).all()
    assert evidence[1] == max_evidence(sigma, projected[:, 1:], y_norm2[1:], 3)[0][0]


def test_hscore_warns_when_it_saturates_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 64)), np.repeat([0, 1, 2], 10)
    with pytest.warns(UserWarning, match="saturates at C - 1 = 2"):
        assert hscore(x, y) == pytest.approx(2.0)


@pytest.mark.parametrize("d", [1, 2, 3, 40])
def test_eigh_projections_equal_eigh_then_rotate(d):
    """Eigenvalues and V^T b without forming V: equal to numpy's eigh up to eigenvector signs, also where an
    eigenvalue repeats (then only sums of squares over its eigenspace are defined, which is all LogME uses)."""
    from modelrank.metrics._linalg import eigh_projections

    def same(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())

    rng = np.random.default_rng(30 + d)
    x = rng.normal(size=(3 * d + 5, d)) * rng.uniform(0.01, 10, size=d)
    a, b = x.T @ x, rng.normal(size=(d, 6))
    evals, coordinates = eigh_projections(np.tril(a), b)  # only the lower triangle may be read
    ref_evals, v = np.linalg.eigh(a)
    same(evals, ref_evals)
    same(np.abs(coordinates), np.abs(v.T @ b))
    assert eigh_projections(a, b[:, :0])[1].shape == (d, 0)
    if d >= 3:
        repeated = np.diag(np.r_[np.full(d - 1, 2.0), 5.0])
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        evals, coordinates = eigh_projections(q @ repeated @ q.T, b)
        same(evals, np.r_[np.full(d - 1, 2.0), 5.0])
        same((coordinates[:-1] ** 2).sum(axis=0), ((q[:, :-1].T @ b) ** 2).sum(axis=0))
        same(coordinates[-1] ** 2, (q[:, -1] @ b) ** 2)


def _long_double_lfc(x: np.ndarray, y: np.ndarray) -> float:
    """LFC literally (N x N kernels) in long double: the terms that cancel in float64 keep ~3 more digits."""
    f = x.astype(np.longdouble)
    k = f @ f.T
    labels = np.where(y[:, None] == y[None, :], np.longdouble(1), np.longdouble(-1))
    k, labels = k - k.mean(), labels - labels.mean()
    return (k * labels).sum() / np.sqrt((k**2).sum() * (labels**2).sum())


def _long_double_spherical_gbc(x: np.ndarray, y: np.ndarray, floor: float = 1e-4) -> float:
    f, n_classes, dim = x.astype(np.longdouble), y.max() + 1, x.shape[1]
    means = np.stack([f[y == c].mean(axis=0) for c in range(n_classes)])
    s2 = np.stack([np.maximum(((f[y == c] - means[c]) ** 2).mean(axis=0), floor) for c in range(n_classes)]).mean(axis=1)
    total = np.longdouble(0)
    for i in range(n_classes):
        for j in range(n_classes):
            if i != j:
                avg = (s2[i] + s2[j]) / 2
                distance = ((means[i] - means[j]) ** 2).sum() / (8 * avg) + dim / 2 * (
                    np.log(avg) - (np.log(s2[i]) + np.log(s2[j])) / 2)
                total += np.exp(-distance)
    return -total


@pytest.mark.parametrize("offset", [0.0, 1e4, 1e5])
def test_lfc_and_spherical_gbc_keep_their_precision_under_a_large_offset(offset):
    """A common offset 1e4-1e5 times the spread (unnormalised features): the uncentred float64 identities lost
    1.7e-7 / 6.5e-6 of LFC and 6.0e-6 of spherical GBC at 1e5 against long double; centred first, 1e-13 / 1e-11."""
    rng = np.random.default_rng(41)
    y = rng.integers(0, 5, 300)
    y[:5] = np.arange(5)
    x = rng.normal(size=(300, 16)) + 0.7 * rng.normal(size=(5, 16))[y] + offset * (1 + 0.1 * rng.normal(size=16))
    assert lfc(x, y) == pytest.approx(float(_long_double_lfc(x, y)), rel=1e-11)
    assert gbc_spherical(x, y) == pytest.approx(float(_long_double_spherical_gbc(x, y)), rel=1e-9)
    wide = np.hstack([x[:40], x[:40, :8] * 0.5 + 3.0])[:, :60]  # N < D: the N x N branch of LFC
    wide = np.hstack([wide, rng.normal(size=(40, 40))])
    assert lfc(wide, y[:40]) == pytest.approx(float(_long_double_lfc(wide, y[:40])), rel=1e-11)


@pytest.mark.parametrize("offset", [1e3, 1e6, 1e9])
@pytest.mark.parametrize("n,d", [(200, 16), (30, 40)])  # F^T F and F F^T
def test_logme_keeps_its_precision_under_a_large_offset(offset, n, d):
    """A common offset rounded the spread's eigenvalues out of F^T F (F F^T): LogME moved by 0.009 (2%) at 1e6 and
    kept rank 1 at 1e9 (-0.59 for 0.45). Reference: the same fixed point on the singular values of F itself."""
    import sys

    from modelrank.metrics import _checks

    logme_module = sys.modules["modelrank.metrics.logme"]  # the package attribute ``logme`` is the function
    x, y, _ = make_task(47, n=n, d=d, c=4)
    shifted = x + offset * (1 + 0.1 * np.random.default_rng(1).normal(size=d))
    codes, n_classes = _checks.as_class_labels(y, n)
    u, singular, _ = np.linalg.svd(shifted, full_matrices=False)
    keep = singular > singular.max() * max(n, d) * np.finfo(float).eps
    one_hot = np.eye(n_classes)[codes]
    evidence, _ = logme_module.max_evidence(singular[keep] ** 2, u[:, keep].T @ one_hot, one_hot.sum(axis=0), n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 30 samples: not converged in 11 steps, as the reference
        assert logme(shifted, y) == pytest.approx(float(evidence.mean()), rel=1e-7, abs=1e-9)


def test_logme_converged_mode_reaches_the_maximum_evidence():
    """3-sample classes: after the public codes' 11 steps the evidence is still ~1e-3 from its maximum (flagged);
    the converged mode reaches it, including targets whose maximum is the alpha -> inf boundary (y as pure noise),
    checked against a direct 2-d maximisation of the evidence."""
    from scipy.optimize import minimize

    from modelrank.metrics._linalg import OneHotCross
    from modelrank.metrics.base import NotConvergedWarning
    from modelrank.metrics.logme import LOGME_PRESETS, feature_spectrum, max_evidence

    rng = np.random.default_rng(42)
    y = np.r_[np.repeat(np.arange(4), 3), rng.integers(4, 10, 300)]
    x = rng.normal(size=(len(y), 40)) + 0.3 * rng.normal(size=(10, 40))[y]
    with pytest.warns(NotConvergedWarning, match="had not converged after 11 iterations"):
        capped = logme(x, y)
    sigma, projected = feature_spectrum(x, OneHotCross(y, 10))
    y_norm2 = np.bincount(y).astype(np.float64)
    evidence, not_converged = max_evidence(sigma, projected, y_norm2, len(y), LOGME_PRESETS["converged"])
    assert not not_converged.any()
    n = len(y)

    def negative_evidence(log_ab, k):
        a, b = np.exp(log_ab)
        t, x2 = a / b, projected[:, k] ** 2
        m2 = (sigma * x2 / (sigma + t) ** 2).sum()
        res2 = (x2 * t**2 / (sigma + t) ** 2).sum() + y_norm2[k] - x2.sum()
        return -(len(sigma) / 2 * np.log(a) + n / 2 * np.log(b) - 0.5 * np.log(a + b * sigma).sum()
                 - b / 2 * res2 - a / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n  # fmt: skip

    for k in range(10):
        best = max(-minimize(negative_evidence, start, args=(k,), method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20_000}).fun
                   for start in ([0.0, 0.0], [40.0, np.log(n / y_norm2[k])]))  # fmt: skip
        assert evidence[k] == pytest.approx(best, rel=1e-9, abs=1e-9)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        converged = logme(x, y, preset="converged")
    assert converged == pytest.approx(float(evidence.mean()), rel=1e-12)
    assert converged - capped > 1e-5


def test_presets_are_checked():
    x, y, _ = make_task(43, n=200, d=8)
    with pytest.raises(InvalidInputError, match="preset takes one of converged, thuml, tllib, stable_transfer, not 'nope'"):
        logme(x, y, preset="nope")
    with pytest.raises(InvalidInputError, match="preset 'thuml' sets max_iter"):
        logme(x, y, preset="thuml", max_iter=50)
    with pytest.raises(InvalidInputError, match="preset 'model_spider' sets .*seed"):
        nleep(x, y, preset="model_spider", seed=3)
    with pytest.raises(InvalidInputError, match="preset 'converged' sets tol"):
        pactran_gauss(x, y, preset="converged", tol=1e-3)
    fs = FeatureSet(features=x, labels=y)
    assert compute_metric("logme", fs, preset="tllib") == logme(x, y, preset="tllib")  # a --set parameter


@pytest.mark.parametrize("n,d", [(200, 8), (20, 40)])  # F^T F and F F^T
def test_logme_scores_features_whose_squares_underflow_as_other_tiny_ones(n, d):
    """Tiny features score alike (LogME's capped iteration from alpha = beta = 1, flagged); from ~1e-170 their
    squares underflowed and LogME said "evidence is not finite ... (degenerate spectrum)"."""
    from modelrank.metrics.base import NotConvergedWarning

    x, y, _ = make_task(46, n=n, d=d)
    with pytest.warns(NotConvergedWarning):
        small = logme(x * 1e-100, y)
    with pytest.warns(NotConvergedWarning):
        assert logme(x * 1e-170, y) == pytest.approx(small, rel=1e-12)


def test_pactran_gauss_flags_the_iteration_cap_and_converges_on_request():
    from modelrank.metrics.base import NotConvergedWarning

    x, y, _ = make_task(44, n=300, d=24)
    with pytest.warns(NotConvergedWarning, match="cap of 5 iterations"):
        capped = pactran_gauss(x, y, max_iter=5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        converged = pactran_gauss(x, y, preset="converged")
    close(converged, ref.pactran_gauss_ref(x, y))  # the optimum: tol 1e-12, start-independent
    assert abs(capped - converged) > 1e-6


@pytest.mark.parametrize("scale,dtype", [(1e13, np.float64), (1e30, np.float32)])
def test_pactran_gauss_refuses_features_its_line_search_cannot_step_on(scale, dtype):
    """From ~2e11 L-BFGS's first line search failed: the score was a trial point's loss at the start (-63 where the
    trend gave -60; -8.5e18 at 1e30), unflagged."""
    x, y, _ = make_task(45, n=200, d=8)
    with pytest.raises(InvalidInputError, match="could not take a first step.*standardise them"):
        pactran_gauss((x * scale).astype(dtype), y)


def test_pactran_gauss_presets_keep_float64_products():
    """The capped default multiplies float32 features in float32; a reproduction preset and the converged mode
    must not (they are exact by definition)."""
    x, y, _ = make_task(17)
    x32 = x.astype(np.float32)
    for kwargs in ({"preset": "pactran_metrics"}, {"max_iter": None}):
        assert pactran_gauss(x32, y, **kwargs) == pactran_gauss(x32.astype(np.float64), y, **kwargs)
    assert pactran_gauss(x32, y) == pytest.approx(pactran_gauss(x32.astype(np.float64), y), rel=1e-5)


def _gbc_module():
    import importlib

    return importlib.import_module("modelrank.metrics.gbc")  # the package exports a same-named function


@pytest.mark.parametrize("low,high,grouped", [(1e-4, 1e2, True), (1e-30, 1e-20, True), (1e-300, 1e300, False),
                                             (5e-324, 1e-310, False), (1e250, 1e300, False)])
def test_gbc_grouped_log_sums_equal_plain_log_sums(low, high, grouped):
    """One log per group of multiplied variance sums: the group size keeps every product a normal float64, even
    for variances across float64's whole range or subnormal ones, and the sums equal the plain sums of logs."""
    gbc_module = _gbc_module()
    rng = np.random.default_rng(0)
    variances = np.exp(rng.uniform(np.log(low), np.log(high), size=(6, 67)))  # 67 = groups + a remainder
    summed = variances[:3, None, :] + variances[None, 3:, :]  # every pairwise sum, as _log_bc_diagonal forms them
    summed = summed.reshape(-1, 67)
    group = gbc_module._log_group_size(variances)
    assert 1 <= group <= gbc_module._MAX_LOG_GROUP and (group > 1) == grouped
    plain = np.log(summed).sum(axis=1)
    grouped = gbc_module._sum_of_logs(summed, group)
    np.testing.assert_allclose(grouped, plain, rtol=1e-14, atol=1e-12 * np.abs(np.log(summed)).sum(axis=1).max())


@pytest.mark.parametrize("scale, offset", [(1e-6, 0.0), (1.0, 0.0), (1e120, 0.0), (1.0, 1e6)])
def test_gbc_equals_reference_in_pieces_and_at_extreme_scales(monkeypatch, scale, offset):
    """Classes larger than one gathered piece (the pieces' statistics merged by Chan's update, also under a common
    offset 1e6 times the spread) and variances far from 1 (the floor scaled with them, so the grouped logs see
    values of 1e-12..1e240) give the reference's value."""
    gbc_module = _gbc_module()
    x, y, _ = make_task(21, n=200, d=40, c=4)
    x = x * scale + offset
    expected = ref.gbc_ref(x, y, floor=1e-4 * scale**2)
    monkeypatch.setattr(gbc_module, "_PIECE_ELEMENTS", 13 * 40)  # ~50 samples a class: 4 pieces of 13 rows
    monkeypatch.setattr(gbc_module, "_PAIR_ELEMENTS", 2 * 40)  # two class pairs a step
    assert gbc(x, y, variance_floor=1e-4 * scale**2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gbc_checks_finiteness_through_its_class_means(bad, dtype):
    x, y, _ = make_task(22, n=60, d=6)
    x = x.astype(dtype)
    x[9, 3] = bad
    with pytest.raises(InvalidInputError, match="NaN or inf in 1 of 60 rows"):
        gbc(x, y)
    with pytest.raises(InvalidInputError, match="NaN or inf in 1 of 60 rows"):
        gbc(x, y, pca_dims=3)


def test_gbc_warns_when_every_class_pair_is_separated():
    """Few samples in many dimensions: the per-dimension variances are tiny, every Bhattacharyya coefficient
    underflows towards 0 and GBC saturates for every model (a tie under its 1e-12 tolerance): it says so."""
    from modelrank.metrics.base import SaturationWarning

    x, y, _ = make_task(18, n=30, d=2000, c=3)
    with pytest.warns(SaturationWarning, match="perfectly separated"):
        assert -1e-12 < gbc(x, y) <= 0
    x, y, _ = make_task(18)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        assert gbc(x, y) < -1e-12
