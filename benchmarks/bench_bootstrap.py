"""Cost and fidelity of `score --bootstrap` for LogME: the resampled form vs one score and vs exact resampling.

    python benchmarks/bench_bootstrap.py                      # 10k x 2048, 10 classes, B = 100 (a minute or two)
    python benchmarks/bench_bootstrap.py --n 2000 --d 256 --exact 30

Data: synthetic float32 features (class means + noise, like extracted features). Reports the seconds of one
LogME score, of B resampled scores through ``logme_resampled`` (the full data's eigenbasis reused) and the
ratio; with ``--exact R`` also R exact resamples (LogME on the repeated rows) and how the two agree: the
correlation over resamples, the ratio of their standard deviations and the mean difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelrank.metrics.logme import logme  # noqa: E402
from modelrank.metrics.resampled import logme_resampled  # noqa: E402
from modelrank.scoring import resample_counts  # noqa: E402


def synthetic(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    means = rng.normal(scale=0.3, size=(classes, d))
    return (rng.normal(size=(n, d)) + means[labels]).astype(np.float32), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=10)
    parser.add_argument("--boot", type=int, default=100)
    parser.add_argument("--exact", type=int, default=0, help="also run this many exact resamples")
    args = parser.parse_args()
    x, y = synthetic(args.n, args.d, args.c)
    start = time.perf_counter()
    score = logme(x, y)
    one = time.perf_counter() - start
    counts = resample_counts(y, "classification", args.boot, seed=0)
    start = time.perf_counter()
    fast = logme_resampled(x, y, counts)
    boot = time.perf_counter() - start
    print(f"N={args.n} D={args.d} C={args.c}: one LogME {one:.2f} s; B={args.boot} resampled {boot:.2f} s "
          f"({boot / one:.1f}x one score); score {score:.5f}, resamples mean {fast.mean():.5f} sd {fast.std():.5f}")
    if args.exact:
        start = time.perf_counter()
        exact = np.array([logme(np.repeat(x, c.astype(int), axis=0), np.repeat(y, c.astype(int)))
                          for c in counts[: args.exact]])
        seconds = time.perf_counter() - start
        part = fast[: args.exact]
        print(f"exact resamples: {seconds / args.exact:.2f} s each; corr(resampled, exact) "
              f"{np.corrcoef(part, exact)[0, 1]:.3f}, sd ratio {part.std() / exact.std():.3f}, "
              f"mean difference {np.mean(part - exact):+.5f} (exact sd {exact.std():.5f})")


if __name__ == "__main__":
    main()
