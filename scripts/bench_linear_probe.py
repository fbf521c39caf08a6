"""Benchmark the linear-probe C sweep: sklearn lbfgs warm-started (modelrank's backend) vs cold-started vs a
full-batch torch L-BFGS with the same objective (mean cross-entropy + ||W||^2 / (2 C n)).

Synthetic Gaussian classes (n samples, d dims, k classes), standardised; every backend sweeps the same Cs with the
same gradient tolerance and reports CPU seconds (robust on a shared machine), wall seconds, total L-BFGS iterations and validation accuracy at the best C.
Usage: OMP_NUM_THREADS=1 python scripts/bench_linear_probe.py [--n 8000 --d 512 --k 50 --threads 1]
(set the thread variables at start-up: threadpoolctl limits applied later do not stop OpenMP contention)
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _anchors import REPO_ROOT  # noqa: F401  (puts the checkout on sys.path)


def data(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, 2 * n)
    x = (0.15 * centers[y] + rng.normal(size=(2 * n, d))).astype(np.float32)
    x = (x - x[:n].mean(0)) / x[:n].std(0)
    return x[:n], y[:n], x[n:], y[n:]


def modelrank_sweep(xt, yt, xv, yv, cs, tol):
    from modelrank.finetune.linear import _fit_logistic_path

    _, curve, iterations, _, _ = _fit_logistic_path(xt, yt, xv, yv, int(yt.max()) + 1, cs, "accuracy", 500, tol)
    return iterations, max(curve)


def sklearn_cold_sweep(xt, yt, xv, yv, cs, tol):
    from sklearn.linear_model import LogisticRegression

    iterations, best = 0, 0.0
    for c in cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=c, max_iter=500, tol=tol).fit(xt, yt)
        iterations += int(model.n_iter_.max())
        best = max(best, float((model.predict(xv) == yv).mean()))
    return iterations, best


def torch_sweep(xt, yt, xv, yv, cs, tol):
    import torch

    x, y, x_val = torch.as_tensor(xt), torch.as_tensor(yt), torch.as_tensor(xv)
    w = torch.zeros(x.shape[1], int(yt.max()) + 1, requires_grad=True)
    b = torch.zeros(w.shape[1], requires_grad=True)
    iterations, best = 0, 0.0
    for c in cs:
        penalty = 1.0 / (2.0 * c * x.shape[0])
        opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=tol, tolerance_change=1e-10, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(torch.addmm(b, x, w), y) + penalty * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        iterations += opt.state[w]["n_iter"]
        with torch.no_grad():
            best = max(best, float((torch.addmm(b, x_val, w).argmax(1).numpy() == yv).mean()))
    return iterations, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])  # first use imports torch._dynamo: timed apart
    print(f"one-time torch.optim.LBFGS import: {time.perf_counter() - start:.2f} s")
    xt, yt, xv, yv = data(args.n, args.d, args.k)
    cs = np.logspace(-4, 2, 13)
    runs = {
        "sklearn lbfgs, warm start (modelrank)": lambda: modelrank_sweep(xt, yt, xv, yv, cs, args.tol),
        "sklearn lbfgs, cold start": lambda: sklearn_cold_sweep(xt, yt, xv, yv, cs, args.tol),
        "torch L-BFGS full batch, warm start": lambda: torch_sweep(xt, yt, xv, yv, cs, args.tol),
    }
    print(f"n={args.n} d={args.d} k={args.k}, {len(cs)} Cs, tol {args.tol}, {args.threads} thread(s)")
    reference = None
    with threadpool_limits(args.threads):
        for name, run in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            iterations, accuracy = run()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            reference = reference or cpu
            print(
                f"{name:40s} cpu {cpu:7.2f} s ({cpu / reference:4.2f}x)  wall {wall:7.2f} s  "
                f"{iterations:5d} iterations  best val acc {accuracy:.4f}"
            )


if __name__ == "__main__":
    main()
