"""Fault injection: planted pickles, damaged files, concurrent writers on one cache, kills mid-write.

Every file modelrank reads back from the cache or a user path is planted with a pickle whose ``__reduce__``
would create a marker directory: the marker must never appear, and the user gets a one-line error or a
recomputation instead of a traceback.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modelrank.cache import FeatureStore
from modelrank.errors import InvalidInputError
from modelrank.extraction import extract, load_features
from modelrank.features import FeatureSet
from modelrank.finetune.full import FullConfig, finetune_full
from modelrank.metrics import METRICS, compute_metric
from modelrank.metrics.base import Interval, check_parameters
from modelrank.models import read_state_dict

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "random:test_resnet"
EXTRACT = dict(limit=40, chunk_size=8, batch_size=8, workers=0)
TINY_TRAINING = FullConfig(epochs=1, batch_size=16, lr=0.05, per_class=8, train_stages=1, patience=5, seed=0,
                           input_size=32)


class Payload:
    """Unpickling this calls os.mkdir(marker): proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a planted pickle ran"


def torch_payload(marker: Path, **extra) -> bytes:
    buffer = io.BytesIO()
    torch.save({**extra, "evil": Payload(marker)}, buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- planted pickles
def test_planted_progress_and_weights_of_a_finetuning_run_do_not_run(tmp_path, marker):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "progress.pt").write_bytes(torch_payload(marker, key="anything"))
    with pytest.warns(UserWarning, match="unreadable fine-tuning progress"):
        first = finetune_full("random:test_resnet", "source/animals-a", config=TINY_TRAINING, checkpoint_dir=folder)
    # A finished run whose weights were replaced is trained again, never handed on.
    (folder / "weights.pt").write_bytes(torch_payload(marker))
    with pytest.warns(UserWarning, match="not the file recorded"):
        again = finetune_full("random:test_resnet", "source/animals-a", config=TINY_TRAINING, checkpoint_dir=folder)
    assert again.history == first.history
    assert read_state_dict(folder / "weights.pt")  # the retrained weights are a plain state dict again
    (folder / "weights.pt").write_bytes(torch_payload(marker))
    with pytest.raises(InvalidInputError, match="cannot read weights"):
        read_state_dict(folder / "weights.pt")  # what `extract -m ARCH@weights.pt` and zoo models read


def test_planted_learner_state_does_not_run(tmp_path, marker, cli):
    from modelrank.spider import load_learner

    folder = tmp_path / "learner"
    folder.mkdir()
    saved = _saved_learner(tmp_path / "saved")
    (folder / "learner.json").write_text((saved / "learner.json").read_text())
    np.savez(folder / "state.npz", evil=np.array([Payload(marker)], dtype=object))  # an object array is a pickle
    with pytest.raises(InvalidInputError, match="state.npz is not the one learner.json was saved with"):
        load_learner(folder)
    # Without the checksum (a learner.json written before it, or forged), np.load itself refuses the pickle.
    meta = json.loads((saved / "learner.json").read_text())
    del meta["state_sha256"]
    (folder / "learner.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="cannot read state.npz"):
        load_learner(folder)
    code, out, err = cli("spider", "rank", str(folder), "t1")
    assert code == 2 and "cannot read state.npz" in err and "Traceback" not in err


def test_a_save_interrupted_over_an_older_learner_is_refused(tmp_path, cli):
    """save() renames state.npz, then learner.json: stopped between the two over an older learner, the folder held
    the new arrays with the old JSON, which loaded whenever the shapes agreed (here: the same records, another
    learner's arrays)."""
    from modelrank.spider import Records, load_learner, make_learner

    table = pd.DataFrame([(f"t{j}", f"m{i}", 0.5 + 0.1 * i * (-1) ** j) for i in range(3) for j in range(4)],
                         columns=["dataset", "model", "accuracy"])
    folder = make_learner("model_prior").fit(Records(table)).save(tmp_path / "learner")
    old_json = (folder / "learner.json").read_bytes()
    changed = table.assign(accuracy=table["accuracy"][::-1].to_numpy())
    make_learner("model_prior").fit(Records(changed)).save(folder)
    assert load_learner(folder).accuracy.tolist() != load_learner(_saved_learner(tmp_path / "x")).accuracy.tolist()
    (folder / "learner.json").write_bytes(old_json)  # the rename of the new JSON never happened
    code, out, err = cli("spider", "rank", str(folder), "t1")
    assert code == 2 and "state.npz is not the one learner.json was saved with" in err and err.count("\n") == 1


def test_planted_label_embedding_cache_is_recomputed(cache_dir, marker, monkeypatch):
    import modelrank.text as text

    texts = ["cat", "dog"]
    path = text._cache_path(texts, text.DEFAULT_TEXT_ENCODER)
    path.parent.mkdir(parents=True)
    np.save(path, np.array([Payload(marker), 1], dtype=object), allow_pickle=True)
    fresh = np.eye(2, 4)
    monkeypatch.setattr(text, "_embed", lambda texts, encoder: fresh)
    with pytest.warns(UserWarning, match="label-embedding cache .* unreadable"):
        assert np.array_equal(text.encode_texts(texts), fresh)
    assert np.array_equal(np.load(path, allow_pickle=False), fresh)  # the recomputed embeddings replaced it


def test_planted_feature_files_do_not_run(cache_dir, tmp_path, marker, cli):
    extract([TINY_MODEL], "digits", "train", **EXTRACT)
    store = FeatureStore(cache_dir)
    (folder, manifest), = list(store.entries())
    before = load_features(TINY_MODEL, "digits", "train", limit=40, extract_missing=False)
    (folder / "chunk-00002.parquet").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.warns(UserWarning, match="chunk-00002.parquet is corrupt"):
        after = load_features(TINY_MODEL, "digits", "train", **EXTRACT)
    assert np.array_equal(before.features, after.features)
    npz = tmp_path / "evil.npz"
    np.savez(npz, features=np.array([Payload(marker)], dtype=object), labels=np.zeros(1))
    code, out, err = cli("score", "--features", str(npz), "--metric", "logme")
    assert code == 2 and "evil.npz" in err and "Traceback" not in err


def test_packaged_pickle_reader_refuses_foreign_globals(marker):
    from modelrank.data.packaged import _ArrayUnpickler

    with pytest.raises(InvalidInputError, match="refusing to unpickle"):
        _ArrayUnpickler(io.BytesIO(pickle.dumps(Payload(marker)))).load()
    assert np.array_equal(_ArrayUnpickler(io.BytesIO(pickle.dumps(np.arange(3)))).load(), np.arange(3))


# ------------------------------------------------------------------------------------------------ records
def _record(i: int, dataset: str = "d", value: float = 0.5) -> dict:
    from modelrank.finetune.records import make_record

    return make_record(dataset=dataset, model=f"m{i}", protocol="linear", params={"i": i}, metric="accuracy",
                       selected={"C": 1.0}, val_metric=value, test_metric=value, n_train=1, n_val=1, n_test=1,
                       iterations=1, seconds=0.1, val_curve=[value])


def _append_many(cache: str, worker: int, count: int) -> None:
    from modelrank.finetune.records import append_record

    for i in range(count):
        append_record(_record(worker * 1000 + i), cache)


def _compact_repeatedly(cache: str, times: int) -> None:
    from modelrank.finetune.records import compact_records

    for _ in range(times):
        compact_records(cache)


def test_concurrent_appends_and_compactions_lose_nothing(tmp_path, monkeypatch):
    import multiprocessing

    import modelrank.finetune.records as records

    monkeypatch.setattr(records, "AUTO_COMPACT_PARTS", 7)  # appends also fold parts, racing each other
    cache = str(tmp_path / "cache")
    records.append_record(_record(999_999), cache)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(cache, w, 12)) for w in range(8)]
    workers.append(context.Process(target=_compact_repeatedly, args=(cache, 6)))
    for process in workers:
        process.start()
    seen = []
    while any(p.is_alive() for p in workers):  # readers during the writes never fail and never go backwards
        seen.append(len(records.read_records(cache)))
    for process in workers:
        process.join()
        assert process.exitcode == 0
    table = records.read_records(cache)
    assert len(table) == 8 * 12 + 1 and table["key"].is_unique
    assert seen == sorted(seen)
    assert records.compact_records(cache)["records"] == 8 * 12 + 1
    assert not list(records.records_parts_dir(cache).iterdir())


def test_records_keep_a_legacy_table_replace_by_key_and_remove(tmp_path):
    from modelrank.finetune.records import (
        RECORD_COLUMNS, append_record, compact_records, read_records, records_path, remove_records)

    cache = tmp_path / "cache"
    cache.mkdir()
    legacy = pd.DataFrame([_record(i, dataset="old") for i in range(3)])[RECORD_COLUMNS]
    legacy.to_parquet(records_path(cache), index=False)  # a table written by an earlier version
    append_record(_record(1, dataset="old", value=0.9), cache)  # a forced rerun of a recorded key
    append_record(_record(7, dataset="new"), cache)
    table = read_records(cache)
    assert len(table) == 4 and table.set_index("model").loc["m1", "test_metric"] == 0.9
    assert compact_records(cache) == {"records": 4, "parts": 2}
    assert read_records(cache).equals(table)
    assert len(remove_records(cache, dataset="old", dry_run=True)) == 3 and len(read_records(cache)) == 4
    assert sorted(remove_records(cache, dataset="old")["model"]) == ["m0", "m1", "m2"]
    assert list(read_records(cache)["model"]) == ["m7"]
    with pytest.raises(InvalidInputError, match="say which records"):
        remove_records(cache)


