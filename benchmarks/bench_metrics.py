"""Time and memory of the Metrics-I implementations, and their speed-up over slow per-class references.

    python benchmarks/bench_metrics.py --quick                 # seconds: one small configuration
    python benchmarks/bench_metrics.py                         # the grid N x D x C below (several minutes)
    python benchmarks/bench_metrics.py --n 50000 --d 2048 --c 100 --metrics logme --threads 2 --repeat 3

Data: synthetic float32 features (class means + noise, like extracted features), integer labels and a
source softmax over ``--source-classes`` classes. Seconds are wall clock of one call (the fastest of
``--repeat`` calls); peak memory is the tracemalloc peak of the first call (numpy/Python heap; BLAS scratch
space is not counted). The reference implementations live in ``tests/reference_metrics.py`` (shared with the
tests) and run only where their naive cost stays tractable (see ``REFERENCE_LIMITS``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import reference_metrics as ref  # noqa: E402

from modelrank.metrics.gbc import gbc, gbc_spherical  # noqa: E402
from modelrank.metrics.hscore import hscore, hscore_reg  # noqa: E402
from modelrank.metrics.leep import leep, nce, nleep  # noqa: E402
from modelrank.metrics.lfc import lfc  # noqa: E402
from modelrank.metrics.logme import logme  # noqa: E402
from modelrank.metrics.otce import otce_source_free  # noqa: E402
from modelrank.metrics.pactran import pactran_dirichlet, pactran_gamma, pactran_gauss  # noqa: E402


def otce_sf_reference(x, y, p):
    """Same split as ``otce_source_free``, CE by the class-pair loop."""
    rows = np.arange(len(y))
    if len(rows) > 4000:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), 4000, replace=False))
    rows = np.random.default_rng(0).permutation(rows)
    half = len(rows) // 2
    a, b = rows[:half], rows[half : 2 * half]
    return -ref.otce_ref(x[a].astype(np.float64), p[a].argmax(axis=1), x[b].astype(np.float64), y[b])[1]


# name -> (fast(x, y, p), reference(x, y, p) or None)
METRICS: dict[str, tuple[Callable, Callable | None]] = {
    "hscore": (lambda x, y, p: hscore(x, y), lambda x, y, p: ref.hscore_ref(x, y)),
    "hscore_reg": (lambda x, y, p: hscore_reg(x, y), lambda x, y, p: ref.hscore_reg_ref(x, y)),
    "leep": (lambda x, y, p: leep(p, y), lambda x, y, p: ref.leep_ref(p, y)),
    "nce": (lambda x, y, p: nce(p, y), lambda x, y, p: ref.nce_ref(p, y)),
    "nleep": (lambda x, y, p: nleep(x, y), lambda x, y, p: ref.nleep_ref(x, y, max_dims=128)),
    "logme": (lambda x, y, p: logme(x, y), lambda x, y, p: ref.logme_ref(x, y)),
    # Same fast code; reference = the public ICML / TLlib structure (SVD of F^T F, then the per-class loop).
    "logme_vs_svd": (lambda x, y, p: logme(x, y), lambda x, y, p: ref.logme_ref(x, y, decomposition="svd")),
    "pactran_dir": (lambda x, y, p: pactran_dirichlet(p, y), lambda x, y, p: ref.pactran_dir_ref(p, y)),
    "pactran_gamma": (lambda x, y, p: pactran_gamma(p, y), lambda x, y, p: ref.pactran_gamma_ref(p, y)),
    "pactran_gauss": (
        lambda x, y, p: pactran_gauss(x, y),
        lambda x, y, p: ref.pactran_gauss_ref(x, y, tol=1e-6, max_iter=100),
    ),
    "otce_sf": (lambda x, y, p: otce_source_free(x, y, p), otce_sf_reference),
    "gbc": (lambda x, y, p: gbc(x, y), lambda x, y, p: ref.gbc_ref(x, y)),
    "gbc_spherical": (lambda x, y, p: gbc_spherical(x, y), lambda x, y, p: ref.gbc_ref(x, y, "spherical")),
    "lfc": (lambda x, y, p: lfc(x, y), lambda x, y, p: ref.lfc_ref(x, y)),
}

#: Largest (N, D, C) each naive reference is run at: N x N kernels (LFC), D x D pinv per class pair (GBC),
#: all-sample GMM / torch L-BFGS (N-LEEP, PAC-Gauss).
REFERENCE_LIMITS: dict[str, Callable[[int, int, int], bool]] = {
    "lfc": lambda n, d, c: n <= 10_000,
    "gbc": lambda n, d, c: d * d * d * c * c <= 512**3 * 100,
    "gbc_spherical": lambda n, d, c: d * d * d * c * c <= 512**3 * 100,
    "nleep": lambda n, d, c: n <= 10_000 and d <= 512,
    "pactran_gauss": lambda n, d, c: n * d * c <= 10_000 * 512 * 100,
}


def make_data(n: int, d: int, c: int, z: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    centers = rng.normal(size=(c, d)).astype(np.float32) * 0.5
    x = rng.standard_normal((n, d), dtype=np.float32)
    x += centers[y]
    logits = rng.standard_normal((n, z), dtype=np.float32)
    logits[np.arange(n), y % z] += 3.0
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits, dtype=np.float64)
    p /= p.sum(axis=1, keepdims=True)
    return x, y, p


def measure(fn: Callable, *args, repeat: int = 1) -> tuple[float, float, float]:
    """(value, seconds, peak MB): peak memory of the first call, the fastest of ``repeat`` calls (timeit's
    rule: on a shared machine the minimum is the least disturbed run)."""
    tracemalloc.start()
    start = time.perf_counter()
    value = fn(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    for _ in range(repeat - 1):
        start = time.perf_counter()
        fn(*args)
        seconds = min(seconds, time.perf_counter() - start)
    return float(value), seconds, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small configuration (N=1000, D=64, C=10)")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--d", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--c", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--source-classes", type=int, default=1000, help="width of the source softmax")
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated subset")
    parser.add_argument("--no-reference", action="store_true", help="time only the fast implementations")
    parser.add_argument("--out", type=Path, help="also write the rows as CSV")
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each implementation this many times and keep the fastest"
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="BLAS/OpenMP threads (default 1: on a loaded machine multi-threaded OpenBLAS can be 10-30x slower)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    threadpool_limits(args.threads)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.d, args.c, args.source_classes = [1000], [64], [10], 100
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = set(names) - set(METRICS)
    if unknown:
        parser.error(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")

    # Warm-up: lazy imports and BLAS/LAPACK initialisation would otherwise be charged to the first config.
    small = make_data(200, 16, 4, 10)
    for name in names:
        for fn in METRICS[name]:
            if fn is not None and not args.no_reference:
                fn(*small)

    rows = []
    header = f"{'N':>6} {'D':>5} {'C':>4}  {'metric':<14} {'seconds':>9} {'peak MB':>8} {'ref s':>9} {'speed-up':>8}"
    print(header, flush=True)
    for n in args.n:
        for d in args.d:
            for c in args.c:
                x, y, p = make_data(n, d, c, args.source_classes)
                for name in names:
                    fast, slow = METRICS[name]
                    value, seconds, peak = measure(fast, x, y, p, repeat=args.repeat)
                    ref_seconds = ratio = float("nan")
                    allowed = REFERENCE_LIMITS.get(name, lambda *_: True)(n, d, c)
                    if slow is not None and not args.no_reference and allowed:
                        ref_value, ref_seconds, _ = measure(slow, x, y, p, repeat=args.repeat)
                        ratio = ref_seconds / seconds
                        if not np.isclose(value, ref_value, rtol=1e-4, atol=1e-9):
                            print(f"  note: {name} fast {value:.8g} vs reference {ref_value:.8g}", flush=True)
                    rows.append({"N": n, "D": d, "C": c, "metric": name, "seconds": seconds, "peak_mb": peak,
                                 "ref_seconds": ref_seconds, "speedup": ratio, "value": value})  # fmt: skip
                    print(f"{n:>6} {d:>5} {c:>4}  {name:<14} {seconds:>9.3f} {peak:>8.0f} {ref_seconds:>9.3f} "
                          f"{ratio:>8.1f}", flush=True)  # fmt: skip
                del x, p
    if args.out:
        with args.out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
