"""modelrank against the structure of the public reference code, same arrays, one table of ratios.

    python benchmarks/bench_public.py                          # N=10k, D=2048, C=100, 1 BLAS thread
    python benchmarks/bench_public.py --n 50000 --metrics logme,hscore --threads 2
    python benchmarks/bench_public.py --with-slow              # also TransRate's D x D per-class code (minutes)

Each reference below re-implements the public code's computation as it is written (its decompositions, loops,
dtypes and solver settings), so the ratio public s / modelrank s measures modelrank's implementation, not a
different algorithm. Arrays: the anchors' ``speed_arrays`` (``../shared/anchors/reference-scores/make_inputs.py``:
float32 post-ReLU features, balanced classes, a 1000-way source softmax) when present, else the same recipe here.
Timings are the fastest of ``--repeat`` calls; run it alone on the machine, or compare ratios measured in one run.
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

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
ANCHOR_INPUTS = Path(os.environ.get("MODELRANK_ANCHORS") or ROOT.parent / "shared" / "anchors") / "reference-scores"

import reference_metrics as ref_i  # noqa: E402
import reference_metrics_ii as ref_ii  # noqa: E402

from modelrank.metrics.hscore import hscore  # noqa: E402
from modelrank.metrics.leep import leep, nce  # noqa: E402
from modelrank.metrics.logme import logme  # noqa: E402
from modelrank.metrics.ncti import ncti_terms  # noqa: E402
from modelrank.metrics.pactran import pactran_gauss  # noqa: E402
from modelrank.metrics.parc import parc  # noqa: E402
from modelrank.metrics.transrate import transrate  # noqa: E402


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
    "nce_given_argmax": (lambda a: nce(a["source_probs"], a["labels"]),
                         lambda a: nce_tllib(a["source_argmax"], a["labels"]),
                         "tllib nce.py given the argmax precomputed (as the issue measured)", False),
    "pactran_gauss": (lambda a: pactran_gauss(a["features"], a["labels"]),
                      lambda a: pactran_gauss_pactran_metrics(a["features"], a["labels"]),
                      "pactran_metrics calculate_pac_gauss", False),
    "parc": (lambda a: parc(a["features"], a["labels"]), lambda a: parc_official(a["features"], a["labels"]),
             "dbolya/parc on the same 500-sample subset", False),
    "ncti_terms": (lambda a: ncti_terms(a["features"], a["labels"]), lambda a: ncti_official(a["features"], a["labels"]),
                   "NCTI_Score: sklearn PCA(64) + eigen LDA", False),
    "transrate": (lambda a: transrate(a["features"], a["labels"]),
                  lambda a: ref_ii.transrate_reference(a["features"].astype(np.float64), a["labels"]),
                  "tllib transrate.py: D x D slogdet per class", True),
}  # fmt: skip


def fastest(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=100)
    parser.add_argument("--metrics", default=",".join(PAIRS), help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--repeat", type=int, default=2, help="keep the fastest of this many calls")
    parser.add_argument("--with-slow", action="store_true", help="also the references that take minutes")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = set(names) - set(PAIRS)
    if unknown:
        parser.error(f"unknown metrics {sorted(unknown)}; choose from {', '.join(PAIRS)}")
    threadpool_limits(args.threads)
    arrays = speed_arrays(args.n, args.d, args.c)
    arrays["source_argmax"] = arrays["source_probs"].argmax(axis=1)
    print(f"N={args.n} D={args.d} C={args.c}, {args.threads} BLAS thread(s), fastest of {args.repeat}\n")
    print("| metric | modelrank s | public s | public / modelrank | public structure |")
    print("|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            ours, public, what, slow = PAIRS[name]
            seconds, _ = fastest(lambda: ours(arrays), args.repeat)
            if slow and not args.with_slow:
                print(f"| {name} | {seconds:.3f} | - | - | {what} (--with-slow) |", flush=True)
                continue
            public_seconds, _ = fastest(lambda: public(arrays), 1 if slow else args.repeat)
            print(f"| {name} | {seconds:.3f} | {public_seconds:.3f} | {public_seconds / seconds:.2f}x | {what} |",
                  flush=True)


if __name__ == "__main__":
    main()
