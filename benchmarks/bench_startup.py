"""How long does the command line take to answer when it does no work? Prints, for `modelrank --help` and
`modelrank list metrics`, the wall time of a fresh interpreter (subprocess), best and median of several runs,
plus the CPU time of the best run (wall time on a shared machine includes waiting for a core).
Target: both below 1 s.

    python benchmarks/bench_startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {"--help": ["--help"], "list metrics": ["list", "metrics"]}


def run_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one `python -m modelrank ARGS` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modelrank", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'command':<16} {'best s':>8} {'median s':>9} {'cpu s':>7}  (runs: {args.repeats}, cores: {os.cpu_count()}, "
          f"load: {os.getloadavg()[0]:.1f})")
    for label, argv in COMMANDS.items():
        run_once(argv)  # warm the file-system cache: the first run after an install reads .pyc files from disk
        runs = [run_once(argv) for _ in range(args.repeats)]
        walls = [wall for wall, _ in runs]
        best = min(runs)
        print(f"{label:<16} {best[0]:>8.2f} {statistics.median(walls):>9.2f} {best[1]:>7.2f}")


if __name__ == "__main__":
    main()
