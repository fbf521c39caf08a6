"""The public-code structures of benchmarks/bench_public.py compute what modelrank computes (else its speed ratios
would compare different work), up to the documented differences of the public code."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_public  # noqa: E402

# name -> (sign of the public value relative to modelrank's, relative tolerance, why it is not tighter)
AGREEMENT = {
    "sfda": (1, 1e-2, "lambda from 3 power iterations instead of the exact largest eigenvalue"),
    "ped_sfda": (1, 1e-2, "the same, on the moved features"),
    "ped_logme": (1, 1e-6, "the 1e-5 epsilons of the public fixed point"),
    "gbc": (1, 1e-5, "float32 class statistics, as TensorFlow keeps them"),
    "leep": (1, 1e-12, "float64 sums in another order"),
    "nce": (1, 1e-12, "the public code adds 1e-20 inside its log"),
    "nce_labels": (1, 1e-12, "the same"),
    "lfc": (1, 1e-5, "float32 Gram matrix"),
    "transrate": (1, 1e-4, "float32 products"),
    "pactran_dir": (-1, 1e-6, "modelrank negates the bound; the public code adds 1e-10 inside its logs"),
    "pactran_gamma": (-1, 1e-6, "the same"),
    "otce": (-1, 1e-6, "modelrank returns -(W + CE)"),
}


@pytest.fixture(scope="module")
def arrays():
    return bench_public.benchmark_arrays(600, 80, 4)


@pytest.mark.parametrize("name", sorted(AGREEMENT))
def test_public_structure_computes_the_same_score(arrays, name):
    ours, public, _, _ = bench_public.PAIRS[name]
    sign, rtol, _ = AGREEMENT[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sign * public(arrays) == pytest.approx(ours(arrays), rel=rtol)


def test_pairs_print_ratios_and_a_reference_too_large_is_reported_not_run(monkeypatch, capsys):
    monkeypatch.setattr(bench_public, "LFC_MAX_N", 100)
    bench_public.main(["--n", "600", "--d", "80", "--c", "4", "--repeat", "1", "--metrics", "emms,knn,lfc",
                       "--clock", "cpu"])
    out = capsys.readouterr().out
    assert "arrays: " in out.splitlines()[0]  # the header says which arrays were timed
    rows = {line.split(" | ")[0][2:]: line for line in out.splitlines() if line.startswith("| ")}
    assert rows["emms"].split(" | ")[3].endswith("x") and rows["knn"].split(" | ")[3].endswith("x")
    assert "not run: two 600 x 600 kernels do not fit in memory" in rows["lfc"]


def test_floors_are_timed_for_the_pairs_that_have_one(capsys):
    bench_public.main(["--n", "600", "--d", "80", "--c", "4", "--repeat", "1", "--metrics", "nce,otce,gbc",
                       "--clock", "cpu", "--floors"])
    lines = capsys.readouterr().out.splitlines()
    assert "| floor s | public / floor |" in lines[2]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[4:] if line.startswith("| ")}
    for name in ("nce", "otce"):  # a floor: its seconds and public / floor
        assert float(rows[name][4]) >= 0 and rows[name][5].endswith("x") and "floor: " in rows[name][6]
    assert rows["gbc"][4:6] == ["-", "-"]  # no floor defined
