"""Benchmark of the metrics-II family: seconds and peak traced memory per metric over N, D, C, speed ratios
against the slow literal references (tests/reference_metrics_ii.py), and EMMS vs LogME on the same F-label
targets (the EMMS paper reports ~5x over LogME).

    .venv/bin/python benchmarks/bench_metrics_ii.py --quick      # about a minute
    .venv/bin/python benchmarks/bench_metrics_ii.py              # N in {1k, 10k, 50k}, D in {512, 2048}, C in {10, 100}
    .venv/bin/python benchmarks/bench_metrics_ii.py --full       # also N=50k with D=2048 (minutes)
    .venv/bin/python benchmarks/bench_metrics_ii.py --only emms  # just EMMS vs LogME

Peak memory is what ``tracemalloc`` sees (numpy buffers; not BLAS scratch space), in MiB, above the input.
Features are synthetic Gaussian classes (float64); a timing is the best of up to 3 runs (1 for the slow
references), on whatever CPU this is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Callable

# One BLAS thread unless the caller says otherwise: on a shared machine multi-threaded OpenBLAS LAPACK calls
# (Cholesky, eigh) were measured 10-50x slower and erratic, which would drown the differences being measured.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import reference_metrics_ii as ref  # noqa: E402

from modelrank.metrics.emms import emms  # noqa: E402
from modelrank.metrics.logme import logme  # noqa: E402
from modelrank.metrics.ncti import ncti_terms  # noqa: E402
from modelrank.metrics.parc import parc  # noqa: E402
from modelrank.metrics.ped import ped_features  # noqa: E402
from modelrank.metrics.probes import knn, linear_probe  # noqa: E402
from modelrank.metrics.sfda import sfda  # noqa: E402
from modelrank.metrics.transrate import transrate  # noqa: E402

CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).replace("_", " ").split()


def measure(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float, object]:
    """(best seconds, peak MiB traced, result). Timed runs are untraced; a call under 2 s is repeated and the
    fastest kept, because a shared machine adds large random delays. Memory comes from one extra traced run."""
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
            if times[-1] > 2.0:
                break
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return min(times), peak / 2**20, result


def make_data(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    x = rng.normal(size=(c, d))[y] * (2.0 / np.sqrt(d)) * 4 + rng.normal(size=(n, d))
    return x, y


def fast_metrics(n: int, d: int) -> dict[str, Callable[[np.ndarray, np.ndarray], object]]:
    """Every metric with its defaults; the costly ones only where a 2-core machine finishes in reasonable time."""
    metrics = {
        "sfda": sfda,
        "parc (500)": parc,
        "transrate": transrate,
        "ncti_terms": ncti_terms,
        "emms (one-hot)": lambda x, y: emms(x, np.eye(y.max() + 1)[y]),
        "ped_features": ped_features,
    }
    if n * n * d <= 10_000 * 10_000 * 2048:
        metrics["knn"] = knn
    if n * d <= 10_000 * 512:
        metrics["linear_probe"] = linear_probe
    return metrics


def grid(args) -> list[tuple[int, int, int]]:
    if args.quick:
        return [(1000, 512, 10), (1000, 512, 100), (5000, 512, 10)]
    configs = []
    for n in (1000, 10_000, 50_000):
        for d in (512, 2048):
            for c in (10, 100):
                if n == 50_000 and d == 2048 and not args.full:
                    continue
                configs.append((n, d, c))
    return configs


def scaling_table(args) -> None:
    print("## Seconds / peak traced MiB per metric\n")
    print("| N | D | C | metric | seconds | peak MiB |")
    print("|---|---|---|---|---|---|")
    for n, d, c in grid(args):
        x, y = make_data(n, d, c)
        for name, fn in fast_metrics(n, d).items():
            seconds, peak, _ = measure(lambda: fn(x, y))
            print(f"| {n} | {d} | {c} | {name} | {seconds:.3f} | {peak:.0f} |", flush=True)


def reference_table(args) -> None:
    n, d, c = (300, 64, 10) if args.quick else (1000, 128, 10)
    x, y = make_data(n, d, c)
    rng = np.random.default_rng(1)
    f_labels = rng.normal(size=(n, 16, 3))
    f_labels[:, :, 0] += x[:, :16]
    xs, ys = x[:300], y[:300]  # the quadratic pair/sample loops of the PARC and kNN references
    pairs = {
        "sfda": (lambda: sfda(x, y), lambda: ref.sfda_reference(x, y)),
        "parc (N=300)": (lambda: parc(xs, ys, max_samples=None), lambda: ref.parc_reference(xs, ys)),
        "transrate": (lambda: transrate(x, y), lambda: ref.transrate_reference(x, y)),
        "ncti_terms": (lambda: ncti_terms(x, y), lambda: ref.ncti_terms_reference(x, y)),
        "knn (N=300)": (lambda: knn(xs, ys), lambda: ref.knn_reference(xs, ys)),
        "emms (K=3, 1 round)": (lambda: emms(x, f_labels, max_iter=1), lambda: ref.emms_reference(x, f_labels, 1)[0]),
        "ped_features": (lambda: ped_features(x, y), lambda: ref.ped_features_reference(x, y)),
    }
    print(f"\n## Fast vs slow reference (N={n}, D={d}, C={c})\n")
    print("| metric | fast s | reference s | speed-up | fast MiB | reference MiB | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for name, (fast, slow) in pairs.items():
        t_fast, m_fast, r_fast = measure(fast)
        t_slow, m_slow, r_slow = measure(slow, repeats=1)
        a, b = np.atleast_1d(np.asarray(r_fast, dtype=float)), np.atleast_1d(np.asarray(r_slow, dtype=float))
        diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
        print(f"| {name} | {t_fast:.3f} | {t_slow:.3f} | {t_slow / t_fast:.1f}x | {m_fast:.0f} | {m_slow:.0f} "
              f"| {diff:.1e} |", flush=True)


def emms_vs_logme(args) -> None:
    """EMMS and LogME on the same (N, 384) F-label regression targets from the offline text encoder.

    EMMS is timed twice: from the class table (``emms_classification``'s path: every F-label is its class's
    embedding) and from the explicit per-sample (N, 384) array (``emms``). LogME is ours (all targets in one
    batched fixed point) and, where tractable, the public code's structure (one fixed point per target
    dimension, ``tests/reference_metrics.logme_ref``), which is what the EMMS paper's ~5x was measured against.
    """
    import reference_metrics as ref_i

    from modelrank.metrics.emms import _emms_of_classes

    try:
        from modelrank.text import encode_texts

        table = encode_texts(CIFAR100_NAMES)
        source = "all-MiniLM-L6-v2 embeddings of the CIFAR-100 class names"
    except Exception as err:  # the benchmark still runs without the optional text extra
        table = np.random.default_rng(0).normal(size=(100, 384))
        source = f"random 384-d label vectors (text encoder unavailable: {err})"
    configs = [(1000, 512, 100), (5000, 512, 100)] if args.quick else [(1000, 512, 100), (10_000, 512, 100),
                                                                       (10_000, 2048, 100), (50_000, 512, 100)]
    if args.full:
        configs.append((50_000, 2048, 100))
    print(f"\n## EMMS vs LogME on the same F-label targets ({source})\n")
    print("| N | D | C | EMMS (class table) s | EMMS (per-sample) s | LogME s | LogME / EMMS | LogME per-target "
          "loop s | loop / EMMS | EMMS MiB | LogME MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, d, c in configs:
        x, y = make_data(n, d, c)
        targets = table[y]
        t_c, m_c, s_c = measure(lambda: _emms_of_classes(x, y, table[:, :, None], 10, 1e-8))
        t_e, m_e, s_e = measure(lambda: emms(x, targets))
        assert np.isclose(s_c, s_e, rtol=1e-6), (s_c, s_e)
        t_l, m_l, _ = measure(lambda: logme(x, targets, task="regression"))
        if n * d <= 10_000 * 512:
            t_loop, _, _ = measure(lambda: ref_i.logme_ref(x, targets), repeats=1)
            loop = f"{t_loop:.2f} | {t_loop / t_c:.0f}x"
        else:
            loop = "- | -"
        print(f"| {n} | {d} | {c} | {t_c:.3f} | {t_e:.3f} | {t_l:.3f} | {t_l / t_c:.1f}x | {loop} | "
              f"{max(m_c, m_e):.0f} | {m_l:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (about a minute)")
    parser.add_argument("--full", action="store_true", help="also N=50k with D=2048")
    parser.add_argument("--only", choices=["scaling", "reference", "emms"], help="run one table")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}\n")
    if args.only in (None, "scaling"):
        scaling_table(args)
    if args.only in (None, "reference"):
        reference_table(args)
    if args.only in (None, "emms"):
        emms_vs_logme(args)


if __name__ == "__main__":
    main()