def test_records_rm_removes_only_the_records_it_listed(tmp_path, cli, monkeypatch):
    """A record a running job writes while `records rm` waits for its yes matches the filter, but was never listed:
    it was removed with the others."""
    import modelrank.cli.finetune as finetune_cmd
    from modelrank.finetune.records import append_record, read_records

    cache = str(tmp_path / "cache")
    append_record(_record(0, dataset="exp"), cache)

    def a_job_writes_while_the_user_reads(question, refusal):
        append_record(_record(1, dataset="exp"), cache)
        return True

    monkeypatch.setattr(finetune_cmd, "confirmed", a_job_writes_while_the_user_reads)
    code, out, err = cli("records", "rm", "-d", "exp", "--cache-dir", cache)
    assert code == 0 and "removed 1 record(s)" in err and "|m0|" in out and "|m1|" not in out, (out, err)
    assert list(read_records(cache)["model"]) == ["m1"]


def _ctrl_c_at(monkeypatch, target, name: str, at: int) -> None:
    """A real SIGINT, as from the terminal, at the ``at``-th call of ``target.name`` (of a run file's unlink)."""
    import signal

    original, calls = getattr(target, name), []

    def wrapper(*args, **kwargs):
        if name != "unlink" or args[0].name.startswith("part-"):
            calls.append(name)
            if len(calls) == at:
                os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def test_records_compact_interrupted_finishes_the_table_first(tmp_path, cli, monkeypatch):
    from modelrank.finetune.records import append_record, read_records, records_parts_dir

    cache = str(tmp_path / "cache")
    for i in range(3):
        append_record(_record(i), cache)
    _ctrl_c_at(monkeypatch, Path, "unlink", 2)
    code, out, err = cli("records", "compact", "--cache-dir", cache)
    monkeypatch.undo()
    assert code == 130 and err == "interrupted: no record was changed (a compaction moves them into one table); " \
        "rerun to compact\n", err
    assert len(read_records(cache)) == 3 and not list(records_parts_dir(cache).glob("part-*"))


@pytest.mark.parametrize("when", ["reading", "deleting"])
def test_records_rm_interrupted_says_what_was_kept_and_a_rerun_finishes(tmp_path, cli, monkeypatch, when):
    """A Ctrl-C while `records rm` deleted the run files, after it had rewritten the table, said "nothing was written"
    while it left one listed record removed and brought the other back; before the rewrite nothing is removed."""
    import modelrank.finetune.records as records

    cache = str(tmp_path / "cache")
    for i in range(4):
        records.append_record(_record(i, dataset="exp" if i % 2 else "keep"), cache)
    if when == "deleting":  # the table is written; the second of the 4 run files is being deleted
        _ctrl_c_at(monkeypatch, Path, "unlink", 2)
    else:  # the records are read again under the lock (the first read listed them)
        _ctrl_c_at(monkeypatch, records, "_snapshot", 2)
    code, out, err = cli("records", "rm", "-d", "exp", "--yes", "--cache-dir", cache)
    monkeypatch.undo()
    left = sorted(records.read_records(cache)["model"])
    assert code == 130 and out.count("|linear|") == 2 and err.count("\n") == 1, (code, err)
    if when == "deleting":
        assert err == "interrupted: the 2 record(s) were removed before stopping; every other record is kept\n"
        assert left == ["m0", "m2"] and not list(records.records_parts_dir(cache).glob("part-*"))
    else:
        assert err == "interrupted: nothing was removed: the 2 listed record(s) are kept; rerun to remove them\n"
        assert left == ["m0", "m1", "m2", "m3"]
    code, out, err = cli("records", "rm", "-d", "exp", "--yes", "--cache-dir", cache)
    assert code == 0 and sorted(records.read_records(cache)["model"]) == ["m0", "m2"]
    assert ("removed 2 record(s)" if when == "reading" else "0 record(s) match") in err, err


def test_damaged_records_tables_get_one_line_errors(tmp_path, cli):
    from modelrank.finetune.records import (append_record, compact_records, read_records, records_parts_dir,
                                            records_path)

    cache = tmp_path / "cache"
    cache.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(records_path(cache))
    with pytest.raises(InvalidInputError, match="is not a records table"):
        read_records(cache)
    records_path(cache).unlink()
    records_path(cache).mkdir()
    with pytest.raises(InvalidInputError, match="is not a file"):
        append_record(_record(1), cache)
    code, out, err = cli("records", "ls", "--cache-dir", str(cache))
    assert code == 2 and "is not a file" in err and "Traceback" not in err
    records_path(cache).rmdir()
    append_record(_record(1), cache)
    part, = records_parts_dir(cache).iterdir()
    part.write_bytes(part.read_bytes()[:50])
    append_record(_record(2), cache)
    # A damaged part blocked every records command and every finetune: it is skipped with a warning naming it, its
    # run counts as not done, the file stays, and a compaction folds the readable parts only.
    with pytest.warns(UserWarning, match="cannot read the records file .*part-.*skipped"):
        assert list(read_records(cache)["model"]) == ["m2"]
    code, out, err = cli("records", "ls", "--cache-dir", str(cache), "--format", "csv")
    assert code == 0 and "m2" in out and "m1" not in out and err.count("warning:") == 1, err
    with pytest.warns(UserWarning, match="skipped"):
        assert compact_records(cache) == {"records": 1, "parts": 1}
    assert part.exists()


def test_a_part_folded_into_the_table_while_it_is_read_is_not_lost(tmp_path, monkeypatch):
    # A compaction deleting the part between the reader's check of its existence and of its kind made it "not a
    # file": a reader beside a compaction failed (seen once in CI), and skipping it would hide its records.
    from modelrank.finetune.records import append_record, compact_records, read_records, records_parts_dir

    cache = tmp_path / "cache"
    for i in range(2):
        append_record(_record(i), cache)
    first = sorted(records_parts_dir(cache).iterdir())[0]
    real_is_file, folded = Path.is_file, []

    def is_file(self):
        if self == first and not folded:
            folded.append(True)
            compact_records(cache)  # writes the table, then deletes the parts it folded
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(read_records(cache)["model"]) == ["m0", "m1"] and folded


def test_records_cli_compact_and_rm(tmp_path, cli):
    from modelrank.finetune.records import append_record, read_records

    cache = str(tmp_path / "cache")
    for i in range(3):
        append_record(_record(i, dataset="exp[lr=0.1]" if i else "keep"), cache)
    code, out, err = cli("records", "rm", "-d", "exp[lr=0.1]", "--cache-dir", cache, "--dry-run")
    assert code == 0 and "exp[lr=0.1]|m1|linear" in out and len(read_records(cache)) == 3
    code, out, err = cli("records", "rm", "-d", "exp[lr=0.1]", "--cache-dir", cache)
    assert code == 2 and "--yes" in err and len(read_records(cache)) == 3  # no terminal to confirm on
    code, out, err = cli("records", "rm", "-d", "exp[lr=0.1]", "--cache-dir", cache, "--yes")
    assert code == 0 and "removed 2" in err and list(read_records(cache)["dataset"]) == ["keep"]
    code, out, err = cli("records", "compact", "--cache-dir", cache)
    assert code == 0 and "1 records" in err
    code, out, err = cli("records", "ls", "--cache-dir", cache)
    assert code == 0 and "keep" in out


def test_records_compact_of_a_folder_without_records_leaves_no_lock_file(tmp_path, cli):
    """`records compact` (and `remove_records`) in a cache folder holding no records left `records.parquet.lock`
    behind, alone."""
    from modelrank.finetune.records import append_record, records_parts_dir

    cache = tmp_path / "cache"
    stale = records_parts_dir(cache) / ".part-1.parquet.tmp-dead"  # a killed writer's temporary: still cleaned up
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    code, out, err = cli("records", "compact", "--cache-dir", str(cache))
    assert code == 0 and out == "" and "0 records in the table" in err, err
    assert [p.relative_to(cache).as_posix() for p in cache.rglob("*")] == ["records.parts"]
    from modelrank.finetune.records import remove_records

    assert remove_records(cache, dataset="d").empty  # from Python, without a listing first: no lock either
    assert [p.relative_to(cache).as_posix() for p in cache.rglob("*")] == ["records.parts"]
    append_record(_record(1), cache)
    code, out, err = cli("records", "compact", "--cache-dir", str(cache))
    assert code == 0 and "1 run file(s) folded; 1 records" in err  # with records, the lock guards the table
    assert sorted(p.name for p in cache.iterdir()) == ["records.parquet", "records.parquet.lock", "records.parts"]


# ------------------------------------------------------------------------------------- feature cache
WORKER = """
import json, os, sys, time
from pathlib import Path
from modelrank.extraction import extract
go = Path(sys.argv[1])
while not go.exists():  # start together: every run sees every chunk pending
    time.sleep(0.01)
summary = extract(["random:test_resnet"], "digits", "train", limit=int(sys.argv[2]), chunk_size=8, batch_size=8,
                  workers=0, cache_dir=sys.argv[3])[0]
print(json.dumps({"computed": summary["computed"], "complete": summary["complete"]}))
"""


@pytest.fixture
def one_torch_thread():
    """The worker processes run torch on 1 thread (OMP_NUM_THREADS=1); its convolutions sum in another order on 2
    (features differ by ~6e-8), so this process does too when its features are compared with theirs, whatever
    thread count the earlier tests left."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _start_extract_workers(n: int, cache: Path, go: Path, limit: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(limit), str(cache)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]


JOB_ARRAY = """
import dataclasses, json, multiprocessing, sys
import torch
from modelrank.extraction import extract, load_features
from modelrank.finetune import job_from_features, run_probes

cache, limit, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def job(i, start, results):
    torch.set_num_threads(1)
    start.wait()  # all at once: every job sees every chunk pending and every record missing
    summary = extract(["random:test_resnet"], "digits", "train", limit=limit, chunk_size=8, batch_size=8,
                      workers=0, cache_dir=cache)[0]
    data = load_features("random:test_resnet", "digits", "train", limit=limit, cache_dir=cache, extract_missing=False)
    run_probes([job_from_features(dataclasses.replace(data, model=f"probe{i}"))], cs=[0.1, 1.0], cache_dir=cache)
    results.put((summary["computed"], summary["complete"]))


