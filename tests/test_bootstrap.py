"""`score --bootstrap`: seeded resampling intervals and the probability that the top model is best."""

import io

import numpy as np
import pandas as pd
import pytest

from modelrank.errors import InvalidInputError
from modelrank.features import FeatureSet
from modelrank.metrics.logme import logme
from modelrank.metrics.resampled import logme_resampled
from modelrank.scoring import bootstrap_scores, half_sample_counts, resample_counts, score_feature_sets


def make_sets(n=300, dim=12, signals=(0.3, 0.35, 2.0)):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 4
    return [FeatureSet(features=rng.normal(size=(n, dim)) + s * np.eye(4, dim)[y], labels=y, model=f"m{i}",
                       dataset="toy") for i, s in enumerate(signals)]


def synthetic(n, d, classes, seed):
    """float32 class means + noise, as benchmarks/bench_bootstrap.py draws them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    means = rng.normal(scale=0.3, size=(classes, d))
    return (rng.normal(size=(n, d)) + means[labels]).astype(np.float32), labels


def test_resample_counts_are_stratified_and_seeded():
    y = np.array([0] * 5 + [1] * 7 + [2] * 3)
    counts = resample_counts(y, "classification", 40, seed=3)
    assert counts.shape == (40, 15) and (counts.sum(axis=1) == 15).all()
    for c in range(3):
        assert (counts[:, y == c].sum(axis=1) == (y == c).sum()).all()  # every class keeps its size
    assert np.array_equal(counts, resample_counts(y, "classification", 40, seed=3))
    assert not np.array_equal(counts, resample_counts(y, "classification", 40, seed=4))
    assert (resample_counts(np.linspace(0, 1, 15), "regression", 5, 0).sum(axis=1) == 15).all()


def test_resampled_logme_is_logme_at_unit_counts_and_tracks_exact_resamples():
    fs = make_sets()[2]
    assert logme_resampled(fs.features, fs.labels, np.ones((1, 300)))[0] == pytest.approx(logme(fs.features, fs.labels))
    # Each sample's count is taken exactly (interactions left out): it follows exact resampling closely where the
    # classes separate (here), and still at D / N = 0.2, where the first-order form had correlation 0.89 and a
    # bias of 6 exact standard deviations.
    for x, y in ((fs.features, fs.labels), synthetic(600, 120, 5, seed=1)):
        counts = resample_counts(y, "classification", 30, seed=0)
        fast = logme_resampled(x, y, counts)
        exact = np.array([logme(np.repeat(x, c.astype(int), axis=0), np.repeat(y, c.astype(int))) for c in counts])
        assert np.corrcoef(fast, exact)[0, 1] > 0.92 and 0.7 < np.std(fast) / np.std(exact) < 1.4
        assert abs(np.mean(fast - exact)) < 2 * np.std(exact)
    with pytest.raises(InvalidInputError, match="whole numbers"):
        logme_resampled(fs.features, fs.labels, np.full((1, 300), 0.5))
    with pytest.raises(InvalidInputError, match="more samples than dimensions"):
        logme_resampled(fs.features[:10], fs.labels[:10], np.ones((1, 10)))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_resampled_logme_keeps_logmes_precision_under_a_large_offset(task):
    """Its own F^T F lost the spread's eigenvalues to a common offset as LogME's did: at unit counts it gave the
    2%-off LogME of 1e6-offset features (rank 1 at 1e9) after LogME itself was fixed."""
    fs = make_sets()[2]
    labels = fs.labels if task == "classification" else fs.features @ np.linspace(-1, 1, 12) + fs.labels
    for offset in (1e6, 1e9):
        shifted = fs.features + offset
        assert logme_resampled(shifted, labels, np.ones((1, 300)), task=task)[0] == pytest.approx(
            logme(shifted, labels, task=task), rel=1e-9)


def test_bootstrap_interval_covers_the_score_is_seeded_and_finds_the_best():
    sets = make_sets()
    frame = score_feature_sets(sets, ["logme", "hscore"])
    boot = bootstrap_scores(sets, frame, 20, seed=7)
    exact = bootstrap_scores(sets, frame, 20, seed=7, exact=True)
    assert not np.allclose(exact["logme_low"], boot["logme_low"])  # LogME recomputed on each resample
    assert (exact["logme_low"] <= exact["logme"]).all() and (exact["logme"] <= exact["logme_high"]).all()
    for metric in ("logme", "hscore"):  # logme through its resampled form, hscore by recomputing
        assert (boot[f"{metric}_low"] <= boot[metric]).all() and (boot[metric] <= boot[f"{metric}_high"]).all()
        assert (boot[f"{metric}_low"] < boot[f"{metric}_high"]).all()
        assert boot[f"{metric}_p_best"].sum() == pytest.approx(1.0)
        assert boot.set_index("Model").loc["m2", f"{metric}_p_best"] == 1.0  # far ahead of the two others
    again = bootstrap_scores(sets, frame, 20, seed=7)
    pd.testing.assert_frame_equal(boot, again)
    other = bootstrap_scores(sets, frame, 20, seed=8)
    assert not np.allclose(boot["hscore_low"], other["hscore_low"])
    assert boot.attrs["bootstrap"] == {"resamples": 20, "seed": 7, "level": 0.95, "exact": False}
    with pytest.raises(InvalidInputError, match="at least 2"):
        bootstrap_scores(sets, frame, 1)
    with pytest.raises(InvalidInputError, match="bootstrap seed must be an integer"):  # was numpy's ValueError
        bootstrap_scores(sets, frame, 20, seed=-1)


def test_half_samples_hold_half_of_each_class_without_repeats():
    y = np.array([0] * 6 + [1] * 5 + [2])
    counts = half_sample_counts(y, "classification", 30, seed=2)
    assert set(np.unique(counts)) <= {0.0, 1.0}
    assert (counts[:, y == 0].sum(axis=1) == 3).all() and (counts[:, y == 1].sum(axis=1) == 2).all()
    assert (counts[:, y == 2] == 1).all()  # a class of one sample is always kept
    assert np.array_equal(counts, half_sample_counts(y, "classification", 30, seed=2))
    assert len({row.tobytes() for row in counts}) > 20


def test_bootstrap_with_fewer_samples_than_dimensions_uses_half_samples():
    """N <= D: resamples with repeats lower the features' rank and gave LogME intervals of -11.8 ... 7.0 around
    -0.75 here; half-samples give intervals as wide as the spread over fresh datasets from the same source."""
    rng = np.random.default_rng(0)
    y = np.arange(60) % 4
    signals = (0.5, 1.0, 3.0)

    def draw(generator):
        return [generator.normal(size=(60, 128)) + s * np.eye(4, 128)[y] for s in signals]

    sets = [FeatureSet(features=x, labels=y, model=f"m{i}", dataset="toy") for i, x in enumerate(draw(rng))]
    frame = score_feature_sets(sets, ["logme"])
    boot = bootstrap_scores(sets, frame, 40, seed=1)
    assert any("half-samples" in note for note in boot.attrs["notes"])
    assert ((boot["logme_low"] <= boot["logme"]) & (boot["logme"] <= boot["logme_high"])).all()
    fresh = np.std([[logme(x, y) for x in draw(np.random.default_rng(100 + r))] for r in range(20)], axis=0)
    width = (boot["logme_high"] - boot["logme_low"]).to_numpy()
    assert (width > 2 * fresh).all() and (width < 8 * fresh).all()  # a 95% interval is ~4 standard deviations
    assert boot["logme_p_best"].iloc[2] > 0.9
    again = bootstrap_scores(sets, frame, 40, seed=1)
    assert np.array_equal(again["logme_low"], boot["logme_low"])


def test_a_saturated_model_is_never_best_in_the_bootstrap():
    """H-Score saturates at C - 1 for a model with more dimensions than samples: in the resamples it was best every
    time, P(best) = 1.0, a certainty made by the data's size. Unranked, it is never best; the others share it."""
    sets = make_sets(n=40, signals=(0.3, 2.0))
    rng = np.random.default_rng(1)
    y = sets[0].labels
    sets.append(FeatureSet(features=rng.normal(size=(40, 64)) + np.eye(4, 64)[y], labels=y, model="wide", dataset="toy"))
    frame = score_feature_sets(sets, ["hscore"])
    assert frame.set_index("Model").loc["wide", "hscore_flags"] == "saturated"
    boot = bootstrap_scores(sets, frame, 10, seed=0).set_index("Model")
    assert np.isnan(boot.loc["wide", "hscore_p_best"]) and np.isfinite(boot.loc["wide", "hscore_low"])
    assert boot["hscore_p_best"].sum() == pytest.approx(1.0) and boot.loc["m1", "hscore_p_best"] == 1.0


def test_bootstrap_with_every_model_saturated_has_no_best_and_no_crash(cli, tmp_path):
    """H-Score saturated on every model (N <= D): the P(best) loop ran over empty resamples and `score --bootstrap`
    crashed (exit 1, "zero-size array to reduction operation maximum")."""
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 3
    files = []
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", features=rng.normal(size=(12, 20)), labels=labels)
        files += ["--features", str(tmp_path / f"{name}.npz")]
    code, out, err = cli("score", *files, "--metric", "hscore", "--bootstrap", "3", "--format", "csv")
    assert code == 0 and "Traceback" not in err, err
    frame = pd.read_csv(io.StringIO(out))
    assert (frame["hscore_flags"] == "saturated").all() and frame["hscore_p_best"].isna().all()
    assert frame["hscore_low"].notna().all()
