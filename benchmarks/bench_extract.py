"""Is loading and caching the bottleneck of `extract`? Prints, for one model on this machine:

* images/s of `extract` (dataset decode + preprocessing + forward + Parquet writes) against images/s of the bare
  model forward pass on the same, already preprocessed batches (target ratio >= 0.8);
* seconds of a cached rerun (`load_features` on a complete entry) against the first run (target >= 50x faster).

    python benchmarks/bench_extract.py --model efficientnet_lite0 --dataset animal-mnist --n 256
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from modelrank.data import load_dataset
from modelrank.extraction import extract, load_features, select_samples
from modelrank.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--dataset", default="animal-mnist")
    parser.add_argument("--n", type=int, default=256, help="images")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="modelrank-bench-")
    data = load_dataset(args.dataset)
    ids = select_samples(data.targets, args.n, None, 0, data.task)
    model = load_model(args.model)
    batches = [
        torch.stack([model.transform(data.load(int(i))) for i in ids[s : s + args.batch_size]])
        for s in range(0, len(ids), args.batch_size)
    ]
    model.forward(batches[0][:2])  # warm-up (lazy init, allocator)
    start = time.perf_counter()
    for batch in batches:
        model.forward(batch)
    bare = time.perf_counter() - start

    start = time.perf_counter()
    extract([args.model], args.dataset, limit=args.n, batch_size=args.batch_size, cache_dir=cache, workers=0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    fs = load_features(args.model, args.dataset, limit=args.n, cache_dir=cache)
    cached = time.perf_counter() - start
    assert fs.n_samples == len(ids)

    print(f"model {args.model} on {args.dataset}, {len(ids)} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"bare forward      {len(ids) / bare:8.1f} img/s")
    print(f"extract           {len(ids) / first:8.1f} img/s   ratio {bare / first:.2f} (target >= 0.8)")
    print(f"cached rerun      {cached:8.3f} s        {first / cached:.0f}x faster than the first run (target >= 50x)")


if __name__ == "__main__":
    main()