if __name__ == "__main__":
    # Forked after the imports and before any torch operation: n jobs without n interpreter start-ups.
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(n), context.Queue()
    jobs = [context.Process(target=job, args=(i, start, results)) for i in range(n)]
    for process in jobs:
        process.start()
    outcome = [results.get(timeout=600) for _ in jobs]
    for process in jobs:
        process.join()
    print(json.dumps({"outcome": outcome, "exitcodes": [p.exitcode for p in jobs]}))
"""


def test_a_job_array_of_8_extracts_and_finetunes_loses_nothing_and_matches_one_run(tmp_path, one_torch_thread):
    """8 concurrent processes on one cache: extract one key (sharing its chunks), then each records a probe."""
    from modelrank.finetune import read_records

    limit, n = 64, 8
    reference = load_features(TINY_MODEL, "digits", "train", cache_dir=str(tmp_path / "one"), **{**EXTRACT, "limit": limit})
    shared = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", JOB_ARRAY, str(shared), str(limit), str(n)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["exitcodes"] == [0] * n
    assert all(complete for _, complete in report["outcome"])
    assert sum(computed for computed, _ in report["outcome"]) == limit  # each chunk computed once, by one job
    features = load_features(TINY_MODEL, "digits", "train", cache_dir=str(shared), limit=limit, extract_missing=False)
    assert np.array_equal(features.features, reference.features) and np.array_equal(features.labels, reference.labels)
    assert sorted(read_records(shared)["model"]) == sorted(f"probe{i}" for i in range(n))
    assert not list(shared.rglob("*.claim")) and not list(shared.rglob(".*tmp-*"))


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_mid_extract_resumes_to_identical_features_and_cleans_up(tmp_path, seed, one_torch_thread):
    """kill -9 at a random moment (after a random chunk, plus a random fraction of the next one) leaves a claim and
    possibly a temporary behind: the next run takes the claim over and finishes with the features of one run."""
    import random
    import signal
    import time

    limit = 96
    after_chunk = random.Random(seed).randint(1, 4)  # of 12 chunks: the run is never over when the kill lands
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    process, = _start_extract_workers(1, cache, go, limit)
    go.touch()
    deadline = time.monotonic() + 120
    while not list(cache.rglob(f"chunk-{after_chunk:05d}.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.01))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    folder, = (cache / "features").iterdir()
    done_before = len(list(folder.glob("chunk-*.parquet")))
    assert 0 < done_before < limit // 8, "the kill should land mid-run"
    stale_temporary = folder / ".chunk-00011.parquet.tmp-left-by-a-kill"
    stale_temporary.write_bytes(b"half a chunk")
    os.utime(stale_temporary, (0, 0))
    summary = extract([TINY_MODEL], "digits", "train", cache_dir=str(cache), **{**EXTRACT, "limit": limit})[0]
    assert summary["complete"] and summary["computed"] == limit - 8 * done_before
    assert not stale_temporary.exists() and not list(folder.glob("*.claim"))
    resumed = load_features(TINY_MODEL, "digits", "train", cache_dir=str(cache), limit=limit, extract_missing=False)
    fresh = load_features(TINY_MODEL, "digits", "train", cache_dir=str(tmp_path / "fresh"), **{**EXTRACT, "limit": limit})
    assert np.array_equal(resumed.features, fresh.features)


def test_claims_of_live_runs_are_respected_and_stale_ones_taken_over(cache_dir):
    import time

    from modelrank import cache as cache_module

    store = FeatureStore(cache_dir)
    key = cache_module.FeatureKey("m", "f", "d", "train")
    store.entry_dir(key).mkdir(parents=True)
    assert store.claim_chunk(key, 0) and not store.claim_chunk(key, 0)  # our own live claim holds
    foreign = {"host": "another-host", "pid": 1, "token": "x"}
    store.claim_path(key, 1).write_text(json.dumps(foreign))
    assert store.claimed_elsewhere(key, 1) and not store.claim_chunk(key, 1)  # a live run on another host
    old = time.time() - cache_module.CLAIM_TTL_SECONDS - 1
    os.utime(store.claim_path(key, 1), (old, old))  # ... that stopped refreshing its claim
    assert not store.claimed_elsewhere(key, 1) and store.claim_chunk(key, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.claim_path(key, 2).write_text(json.dumps({**cache_module._owner(), "pid": dead.pid, "token": "y"}))
    assert store.claim_chunk(key, 2)  # a dead owner on this host: taken over at once
    store.release_claim(key, 2)
    assert not store.claim_path(key, 2).exists()


def test_claim_age_is_measured_by_the_file_systems_clock(cache_dir, monkeypatch):
    """A host whose clock runs an hour ahead of the shared file system must not take over a live claim (nor one
    whose clock runs behind keep a dead one): ages come from the file system's own timestamps."""
    import time

    from modelrank import cache as cache_module

    store = FeatureStore(cache_dir)
    key = cache_module.FeatureKey("m", "f", "d", "train")
    store.entry_dir(key).mkdir(parents=True)
    store.claim_path(key, 0).write_text(json.dumps({"host": "another-host", "pid": 1, "token": "x"}))
    real_time = time.time
    monkeypatch.setattr(cache_module.time, "time", lambda: real_time() + 3600)
    assert store.claimed_elsewhere(key, 0) and not store.claim_chunk(key, 0)
    old = real_time() - cache_module.CLAIM_TTL_SECONDS - 1
    os.utime(store.claim_path(key, 0), (old, old))
    monkeypatch.setattr(cache_module.time, "time", lambda: real_time() - 3600)
    assert not store.claimed_elsewhere(key, 0) and store.claim_chunk(key, 0)
    assert [p.name for p in store.entry_dir(key).iterdir()] == ["chunk-00000.claim"]  # no clock probe left


def test_flipped_bytes_are_detected_and_score_recomputes_them(cache_dir, tmp_path, cli):
    args = ["-m", TINY_MODEL, "-d", "digits", "--split", "train", "--limit", "40"]
    code, out, err = cli("extract", *args, "--workers", "0")
    assert code == 0, err

    def logme() -> tuple[float, str]:
        code, out, err = cli("score", *args, "--metric", "logme", "--out", str(tmp_path / "s.csv"))
        assert code == 0, err
        return pd.read_csv(tmp_path / "s.csv")["logme"].item(), err

    before, _ = logme()
    chunk, = cache_dir.rglob("chunk-00000.parquet")
    data = bytearray(chunk.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])  # footer intact
    chunk.write_bytes(bytes(data))
    value, err = logme()
    assert value == before and "chunk-00000.parquet is corrupt (its contents do not match their sha256)" in err
    chunk.write_bytes(chunk.read_bytes()[:300])  # truncated
    value, err = logme()
    assert value == before and "corrupt" in err


@pytest.mark.parametrize("manifest", ["[]", '{"key": 3}', '{"key": {"model": "m"}, "chunk_size": 8}', "\udcff",
                                      "sample ids of text"])
def test_manifest_of_another_shape_is_rebuilt_not_a_traceback(cache_dir, cli, manifest):
    args = ["-m", TINY_MODEL, "-d", "digits", "--split", "train", "--limit", "8"]
    code, out, err = cli("extract", *args, "--workers", "0")
    assert code == 0, err
    path, = cache_dir.rglob("manifest.json")
    if manifest == "sample ids of text":  # the right shape otherwise: `score` read the ids as int64 (exit 1)
        edited = json.loads(path.read_text())
        manifest = json.dumps({**edited, "sample_ids": [str(i) for i in edited["sample_ids"]]})
    path.write_bytes(manifest.encode("utf-8", "surrogateescape"))  # valid JSON of another shape, or not UTF-8
    code, out, err = cli("cache", "ls")
    assert code == 0 and "manifest unreadable" in out, err
    code, out, err = cli("score", *args, "--metric", "knn")
    assert code == 0 and "rebuilding it" in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------- the user's own data
