"""Every script in examples/ runs offline, as a user would run it, on small sizes.

The Python examples run in-process (runpy, as `python examples/X.py ARGS`), so they share this session's
imports; the Slurm one runs its array tasks as real parallel processes through the local stand-in.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTED = {"rank_image_folder.py", "bring_your_own_features.py", "evaluate_published_scores.py", "learned_ranker.py",
          "slurm_extract.sh", "run_array_locally.sh", "torchrun_extract.sh"}


def run_example(monkeypatch, capsys, tmp_path, name: str, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' scratch folders land in tmp_path
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")} == TESTED


def test_rank_image_folder(monkeypatch, capsys, tmp_path, cache_dir):
    out = run_example(monkeypatch, capsys, tmp_path, "rank_image_folder.py", "--models", "random:test_resnet,random:test_vit",
                      "--demo-per-class", "6", "--metrics", "logme,leep")
    assert "best first" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("random:")]
    assert sorted(row[0] for row in rows) == ["random:test_resnet", "random:test_vit"]
    folder = next(tmp_path.glob("modelrank-folder-*"))
    assert sorted(p.name for p in folder.iterdir()) == ["bear", "bird", "cat"]


def test_bring_your_own_features(monkeypatch, capsys, tmp_path):
    out = run_example(monkeypatch, capsys, tmp_path, "bring_your_own_features.py", "--out-dir", str(tmp_path / "f"),
                      "--samples", "200")
    assert {"pixels", "pca8", "random4"} <= set(out.split())
    written = pd.read_csv(tmp_path / "f" / "scores.csv")  # by the `modelrank score` command the script runs
    assert list(written["Model"]) == ["pixels", "pca8", "random4"]
    assert written[["logme", "hscore", "leep"]].notna().all().all()


def test_evaluate_published_scores_synthetic(monkeypatch, capsys, tmp_path):
    out = run_example(monkeypatch, capsys, tmp_path, "evaluate_published_scores.py")
    close = next(line for line in out.splitlines() if line.startswith("close"))
    unrelated = next(line for line in out.splitlines() if line.startswith("unrelated"))
    assert float(close.split()[-2]) > 0.8 > float(unrelated.split()[-2])  # mean weighted tau


def test_evaluate_published_scores_on_model_spider(monkeypatch, capsys, tmp_path, anchors):
    folder = anchors / "model-spider"
    out = run_example(monkeypatch, capsys, tmp_path, "evaluate_published_scores.py", "--scores",
                      str(folder / "baseline_results.csv"), "--truth", str(folder / "finetune_accuracy.csv"),
                      "--protocol", "model_spider")
    h_score = next(line for line in out.splitlines() if line.startswith("H-Score"))
    assert h_score.split()[1] == "0.328"  # Model Spider's published H-Score on Aircraft


def test_learned_ranker(monkeypatch, capsys, tmp_path):
    out = run_example(monkeypatch, capsys, tmp_path, "learned_ranker.py", "--episodes", "30",
                      "--out", str(tmp_path / "ranker"))
    assert "trained spider on 20 tasks x 8 models" in out and (tmp_path / "ranker" / "learner.json").is_file()
    taus = out.strip().splitlines()[-1]
    learned, prior = float(taus.split("spider ")[1].split(",")[0]), float(taus.rsplit(" ", 1)[1])
    assert learned > prior


def run_extraction_script(tmp_path: Path, script: str, command: str) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Run a shell example with 2 tasks (run_array_locally.sh, torchrun_extract.sh) as a user would: this Python's
    commands first on PATH, a fresh cache, a 24-sample extraction of the tiny test model; skipped without
    ``command`` next to this Python. Returns (its environment, the finished process)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")]),
           "MODELRANK_CACHE": str(tmp_path / "cache"), "MODELS": "random:test_resnet", "DATASET": "digits",
           "SUBSET": "--limit 24", "EXTRACT_ARGS": "--batch-size 8 --workers 0"}
    if shutil.which(command, path=env["PATH"]) is None:
        pytest.skip(f"the {command} command is not installed next to this Python")
    result = subprocess.run(["bash", str(EXAMPLES / script), "2"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return env, result


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_array_runs_locally(tmp_path, monkeypatch):
    """The array tasks run as parallel processes sharing one cache; the entry is then complete, so scoring
    reads it without extracting anything."""
    env, result = run_extraction_script(tmp_path, "run_array_locally.sh", "modelrank")
    assert result.stdout.count("features of digits/train") == 2 and "all 2 array tasks done" in result.stderr

    from modelrank.extraction import load_feature_pairs

    loaded = load_feature_pairs([("random:test_resnet", "digits")], limit=24, cache_dir=env["MODELRANK_CACHE"],
                                extract_missing=False)  # raises if any chunk were missing
    assert loaded["random:test_resnet", "digits"].n_samples == 24

    result = subprocess.run(["bash", str(EXAMPLES / "slurm_extract.sh")], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "run as a job array" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_torchrun_processes_share_one_extraction(tmp_path):
    """torchrun starts 2 real processes (LOCAL_RANK 0 and 1; on this CPU machine both run on the CPU): one claims
    the chunk and computes it, the other waits for it, and both report the entry complete."""
    _, result = run_extraction_script(tmp_path, "torchrun_extract.sh", "torchrun")
    summaries = [line.split() for line in result.stdout.splitlines() if line.startswith("random:test_resnet")]
    assert sorted(row[5] for row in summaries) == ["0", "24"] and all(row[-1] == "yes" for row in summaries)