def _image_folder(root: Path, shade: int = 0) -> Path:
    from PIL import Image

    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((12, 12, 3), (60 * c + 20 * i + shade) % 256, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_folder_datasets_are_keyed_by_location_and_contents(tmp_path, cache_dir, monkeypatch):
    opts = dict(batch_size=8, workers=0)
    for project, shade in (("p1", 0), ("p2", 100)):
        _image_folder(tmp_path / project / "data", shade)
    monkeypatch.chdir(tmp_path / "p1")
    first = load_features(TINY_MODEL, "folder:data", "all", **opts)
    monkeypatch.chdir(tmp_path / "p2")  # the same text, another folder: not the first project's features
    second = load_features(TINY_MODEL, "folder:data", "all", **opts)
    assert not np.array_equal(first.features, second.features)
    os.utime(tmp_path / "p2" / "data" / "a" / "0.png", ns=(0, 0))  # a replaced image: its chunk is recomputed
    with pytest.warns(UserWarning, match="images behind cache file .*chunk-00000.parquet changed"):
        load_features(TINY_MODEL, "folder:data", "all", **opts)
    (tmp_path / "p2" / "data" / "b" / "0.png").rename(tmp_path / "p2" / "data" / "b" / "9.png")  # another sample list
    store = FeatureStore(cache_dir)
    (old,) = [folder for folder, manifest in store.entries() if str(tmp_path / "p2") in json.dumps(manifest)]
    claim = old / "chunk-00000.claim"
    claim.write_text(json.dumps({"host": "another-node", "pid": 1}))  # a live run on another copy at this path
    load_features(TINY_MODEL, "folder:data", "all", **opts)
    assert old.is_dir() and len(list(store.entries())) == 3  # its entry stays while it runs
    claim.unlink()  # it finished
    (tmp_path / "p2" / "data" / "b" / "9.png").rename(tmp_path / "p2" / "data" / "b" / "8.png")
    with pytest.warns(UserWarning, match="images or labels of folder:data changed .* it is removed"):
        load_features(TINY_MODEL, "folder:data", "all", **opts)
    assert len(list(store.entries())) == 2  # p1's entry and p2's current one


def test_a_repaired_image_costs_only_its_own_chunk(tmp_path, cache_dir):
    """A corrupt image stops the extraction; once it is repaired (or any image replaced in place), the rerun
    computes only the chunks whose images changed: the cache key covered every image's size and time, so a repair
    threw away every chunk already extracted."""
    from modelrank.data import CorruptImageError

    root = _image_folder(tmp_path / "data")
    broken = root / "b" / "2.png"  # sample 6 of 8: the second chunk of 4
    good = broken.read_bytes()
    broken.write_bytes(b"not a png")

    def run() -> int:
        return extract([TINY_MODEL], f"folder:{root}", "all", chunk_size=4, batch_size=4, workers=0,
                       cache_dir=cache_dir)[0]["computed"]

    with pytest.raises(CorruptImageError, match="2.png"):
        run()
    broken.write_bytes(good)  # repaired
    assert run() == 4  # the first chunk was kept
    os.utime(root / "a" / "1.png", ns=(0, 0))  # replaced in place
    with pytest.warns(UserWarning, match="images behind cache file .*chunk-00000.parquet changed"):
        assert run() == 4
    assert run() == 0


def test_the_entry_of_the_old_images_stays_until_the_new_one_is_complete(tmp_path, cache_dir):
    """A corrupt image added to a folder stopped the run, and the complete entry of the folder as it was had been
    removed as it started: once the image was taken out again, every feature was extracted anew."""
    from PIL import Image

    from modelrank.data import CorruptImageError

    root = _image_folder(tmp_path / "data")
    added = root / "a" / "9.png"

    def run() -> int:
        return extract([TINY_MODEL], f"folder:{root}", "all", chunk_size=4, batch_size=4, workers=0,
                       cache_dir=cache_dir)[0]["computed"]

    assert run() == 8
    added.write_bytes(b"not a png")
    with pytest.raises(CorruptImageError, match="9.png"):
        run()
    added.unlink()
    assert run() == 0  # the folder as it was: still cached
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(added)  # now a good one: the new entry completes ...
    with pytest.warns(UserWarning, match="images or labels of folder:.* changed since .* it is removed"):
        assert run() == 5  # (the chunk of the image that was corrupt and the one after it; the first was kept)
    assert len(list(FeatureStore(cache_dir).entries())) == 1  # ... and only then the old entry goes


def test_sixteen_bit_png_matches_its_eight_bit_copy(tmp_path):
    from PIL import Image

    from modelrank.data.base import open_image

    grey = np.random.default_rng(0).integers(0, 256, (16, 16)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "eight.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    assert np.array_equal(np.asarray(open_image(tmp_path / "sixteen.png")), np.asarray(open_image(tmp_path / "eight.png")))



@pytest.mark.parametrize("pixels, mode, cause", [
    (np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16), "F", "floating-point"),
    (np.arange(256, dtype=np.int32).reshape(16, 16) * 1000, "I", "0..255000, beyond the 16-bit range"),
    (np.arange(256, dtype=np.int32).reshape(16, 16) - 5, "I", "-5..250, beyond the 16-bit range"),
])
def test_pixels_without_an_8_bit_scale_are_refused_in_one_line(tmp_path, pixels, mode, cause):
    """PIL's own RGB conversion made a 0..1 float TIFF black and clipped 32-bit values to white: features of
    images nobody could see, extracted without a word."""
    from PIL import Image

    from modelrank.data.base import CorruptImageError, open_image

    Image.fromarray(pixels, mode).save(tmp_path / "deep.tif")
    with pytest.raises(CorruptImageError, match=f"deep.tif: its .*{cause}"):
        open_image(tmp_path / "deep.tif")
    Image.fromarray((pixels.astype(np.float64) / max(1, pixels.max()) * 65535).clip(0).astype(np.int32), "I").save(
        tmp_path / "in_range.tif")
    assert open_image(tmp_path / "in_range.tif").mode == "RGB"  # 32-bit integers within 0..65535 read as 16-bit



def test_images_are_upright_as_their_exif_orientation_says(tmp_path):
    """A camera's portrait photo is stored landscape with EXIF orientation 6 (rotate 90 degrees clockwise to view):
    it reached the model on its side."""
    from PIL import Image

    from modelrank.data.base import open_image

    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    upright = np.asarray(open_image(tmp_path / "portrait.jpg"))
    assert upright.shape == (40, 20, 3)  # viewed as the camera's viewer shows it
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the stored left half is now the top half
    assert np.asarray(open_image(tmp_path / "plain.jpg")).shape == (20, 40, 3)

def test_very_elongated_images_are_refused_before_decoding(tmp_path):
    """A 6000 x 1 px PNG passes Pillow's decompression-bomb check, but resizing its shorter side for a model took
    1.5 GB: refused in one line naming the file, while 100:1 still loads."""
    from PIL import Image

    from modelrank.data.base import MAX_ASPECT_RATIO, CorruptImageError, open_image

    Image.new("L", (6000, 1)).save(tmp_path / "strip.png")
    with pytest.raises(CorruptImageError, match=r"strip.png: it is 6000 x 1 px, more elongated than 100:1"):
        open_image(tmp_path / "strip.png")
    Image.new("RGB", (2, 2 * MAX_ASPECT_RATIO)).save(tmp_path / "tall.png")
    assert open_image(tmp_path / "tall.png").size == (2, 2 * MAX_ASPECT_RATIO)


# ------------------------------------------------------------------------------------ silent wrong numbers
def _features(tmp_path: Path, name: str, features: np.ndarray, labels: np.ndarray) -> str:
    path = tmp_path / f"{name}.npz"
    np.savez(path, features=features, labels=labels)
    return str(path)


def test_score_all_names_the_data_error_before_the_metrics_of_the_other_task():
    """Regression targets with a NaN under --metric all: the error showed four "supports classification tasks, not
    regression" reasons and cut the NaN one off. (A feature file with a NaN is refused on reading; a FeatureSet
    reaches the metrics.)"""
    from modelrank.scoring import score_feature_sets

    features = np.random.default_rng(0).normal(size=(40, 4))
    targets = features[:, 0] + 0.5
    targets[3] = np.nan
    data = FeatureSet(features=features, labels=targets, model="reg", dataset="custom", task="regression")
    reason = r"logme on custom for 1 model\(s\) \[reg\]: targets contain NaN or inf"
    with pytest.raises(InvalidInputError, match=reason):
        score_feature_sets([data], "all")


def test_score_all_with_every_metric_skipped_is_an_error(tmp_path, cli):
    from modelrank.scoring import score_feature_sets

    labels = np.repeat([0, 1], 10)
    nan = FeatureSet(features=np.full((20, 4), np.nan), labels=labels, model="nan", dataset="custom")
    with pytest.raises(InvalidInputError, match="no metric could score these features.*NaN"):
        score_feature_sets([nan], "all")
    # Named metrics that all fail: one line that says why (no warnings first, no empty reason list).
    constant = _features(tmp_path, "const", np.ones((20, 4)), labels)
    code, out, err = cli("score", "--features", constant, "--metric", "logme,hscore")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "(2 metric/model pair(s) failed): logme on const/custom: features are constant" in err


def test_huge_features_get_a_clear_error_from_every_metric(rng):
    labels = np.repeat(np.arange(3), 20)
    data = FeatureSet(features=rng.normal(size=(60, 6)) * 1e200, labels=labels, model="m", dataset="d",
                      source_probs=rng.dirichlet(np.ones(4), 60))
    for metric in ("logme", "hscore", "nleep", "sfda", "parc", "linear_probe", "gbc", "transrate", "lfc",
                   "pactran_gauss"):
        with pytest.raises(InvalidInputError, match="rescale"):
            compute_metric(metric, data)


def test_nleep_on_large_sparse_features_is_an_input_error_not_a_crash(tmp_path, cli):
    """Sparse (ReLU-like) features of magnitude 1e8: sklearn's mixture fit raised ValueError ("ill-defined empirical
    covariance": its variances lose reg_covar to rounding), which `score` reported as a bug (exit 1)."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    features = np.maximum(rng.normal(size=(60, 4)) + np.eye(3, 4)[labels], 0)
    features[rng.random(features.shape) < 0.7] = 0
    code, out, err = cli("score", "--features", _features(tmp_path, "sparse", features * 1e8, labels), "--metric", "nleep")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "N-LEEP: the Gaussian mixture could not be fitted" in err and "standardise them" in err


def test_every_sample_its_own_class_is_flagged(rng):
    from modelrank.scoring import score_feature_sets

    data = FeatureSet(features=rng.normal(size=(12, 4)), labels=np.arange(12), model="m", dataset="d")
    frame = score_feature_sets([data], ["knn", "hscore"])
    assert any("every one of the 12 samples is its own class" in note for note in frame.attrs["notes"])


def test_evaluate_names_datasets_without_truth_and_reads_blank_cells(tmp_path, cli):
    from modelrank.evaluate.evaluation import evaluate

    truth = pd.DataFrame({"dataset": ["a"] * 3 + ["b"] * 3, "model": ["x", "y", "z"] * 2,
                          "accuracy": [0.1, 0.2, 0.3, 0.3, 0.2, 0.1]})
    scores = pd.DataFrame({"Dataset": ["a"] * 3 + ["b"] * 3 + ["c[1]"] * 3, "Model": ["x", "y", "z"] * 3,
                           "logme": np.arange(9.0), "leep": [1, 2, 3, np.nan, np.nan, np.nan, 1, 2, 3]})
    scores.to_csv(tmp_path / "s.csv", index=False)  # blank cells: metrics skipped by `score --metric all`
    truth.to_csv(tmp_path / "t.csv", index=False)
    ev = evaluate(tmp_path / "s.csv", tmp_path / "t.csv", measures=["kendall"])
    assert any("c[1]" in w and "no ground truth" in w for w in ev.warnings)
    assert any("'leep' has 3 blank" in w for w in ev.warnings)
    code, out, err = cli("evaluate", "--scores", str(tmp_path / "s.csv"), "--truth", str(tmp_path / "t.csv"),
                         "--tau", "kendall")
    assert code == 0, err
    text = out + err
    assert "c[1]" in text  # rich markup must not eat the brackets
    assert "2 of 2" in out and "1 of 1" in out  # the datasets behind each mean: logme 2, leep 1


# ------------------------------------------------------------------------------- tampered inputs, one line
def _saved_learner(tmp_path: Path) -> Path:
    from modelrank.spider import Records, make_learner

    table = pd.DataFrame([(f"t{j}", f"m{i}", 0.5 + 0.1 * i * (-1) ** j) for i in range(3) for j in range(4)],
                         columns=["dataset", "model", "accuracy"])
    return make_learner("model_prior").fit(Records(table)).save(tmp_path / "learner")


@pytest.mark.parametrize("tamper", [
    lambda d: (d / "learner.json").write_text("{truncated"),
    lambda d: (d / "learner.json").write_text("[]"),
    lambda d: (d / "learner.json").write_text(json.dumps({**json.loads((d / "learner.json").read_text()), "models": ["x"]})),
    lambda d: (d / "learner.json").write_text(json.dumps({**json.loads((d / "learner.json").read_text()), "models": ["m0", "m0", "m2"]})),
    lambda d: (d / "learner.json").write_text(json.dumps({**json.loads((d / "learner.json").read_text()), "tasks": ["t1", "t1", "t2", "t3"]})),
    lambda d: (d / "learner.json").write_text(json.dumps({**json.loads((d / "learner.json").read_text()), "config": {"bogus": 1}})),
    lambda d: (d / "learner.json").write_text(json.dumps({**json.loads((d / "learner.json").read_text()), "learner": "nope"})),
    lambda d: (d / "state.npz").write_bytes((d / "state.npz").read_bytes()[:100]),
    lambda d: np.savez(d / "state.npz", model_features=np.zeros(1)),
    lambda d: (d / "state.npz").unlink(),
])
def test_every_tampered_learner_dir_gives_one_line(tmp_path, cli, tamper):
    folder = _saved_learner(tmp_path)
    tamper(folder)
    code, out, err = cli("spider", "rank", str(folder), "t1")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("stats", [{"mean": 0.0, "std": 0.0, "log": False}, {"mean": None, "std": 1.0, "log": False},
                                   {"mean": 0.0, "std": 1.0, "log": "yes"},
                                   {"mean": 0.0, "std": float("nan"), "log": False}],
                         ids=["std0", "mean_null", "log_text", "std_nan"])
def test_tampered_metadata_statistics_of_a_learner_give_one_line(tmp_path, cli, stats):
    """A std of 0 in learner.json passed loading: ranking then divided by zero (a numpy warning line before the error
    line), and a std of NaN gave every task the same ranking from NaN features."""
    from modelrank.spider import Records, make_learner

    table = pd.DataFrame([(f"t{j}", f"m{i}", 0.5 + 0.1 * i * (-1) ** j) for i in range(3) for j in range(4)],
                         columns=["dataset", "model", "accuracy"])
    meta = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0]}, index=[f"t{j}" for j in range(4)])
    folder = make_learner("task_attention").fit(Records(table, task_meta=meta)).save(tmp_path / "learner")
    saved = json.loads((folder / "learner.json").read_text())
    saved["featurizer"]["task_encoder"]["numeric"]["size"] = stats
    (folder / "learner.json").write_text(json.dumps(saved))
    code, out, err = cli("spider", "rank", str(folder), "--meta", "size=2.5")
    assert code == 2 and out == "" and err.count("\n") == 1 and "is damaged or was edited" in err, err


@pytest.mark.parametrize("learner, key, value", [
    ("metadata_lr", "learner/coef", lambda a: np.zeros(a.size + 1)),  # a matmul traceback, exit 1
    ("metadata_lr", "learner/coef", lambda a: np.full_like(a, np.inf)),  # a numpy warning line, then the error
    ("model_prior", "learner/prior", lambda a: np.full_like(a, np.nan)),  # "no ranking", exit 0, from an edit
    ("model_prior", "accuracy", lambda a: np.where(np.isnan(a), a, np.inf)),
])
def test_edited_learned_arrays_of_a_learner_give_one_line(tmp_path, cli, learner, key, value):
    from modelrank.spider import Records, make_learner

    table = pd.DataFrame([(f"t{j}", f"m{i}", 0.5 + 0.1 * i * (-1) ** j) for i in range(3) for j in range(4)
                          if (i, j) != (2, 3)], columns=["dataset", "model", "accuracy"])  # one NaN: a missing record
    models = pd.DataFrame({"size": [1.0, 5.0, 2.0]}, index=["m0", "m1", "m2"])
    folder = make_learner(learner).fit(Records(table, model_meta=models)).save(tmp_path / "learner")
    code, _, _ = cli("spider", "rank", str(folder), "t1")
    assert code == 0  # the NaN of the missing record is no damage
    with np.load(folder / "state.npz") as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays[key] = value(arrays[key])
    np.savez(folder / "state.npz", **arrays)
    saved = json.loads((folder / "learner.json").read_text())
    del saved["state_sha256"]  # forged: the checksum would refuse it otherwise
    (folder / "learner.json").write_text(json.dumps(saved))
    code, out, err = cli("spider", "rank", str(folder), "t1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "is damaged or was edited" in err, err


def test_a_learner_of_the_pickled_format_asks_to_be_retrained_and_is_never_unpickled(tmp_path, cli, monkeypatch):
    """Format 1 was learner.json + state.pt (a torch pickle): without a state.npz it said "no saved learner"."""
    import pickle

    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "learner.json").write_text(json.dumps({"format": 1, "learner": "model_prior", "config": {}}))
    (folder / "state.pt").write_bytes(pickle.dumps({"prior": [1.0, 2.0]}))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    code, out, err = cli("spider", "rank", str(folder))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "saved learner format 1 is not supported (expected 2); retrain it" in err


def test_bad_command_inputs_give_one_line(tmp_path, cli):
    folder = _saved_learner(tmp_path)
    header_only = tmp_path / "h.csv"
    header_only.write_text("dataset,model,accuracy\n")
    images = tmp_path / "images.csv"
    images.write_text("path,label\n")
    gap = tmp_path / "gap.csv"
    gap.write_text("path,label\na.png,cat\n,dog\n")  # Path(nan) was a TypeError (exit 1)
    one_task = tmp_path / "one.csv"
    one_task.write_text("dataset,model,accuracy\nt1,m1,0.5\nt1,m2,0.6\n")
    cases = [
        # the fold's learner had nothing to fit: "no task has records for 2 or more models", though t1 has two
        (["spider", "eval", str(one_task), "--learners", "model_prior"], "trains on the tasks outside each fold; without t1"),
        (["extract", "-m", ",", "-d", "digits"], "no model given"),
        (["extract", "-m", "random:test_resnet", "-d", f"csv:{gap}"], "column path has 1 blank cell(s)"),
        (["spider", "rank", str(folder), "t1", "--observed", "m1=abc"], "must be a number"),
        (["spider", "eval", str(header_only)], "no records"),
        (["spider", "eval", str(header_only), "--folds", "0"], "'--folds'"),  # before the records are read
        (["extract", "-m", "random:test_resnet", "-d", f"folder:{header_only}"], "is a file; folder:PATH takes a folder"),
        (["extract", "-m", "random:test_resnet", "-d", f"csv:{images}"], f"csv:{images}/all is empty"),  # not /None
    ]
    for args, message in cases:
        code, out, err = cli(*args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


@pytest.mark.parametrize("damage, message", [
    (b"", "is empty"),
    (b"\x00\xff\xfe binary, not text \x80", "cannot parse"),
    ("dataset,model,accuracy\nt1,m1,0.5\n".encode("latin-1") + b"t1,caf\xe9,0.6\n", "not UTF-8 text"),
    (None, "is a directory"),
    # pandas renamed the second column "accuracy.1": a method of its own in a scores table, ignored in the others
    (b"dataset,model,path,label,accuracy,accuracy\nt1,m1,a.png,0,0.5,0.7\n", "has the column 'accuracy' more than once"),
])
def test_damaged_user_csv_files_give_one_line(tmp_path, cli, damage, message):
    path = tmp_path / "user.csv"
    if damage is None:
        path.mkdir()
    else:
        path.write_bytes(damage)
    records = tmp_path / "records.csv"
    records.write_text("dataset,model,accuracy\nt1,m1,0.5\nt1,m2,0.6\nt2,m1,0.4\nt2,m2,0.3\n")
    for args in (["extract", "-m", TINY_MODEL, "-d", f"csv:{path}"],
                 ["spider", "train", str(path), "--out", str(tmp_path / "l"), "--learner", "model_prior"],
                 ["spider", "train", str(records), "--out", str(tmp_path / "l"), "--learner", "model_prior",
                  "--task-meta", str(path)],
                 ["evaluate", "--scores", str(path), "--truth", str(records)],
                 ["evaluate", "--scores", str(records), "--truth", str(path)]):
        code, out, err = cli(*args)
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_damaged_compressed_csv_files_give_one_line_not_an_interruption(tmp_path, cli, suffix):
    """pandas decompresses by suffix: a truncated file raised EOFError, which Typer reported as an interruption
    (exit 130, "nothing was written"), and a damaged .gz/.bz2 an OSError taken for a bug (exit 1)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    text = b"dataset,model,accuracy\n" + b"".join(b"t%d,m%d,0.%d\n" % (i % 3, i, i % 10) for i in range(200))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("records.csv", text)
    packed = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zip": lambda _: buffer.getvalue()}
    whole = packed[suffix](text)
    for name, data in (("truncated", whole[: len(whole) // 2]), ("garbage", b"\x89 not compressed at all " * 20)):
        path = tmp_path / f"{name}.csv{suffix}"
        path.write_bytes(data)
        for args in (["evaluate", "--scores", str(path), "--truth", str(path)],
                     ["spider", "train", str(path), "--out", str(tmp_path / "l"), "--learner", "model_prior"]):
            code, out, err = cli(*args)
            assert code == 2 and "damaged or truncated compressed file" in err and err.count("\n") == 1, (args, err)


def test_empty_or_foreign_weight_files_give_one_line(tmp_path, cli):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(b"garbage, not a torch file")
    for path, message in ((empty, "is empty"), (foreign, "not a torch file of plain tensors")):
        code, out, err = cli("extract", "-m", "test_resnet", "--checkpoint", str(path), "-d", "digits", "--limit", "8")
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert "weights_only" not in err  # torch's advice to load with weights_only=False would run the file's code


def test_a_flipped_bit_in_a_torch_files_tensor_bytes_is_refused(tmp_path, cli):
    """torch's zip reader does not check the CRC-32 of the members: the damaged file loaded as other weights."""
    weights = torch.arange(256, dtype=torch.float32)
    path = tmp_path / "w.pth"
    torch.save({"w": weights}, path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(weights.numpy().tobytes())
    assert at > 0
    data[at + 100] ^= 0x01
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(bytes(data))
    assert torch.equal(read_state_dict(path)["w"], weights)
    with pytest.raises(InvalidInputError, match="fail their CRC-32 check"):
        read_state_dict(damaged)
    code, out, err = cli("extract", "-m", "test_resnet", "--checkpoint", str(damaged), "-d", "digits", "--limit", "8")
    assert code == 2 and "CRC-32" in err and err.count("\n") == 1, err


def test_a_flipped_bit_in_fine_tuning_progress_starts_the_run_over(tmp_path):
    """A damaged progress.pt (bit rot in a shared cache) resumed the run on other weights without a word."""
    from modelrank.finetune.full import _load_progress

    weights = torch.arange(256, dtype=torch.float32)
    path = tmp_path / "progress.pt"
    torch.save({"key": "run", "model": {"w": weights}}, path)
    assert torch.equal(_load_progress(path, "run")["model"]["w"], weights)
    data = bytearray(path.read_bytes())
    data[bytes(data).find(weights.numpy().tobytes()) + 100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unreadable fine-tuning progress .*CRC-32"):
        assert _load_progress(path, "run") is None


def test_constant_accuracies_give_documented_nan_not_a_traceback():
    from modelrank.spider import Records, make_learner
    from modelrank.spider.protocols import evaluate as evaluate_learner
    from modelrank.spider.protocols import task_folds

    table = pd.DataFrame([(f"t{j}", f"m{i}", 0.5) for i in range(3) for j in range(4)],
                         columns=["dataset", "model", "accuracy"])
    records = Records(table)
    # task attention is also the base of graph and Model Spider, which failed through it
    result = evaluate_learner(lambda: make_learner("task_attention"), records, "cold_start",
                              task_folds(records, "task", None), 3, 0)
    assert result.summary()["n"].sum() == 0  # no task has a ranking to measure: nothing is averaged


def test_empty_validation_split_and_damaged_zoo_manifest_and_weights(tmp_path, cache_dir, cli):
    from modelrank.zoo.registry import manifest_path, read_manifest, register_zoo_models

    with pytest.raises(InvalidInputError, match="0 for validation"):
        finetune_full("random:test_resnet", "digits", config=FullConfig(per_class=2, input_size=32))
    path = manifest_path("ci")
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.warns(UserWarning, match="not a zoo manifest"):
        assert read_manifest("ci") == {"preset": "ci", "models": {}}
    path.write_text(json.dumps({"preset": "ci", "models": {"zoo/ci/x": {"name": "zoo/ci/x"}}}))
    with pytest.warns(UserWarning, match="record of zoo/ci/x is damaged"):
        assert register_zoo_models() == []
    (path.parent / "x").mkdir()
    (path.parent / "x" / "weights.pt").write_bytes(b"garbage, not the trained weights")
    record = {"name": "zoo/ci/x", "arch": "test_resnet", "base": "random:test_resnet", "family": "resnet",
              "pretraining": "p", "source_dataset": "digits", "source_accuracy": 0.9, "input_size": 32,
              "num_classes": 10, "weights": "x/weights.pt", "sha256": "0" * 16, "zoo_preset": "ci"}
    path.write_text(json.dumps({"preset": "ci", "models": {"zoo/ci/x": record}}))
    code, out, err = cli("extract", "-m", "zoo/ci/x", "-d", "digits", "--limit", "8")
    assert code == 2 and "does not match the sha256 in the zoo manifest" in err and "Traceback" not in err


def test_damaged_text_encoder_folder_is_one_line(tmp_path):
    pytest.importorskip("transformers")
    from modelrank.errors import MissingResourceError
    from modelrank.text import encode_texts

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(MissingResourceError, match="cannot load text encoder"):
        encode_texts(["a", "b"], str(tmp_path), cache=False)


def test_user_text_with_brackets_is_printed_as_typed(tmp_path, cli):
    labels = np.repeat([0, 1], 10)
    rng = np.random.default_rng(0)
    folder = tmp_path / "exp[lr=0.1]"
    folder.mkdir()
    a = _features(folder, "resnet[a]", rng.normal(size=(20, 3)), labels)
    b = _features(folder, "resnet[b]", rng.normal(size=(20, 3)), labels)
    code, out, err = cli("score", "--features", a, "--features", b, "--metric", "knn")
    assert code == 0 and "resnet[a]" in out and "resnet[b]" in out, out
    code, out, err = cli("score", "--features", str(folder / "missing.npz"), "--metric", "knn")
    assert code == 2 and "exp[lr=0.1]/missing.npz" in err
    code, out, err = cli("score", "--features", str(folder), "--metric", "knn")
    assert code == 2 and "exp[lr=0.1] is a directory; give the .npz or .parquet file" in err


# ------------------------------------------------------------------------------ degenerate metric inputs
PER_MODEL_METRICS = sorted(entry.name for entry in METRICS if not entry.obj.zoo_level)
REGRESSION_METRICS = sorted(entry.name for entry in METRICS if "regression" in entry.obj.tasks)


def _metric_inputs(labels, features=None, task="classification") -> FeatureSet:
    """A small FeatureSet with every input a metric may need (3 classes of 10, 4-d features, 5 source classes)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)) + np.eye(3, 4)[np.arange(30) % 3] if features is None else features
    return FeatureSet(features=x, labels=labels, task=task, source_probs=rng.dirichlet(np.ones(5), 30),
                      class_names=["cat", "dog", "owl"], model="m", dataset="d")


@pytest.mark.parametrize("name", PER_MODEL_METRICS)
def test_labels_that_do_not_sort_are_refused_by_every_metric(name):
    mixed = np.array(["a", 1, 2.5], dtype=object)[np.arange(30) % 3]  # np.unique raised TypeError
    with pytest.raises(InvalidInputError, match="all numbers or all text"):
        compute_metric(name, _metric_inputs(mixed))


@pytest.mark.parametrize("name", PER_MODEL_METRICS)
def test_complex_labels_are_refused_by_every_metric(name):
    complex_labels = (np.arange(30) % 3) + 0j  # np.unique sorted them into three classes as if they were numbers
    with pytest.raises(InvalidInputError, match="must be integers or text, got complex128"):
        compute_metric(name, _metric_inputs(complex_labels))


@pytest.mark.parametrize("name", PER_MODEL_METRICS)
def test_missing_labels_in_an_object_column_are_refused_by_every_metric(name):
    gappy = np.array([0, 1, 2], dtype=object)[np.arange(30) % 3]
    gappy[7] = np.nan  # np.unique made NaN a class of its own and split class 0 in two around it
    with pytest.raises(InvalidInputError, match="1 missing values"):
        compute_metric(name, _metric_inputs(gappy))


@pytest.mark.parametrize("name", REGRESSION_METRICS)
def test_text_regression_targets_are_refused(name):
    text = np.array(["a", "b", "c"])[np.arange(30) % 3]  # float() raised ValueError
    with pytest.raises(InvalidInputError, match="regression targets must be real numbers"):
        compute_metric(name, _metric_inputs(text, task="regression"))


def test_classes_with_too_few_samples_are_named_as_plain_values():
    from modelrank.metrics._checks import as_class_labels

    with pytest.raises(InvalidInputError, match=r"classes \[2\] have fewer"):
        as_class_labels(np.array([0, 0, 1, 1, 2]), 5, min_per_class=2)


def test_ncti_of_models_equal_up_to_rounding_has_no_ranking():
    """The same features with their columns in another order differ in NCTI's terms by rounding (~1e-15 relative);
    the zoo min-max stretched that to the scores 1, 0.5, 0."""
    from modelrank.metrics.base import SaturationWarning, score_zoo

    x = _metric_inputs(np.arange(30) % 3).features
    zoo = [FeatureSet(features=np.ascontiguousarray(columns), labels=np.arange(30) % 3, model=f"m{i}", dataset="d")
           for i, columns in enumerate((x, x[:, [2, 0, 3, 1]], x[:, ::-1]))]
    with pytest.warns(SaturationWarning, match="no ranking"):
        assert score_zoo("ncti", zoo) == {"m0": 0.0, "m1": 0.0, "m2": 0.0}
    # float32 features: float32 products in the PCA put the terms ~1e-8 apart, still rounding (it scored 0, 0.58, 1)
    rng = np.random.default_rng(0)
    y = np.arange(3000) % 10
    x = (rng.normal(size=(3000, 200)) + rng.normal(size=(10, 200))[y] + 5).astype(np.float32)
    zoo = [FeatureSet(features=np.ascontiguousarray(columns), labels=y, model=f"m{i}", dataset="d")
           for i, columns in enumerate((x, x[:, rng.permutation(200)], x[:, ::-1]))]
    with pytest.warns(SaturationWarning, match="no ranking"):
        assert score_zoo("ncti", zoo) == {"m0": 0.0, "m1": 0.0, "m2": 0.0}
    with pytest.raises(InvalidInputError, match="no models"):
        score_zoo("ncti", [])


SCALE_INVARIANT_METRICS = ["emms", "hscore", "hscore_reg", "knn", "lfc", "linear_probe", "parc"]


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e100])
@pytest.mark.parametrize("name", SCALE_INVARIANT_METRICS)
def test_scale_invariant_metrics_keep_their_value_at_extreme_feature_scales(name, scale):
    """Fourth-order sums (squared Gram or covariance entries) overflowed at 1e100 (OverflowError, LAPACK stebz
    failures) and underflowed at 1e-150/1e-300 (wrong values, or "constant features" refusals); the features
    are now rescaled by an exact power of two first."""
    data = _metric_inputs(np.arange(30) % 3)
    expected = compute_metric(name, data)
    data.features = data.features * scale
    assert compute_metric(name, data) == pytest.approx(expected, rel=1e-9)


def test_pca_of_huge_features_is_the_scaled_pca():
    from modelrank.metrics._linalg import pca_project

    x = _metric_inputs(np.arange(30) % 3).features
    for n_dims in (2, None):
        np.testing.assert_allclose(pca_project(x * 1e100, variance=0.8, n_dims=n_dims),
                                   pca_project(x, variance=0.8, n_dims=n_dims) * 1e100, rtol=1e-9)
    np.testing.assert_allclose(pca_project(x.T * 1e100, n_dims=2), pca_project(x.T, n_dims=2) * 1e100, rtol=1e-9)


def _numeric_parameters():
    import inspect

    from modelrank.metrics.base import _interval, _value_kind

    for name in PER_MODEL_METRICS:
        spec = METRICS.get(name)
        for key, parameter in inspect.signature(spec.fn).parameters.items():
            kind = None if key in spec.needs else _value_kind(parameter)
            if kind in ("an integer", "a number"):
                yield name, key, 0 not in _interval(spec, parameter, kind)


def test_every_numeric_metric_parameter_refuses_nan_inf_and_negative_values():
    """Refused by the registry before any work (sklearn, numpy or an overflow raised deep inside before)."""
    data = _metric_inputs(np.arange(30) % 3)
    checked = 0
    for name, key, refuses_zero in _numeric_parameters():
        for bad in ([float("nan"), float("inf"), -1] + ([0] if refuses_zero else [])):
            with pytest.raises(InvalidInputError, match=f"parameter {key} (must be|takes)"):
                compute_metric(name, data, **{key: bad})
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("name,params,message", [
    ("linear_probe", {"folds": 1}, "parameter folds must be a finite number >= 2, not 1"),
    ("linear_probe", {"c": 0.0}, "parameter c must be a finite number > 0, not 0.0"),
    ("nleep", {"covariance_type": "bogus"}, "parameter covariance_type takes one of diag, full, spherical, tied"),
    ("nleep", {"max_fit_samples": 1}, "parameter max_fit_samples must be a finite number >= 2 or None"),
    ("otce_sf", {"max_samples": 2}, "parameter max_samples must be a finite number >= 4 or None"),
    ("sfda", {"confmix_strength": 2.0}, r"parameter confmix_strength must be in \[0, 1\], not 2.0"),
    ("sfda", {"shrinkage": 3.0}, r"parameter shrinkage must be in \[0, 1\] or None, not 3.0"),
    ("ped_sfda", {"step_size": 1e300}, "PED moved classes by nan"),
    ("ped_logme", {"nsigma": 1e300}, "lower step_size"),
    ("ped_nleep", {"source_mean": "x"}, "source_mean must be 4 finite numbers, got str"),
    ("emms", {"encoders": 3}, "encoders must be a text encoder name"),
    ("hscore", {"rcond": 1.0}, r"rcond must be in \[0, 1\)"),
    ("nleep", {"seed": 2**40}, r"seed must be below 2\*\*32"),  # sklearn's RandomState range
    # a step count, not a cap: 10**9 steps ran for days (0.2 s a step at 50k x 1000 probabilities)
    ("pactran_dir", {"n_iter": 10_001}, r"n_iter must be in \[1, 10000\]"),
    ("pactran_gamma", {"n_iter": 10_001}, r"n_iter must be in \[1, 10000\]"),
    # a cap, but with a tol below rounding on N < D features the fixed point never meets it: 10**9 steps were 12 h
    ("logme", {"max_iter": 10_001, "tol": 1e-300}, r"max_iter must be in \[1, 10000\] or None"),
    ("ped_logme", {"max_iter": 10_001}, r"max_iter must be in \[1, 10000\] or None"),
    # with exit_ratio=0 only the step cap ends the simulation of overlapping classes: 10**9 steps ran for hours
    ("ped_gbc", {"steps": 1_001, "exit_ratio": 0.0, "nsigma": 100.0}, r"steps must be in \[0, 1000\]"),
])
def test_metric_parameters_out_of_their_range_are_refused(name, params, message):
    with pytest.raises(InvalidInputError, match=message):
        compute_metric(name, _metric_inputs(np.arange(30) % 3), **params)


@pytest.mark.parametrize("name,params,message", [
    ("linear_probe", {"folds": 1}, "folds must be a finite number >= 2"),
    ("linear_probe", {"c": 0.0}, "c must be a finite number > 0"),
    ("nleep", {"max_fit_samples": 1}, "max_fit_samples must be a finite number >= 2 or None"),
    ("otce_sf", {"max_samples": 2}, "max_samples must be a finite number >= 4 or None"),
    ("sfda", {"confmix_strength": 2.0}, r"confmix_strength must be in \[0, 1\]"),
    ("pactran_dir", {"alpha": 0.0}, "alpha must be a finite number > 0"),
    ("hscore", {"rcond": 1.0}, r"rcond must be in \[0, 1\)"),
    # refused only on a regression task before: `list parameters` said ">= 1" and --set let 1 through to the run
    ("transrate", {"regression_bins": 1}, "regression_bins must be a finite number >= 2"),
])
def test_plain_metric_functions_check_their_own_ranges(name, params, message):
    """The registry checks declared ranges before any work, for the functions called on their own too
    (``register_metric``'s wrapper); a function's own narrower check (H-Score's rcond < 1) still follows."""
    spec, data = METRICS.get(name), _metric_inputs(np.arange(30) % 3)
    arrays = {key: value for key, value in data.inputs().items() if key in spec.needs}
    with pytest.raises(InvalidInputError, match=message):
        spec.fn(**arrays, **params)


def test_declared_ranges_name_parameters_of_the_metric():
    from modelrank.metrics.base import register_metric

    with pytest.raises(ValueError, match=r"unknown parameters \['alhpa'\]"):
        register_metric("never_registered", ranges={"alhpa": "(0, inf)"})(lambda features, labels, alpha=1.0: 0.0)
    with pytest.raises(ValueError, match="not an interval"):
        Interval.parse("0..1")


@pytest.mark.parametrize("name,params", [("knn", {"k": 3}), ("logme", {"max_iter": 11}), ("pactran_dir", {"n_iter": 10}),
                                         ("nleep", {"max_iter": 100, "seed": 1}), ("ped_sfda", {"steps": 6})])
def test_integer_parameters_given_as_whole_floats_are_taken_as_integers(name, params):
    """5.0 passed the registry's kind check, then range(), sklearn or numpy's seeding raised TypeError/ValueError."""
    data = _metric_inputs(np.arange(30) % 3)
    as_floats = {key: float(value) for key, value in params.items()}
    assert compute_metric(name, data, **as_floats) == compute_metric(name, data, **params)



def test_numpy_scalars_are_taken_as_the_numbers_they_stand_for():
    """A parameter read from an array (np.int64), a float32 computation (np.float32) or a comparison (np.bool_) was
    refused as not an integer / number / flag: numpy integers and booleans are not Python ints."""
    data = _metric_inputs(np.arange(30) % 3)
    assert compute_metric("knn", data, k=np.int64(3)) == compute_metric("knn", data, k=3)
    assert compute_metric("logme", data, max_iter=np.int32(5), tol=np.float32(0.01)) == compute_metric(
        "logme", data, max_iter=5, tol=float(np.float32(0.01)))
    checked = check_parameters(METRICS.get("knn"), {"k": np.int64(3)})
    assert type(checked["k"]) is int
    with pytest.raises(InvalidInputError, match="parameter k must be a finite number >= 1, not 0"):
        compute_metric("knn", data, k=np.int16(0))
    with pytest.raises(InvalidInputError, match="parameter k takes an integer, not np.True_"):
        compute_metric("knn", data, k=np.bool_(True))

def _declared_choices():
    return [(entry.name, key, value) for entry in METRICS for key, values in entry.obj.choices.items()
            for value in values]


@pytest.mark.parametrize("name,key,value", _declared_choices())
def test_declared_choices_are_the_values_the_metric_takes(name, key, value):
    """The registry checks text parameters (presets, solver types) before any work; each value it declares runs,
    and any other is refused naming the choices (``--set logme.preset=bogus`` used to pass until the metric ran,
    after the features had been extracted)."""
    data = _metric_inputs(np.arange(30) % 3)
    assert np.isfinite(compute_metric(name, data, **{key: value}))
    with pytest.raises(InvalidInputError, match=f"parameter {key} takes one of .*{value}.*, not 'bogus'"):
        compute_metric(name, data, **{key: "bogus"})


def _listed_parameters():
    from modelrank.metrics.base import metric_parameters

    return [(spec.name, *row) for spec in METRICS for row in metric_parameters(spec.obj)]


@pytest.mark.parametrize("name,key,default,accepts", _listed_parameters())
def test_listed_parameters_are_what_the_registry_enforces(name, key, default, accepts):
    """`modelrank list parameters` says what each --set key takes: the default passes the checks, and for numbers
    the listed lower bound holds exactly (the bound passes, below it is refused), as does "or null"."""
    spec = METRICS.get(name)
    assert check_parameters(spec, {key: default}) == {key: default}
    bound = re.fullmatch(r"(an integer|a number) (>=|>|in) ([^ ,]+|[\[(]\S+, \S+[\])])( \(below 2\*\*32\))?"
                         r"(, or null)?", accepts)
    if bound:
        kind, relation, value = bound.group(1, 2, 3)
        interval = Interval.parse(value) if relation == "in" else Interval(float(value), np.inf, relation == ">=")
        nudge = (lambda v, way: v + way) if kind == "an integer" else (lambda v, way: np.nextafter(v, way * np.inf))
        for end, closed, outwards in ((interval.low, interval.closed_low, -1), (interval.high, interval.closed_high, 1)):
            if np.isinf(end):
                continue
            inside, outside = (end, nudge(end, outwards)) if closed else (nudge(end, -outwards), end)
            if kind == "an integer":
                inside, outside = int(inside), int(outside)
            assert check_parameters(spec, {key: inside}) == {key: inside}
            with pytest.raises(InvalidInputError, match=f"parameter {key} must be "):
                check_parameters(spec, {key: outside})
        if bound.group(5):
            assert check_parameters(spec, {key: None}) == {key: None}
        else:
            with pytest.raises(InvalidInputError, match=f"parameter {key} takes"):
                check_parameters(spec, {key: None})
    elif accepts.startswith("one of "):
        assert set(accepts.removeprefix("one of ").removesuffix(", or null").split(", ")) == set(spec.choices[key])
    else:  # arrays and names the signature's annotation describes
        assert accepts and default is None


def test_optional_parameters_take_none():
    data = _metric_inputs(np.arange(30) % 3)
    assert compute_metric("parc", data, max_samples=None) == compute_metric("parc", data)  # 30 < 500: all anyway
    assert np.isfinite(compute_metric("nleep", data, pca_variance=None, max_pca_dims=None))


@pytest.mark.parametrize("duplicated", [False, True])
def test_parc_does_not_rank_the_rounding_noise_of_tied_dissimilarities(duplicated):
    """Two-entry rows correlate at exactly +-1 and duplicated rows at exactly 1: PARC moved by up to 1.6 (2-d
    features) or 3e-4 (duplicated rows) under a permutation of the samples, as rounding noise split those ties."""
    rng = np.random.default_rng(4)
    labels = np.arange(60) % 5
    features = rng.normal(size=(60, 5 if duplicated else 2)) + 1.5 * rng.normal(size=(5, 5 if duplicated else 2))[labels]
    if duplicated:
        features, labels = np.repeat(features[:20], 3, axis=0), np.repeat(labels[:20], 3)
    scores = {compute_metric("parc", FeatureSet(features=features[order], labels=labels[order]))
              for order in (np.random.default_rng(seed).permutation(60) for seed in range(4))}
    assert len(scores) == 1


FEATURE_METRICS = [name for name in PER_MODEL_METRICS if "features" in METRICS.get(name).needs]


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_boolean_features_are_scored_as_zeros_and_ones(name):
    binary = _metric_inputs(np.arange(30) % 3).features > 0.5  # were refused as "not real numbers"
    binary[:, 0] |= ~binary.any(axis=1)  # no all-zero row (cosine kNN refuses those)
    data = _metric_inputs(np.arange(30) % 3, features=binary)
    as_floats = _metric_inputs(np.arange(30) % 3, features=binary.astype(np.float64))
    assert compute_metric(name, data) == compute_metric(name, as_floats)


@pytest.mark.parametrize("name", REGRESSION_METRICS)
def test_huge_regression_targets_get_the_magnitude_error_from_the_plain_functions_too(name):
    targets = np.linspace(-1, 1, 30) * 1e200  # LogME overflowed and blamed a "degenerate spectrum"
    with pytest.raises(InvalidInputError, match="targets reach magnitude 1e\\+200"):
        METRICS.get(name).fn(_metric_inputs(targets).features, targets, task="regression")


@pytest.mark.parametrize("features", [np.arange(30.0)[:, None], np.outer(np.arange(30.0), [1.0, 2.0, -1.0])])
def test_parc_of_features_along_one_axis_says_so(features):
    """D = 1 or rank-1 features were refused as "constant features?"."""
    with pytest.raises(InvalidInputError, match="vary along 1"):
        compute_metric("parc", _metric_inputs(np.arange(30) % 3, features=features))


def test_logme_of_huge_features_is_that_of_the_features():
    """From ~1e76 LogME's fixed point overflowed: -14.2 for -0.508, with a misleading "interpolate" warning. (Equal
    within LogME's tie tolerance: a target still moving at the 11-iteration cap depends slightly on the scale.)"""
    import warnings

    from modelrank.metrics.base import SaturationWarning
    from modelrank.metrics.resampled import logme_resampled

    data = _metric_inputs(np.arange(30) % 3)
    expected = compute_metric("logme", data)
    huge = data.features * 1e100
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        assert compute_metric("logme", _metric_inputs(np.arange(30) % 3, features=huge)) == pytest.approx(expected, rel=1e-6)
    counts = np.ones((1, 30))
    np.testing.assert_allclose(logme_resampled(huge, np.arange(30) % 3, counts),
                               logme_resampled(data.features, np.arange(30) % 3, counts), rtol=1e-6)


@pytest.mark.parametrize("metric,features", [
    ("cosine", np.random.default_rng(5).normal(size=(60, 1))),  # every distance is 0 or 4: one big tie each
    ("euclidean", np.random.default_rng(6).integers(0, 4, size=(60, 2)).astype(float)),  # a grid: many ties
])
def test_knn_does_not_depend_on_the_sample_order_when_distances_tie(metric, features):
    """Neighbours tied at the k-th distance share its votes (and tied ranks their bonuses); which of them made the k
    nearest was up to the order of the samples, moving kNN accuracy by up to 0.18 under a permutation."""
    labels = np.random.default_rng(7).integers(0, 3, 60)
    scores = {compute_metric("knn", FeatureSet(features=features[order], labels=labels[order]), metric=metric)
              for order in (np.random.default_rng(seed).permutation(60) for seed in range(5))}
    assert len(scores) == 1


def test_knn_splits_a_tied_vote_evenly():
    from modelrank.metrics.probes import knn

    # Sample 0 has two neighbours at distance 1 (classes 1 and 2) for k = 1: half a vote each, a tie between the
    # classes that counts half a correct answer, whatever the sample order and the names of the classes.
    x = np.array([[0.0], [1.0], [-1.0], [20.0], [21.0], [-20.0], [-21.0]])
    y = np.array([2, 1, 2, 1, 1, 2, 2])
    for order in ([0, 1, 2, 3, 4, 5, 6], [0, 2, 1, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1, 0]):
        for names in (y, 3 - y):
            assert knn(x[order], names[order], k=1, metric="euclidean") == pytest.approx(5.5 / 7)  # 1 wrong, 0 tied


def test_infinite_features_are_refused_without_a_numpy_warning():
    import warnings

    from modelrank.metrics._checks import as_features

    features = np.ones((4, 3), dtype=np.float32)
    features[1] = [np.inf, -np.inf, 1.0]  # the row-sum screen computed inf - inf and warned "invalid value"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInputError, match="NaN or inf in 1 of 4 rows"):
            as_features(features)
        assert as_features(np.full((2, 2), 3e38, dtype=np.float32), upcast=False).dtype == np.float32  # sums overflow


def test_error_reasons_are_one_line_even_for_empty_messages():
    """One-line errors quote the first line of the cause; an exception without a message (EOFError()) gave an
    IndexError inside the handler, a traceback instead of the one-line error."""
    from modelrank.errors import error_reason

    assert error_reason(ValueError("bad value\nmore detail")) == "bad value"
    assert error_reason(EOFError()) == "EOFError" and error_reason(OSError("  ")) == "OSError"
    assert error_reason(ValueError("x" * 500)) == "x" * 200 and error_reason(ValueError("x" * 500), 120) == "x" * 120


def test_records_ls_and_rm_take_globs_for_datasets_and_models(tmp_path, cli):
    """`cache rm` took globs, `records ls/rm -d/-m` only exact names: removing a zoo's records meant one model at a
    time. A name of the table wins over the glob it would also be (``exp[lr=0.1]``)."""
    from modelrank.finetune.records import append_record, read_records

    cache = str(tmp_path / "cache")
    for i, (dataset, model) in enumerate([("task/a", "zoo/demo/x"), ("task/b", "zoo/demo/y"), ("task/a", "resnet18"),
                                          ("exp[lr=0.1]", "zoo/demo/x"), ("expl]", "resnet18")]):
        append_record({**_record(i, dataset=dataset), "model": model}, cache)
    code, out, err = cli("records", "ls", "-m", "zoo/demo/*", "-d", "task/*", "--format", "csv", "--cache-dir", cache)
    assert code == 0 and sorted(line.split(",")[1] for line in out.splitlines()[1:]) == ["zoo/demo/x", "zoo/demo/y"]
    code, out, err = cli("records", "rm", "-d", "exp[lr=0.1]", "--yes", "--cache-dir", cache)
    assert code == 0 and "removed 1 record(s)" in err and "expl]" in set(read_records(cache)["dataset"])
    code, out, err = cli("records", "rm", "-m", "zoo/*", "--yes", "--cache-dir", cache)
    assert code == 0 and "removed 2 record(s)" in err and list(read_records(cache)["model"]) == ["resnet18"] * 2
