"""The records table: one row per fine-tune / probe run, the ground truth that transferability scores are judged by.

Stored in the cache folder (``--cache-dir``, else ``$MODELRANK_CACHE``, else ``~/.cache/modelrank``) as one
table ``records.parquet`` plus ``records.parts/``: every run adds one immutable, uniquely named part file (a
timestamp and a uuid; written to a temporary and renamed), so any number of processes on any number of hosts
append without a lock, without reading the table and in constant time, and a crash never leaves a half-written
record. Readers read the table and the parts as one (a later record of a key replaces an earlier one).
``compact_records`` (``modelrank records compact``, also run automatically every ``AUTO_COMPACT_PARTS`` parts)
folds the parts into the table; ``remove_records`` (``modelrank records rm``) deletes records. Both hold a lock
against each other and delete only the parts they read, oldest first, so concurrent readers and writers never
lose or resurrect a record. A cache written before parts existed is read as it is (its table is the base).

A record's ``key`` is (dataset, model, protocol, hash of the hyper-parameters): a sweep that finds its key
already recorded skips that run (unless forced), which is how an interrupted sweep resumes.
``export_records`` gives the CSV shape of the public records tables (TransferGraph ``records.csv``: ``model,
finetuned_dataset, <hyper-parameters>, train_runtime, eval_accuracy``), which ``modelrank evaluate --truth`` reads.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import io
import json
import os
import platform
import time
import uuid
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from ..cache import atomic_write_bytes, cache_root, remove_stale_temporaries
from ..errors import InvalidInputError, error_reason
from ..interrupts import interrupts_held
from ..registry import GLOB_CHARACTERS

RECORDS_FILE = "records.parquet"
PROTOCOLS = ("linear", "full")
RECORD_COLUMNS = [
    "key", "dataset", "model", "protocol", "metric", "params", "selected", "val_metric", "test_metric",
    "n_train", "n_val", "n_test", "iterations", "seconds", "val_curve", "versions", "time",
]


def records_path(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / RECORDS_FILE


def record_key(dataset: str, model: str, protocol: str, params: dict[str, Any]) -> str:
    """Identity of a run: the same dataset, model, protocol and hyper-parameters give the same key."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{dataset}|{model}|{protocol}|{digest}"


def software_versions() -> dict[str, str]:
    import numpy
    import sklearn

    from .. import __version__

    return {"modelrank": __version__, "python": platform.python_version(), "numpy": numpy.__version__, "sklearn": sklearn.__version__}


PARTS_DIR = "records.parts"
#: An append that finds at least this many parts folds them into the table (when no other process is doing so).
AUTO_COMPACT_PARTS = 256


def records_parts_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / PARTS_DIR


def _part_files(cache_dir: str | os.PathLike | None) -> list[Path]:
    """Part files in write order (their names start with the write time in ns); temporaries are not parts."""
    folder = records_parts_dir(cache_dir)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _read_table_file(path: Path, what: str = "the records table") -> pd.DataFrame:
    if not path.is_file():
        if path.exists():
            raise InvalidInputError(f"{what} {path} is not a file; move it away or restore it")
        # Gone, also between a check of its existence and of its kind (a compaction folded it into the table):
        # that said "is not a file", and a reader failed beside a concurrent compaction.
        raise FileNotFoundError(path)
    try:
        # One open and one read: parquet readers given a path may open it twice (footer, then pages), and a
        # compaction renaming a new table into place between the two mixes two files.
        table = pd.read_parquet(io.BytesIO(path.read_bytes()))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {error_reason(exc)}") from None
    missing = [c for c in RECORD_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(f"{path} is not a records table (no column {', '.join(missing)})")
    return table[RECORD_COLUMNS]


def _read_part(part: Path, frames: list[pd.DataFrame]) -> bool:
    """Append the records of a part file to ``frames``; False, with a warning, for a damaged one. Parts are written
    whole (a temporary renamed), so a damaged one was damaged on disk: it blocked every records command and every
    finetune. Skipped, its run counts as not done (finetune redoes it), and the file stays for a look."""
    try:
        frames.append(_read_table_file(part, "the records file"))
    except InvalidInputError as exc:
        warnings.warn(f"{exc}; skipped: its run counts as not done (finetune redoes it); move the file away",
                      stacklevel=2)
        return False
    return True


def _snapshot(cache_dir: str | os.PathLike | None) -> tuple[pd.DataFrame, list[Path]]:
    """(every record, latest per key; the part files read). Retried when a compaction removes a part mid-read."""
    base = records_path(cache_dir)
    for attempt in range(5):
        parts = _part_files(cache_dir)
        try:
            frames = [_read_table_file(base)] if base.exists() else []
            parts = [part for part in parts if _read_part(part, frames)]
        except FileNotFoundError:  # a part folded into the table between listing and reading: list again
            continue
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=RECORD_COLUMNS), parts
        table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return table.drop_duplicates("key", keep="last").reset_index(drop=True), parts
    raise InvalidInputError(f"the records in {records_path(cache_dir).parent} keep changing while being read; retry")


def read_records(cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """All records, the latest per key (an empty table with the record columns when none were written yet)."""
    return _snapshot(cache_dir)[0]


@contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Exclusive lock ``path.lock`` for the processes that rewrite the table; yields whether it was acquired."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_record(record: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Add ``record`` as a new part file (a later record with the same key, a forced rerun, replaces the earlier
    one when read); returns the part's path."""
    missing = [c for c in RECORD_COLUMNS if c not in record]
    if missing:
        raise InvalidInputError(f"record lacks {', '.join(missing)}")
    folder = records_parts_dir(cache_dir)
    if records_path(cache_dir).exists() and not records_path(cache_dir).is_file():
        raise InvalidInputError(f"the records table {records_path(cache_dir)} is not a file; move it away or restore it")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
    atomic_write_bytes(path, _parquet_bytes(pd.DataFrame([{c: record[c] for c in RECORD_COLUMNS}])))
    if len(_part_files(cache_dir)) >= AUTO_COMPACT_PARTS:
        _rewrite(cache_dir, lambda table: table, blocking=False)
    return path


def compact_records(cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Fold the part files into ``records.parquet``: {"records": rows in the table, "parts": parts folded}."""
    if _never_recorded(cache_dir):
        return {"records": 0, "parts": 0}
    return _rewrite(cache_dir, lambda table: table)


def _never_recorded(cache_dir: str | os.PathLike | None) -> bool:
    """Whether the folder holds neither run files nor a table: then a rewrite has nothing to change, and must not
    take the lock, which would stay behind as the folder's only records file (a lock file is never removed: a
    process already waiting on it would lock the removed file while the next one creates and locks another).
    Stale temporaries of killed writers are cleaned up either way."""
    # Parts listed before the table is looked for: a compaction writes the table before it deletes its parts.
    if _part_files(cache_dir) or records_path(cache_dir).exists():
        return False
    remove_stale_temporaries(records_parts_dir(cache_dir))
    return True


def records_matching(table: pd.DataFrame, *, key: str | None = None, dataset: str | None = None,
                     model: str | None = None, protocol: str | None = None) -> pd.Series:
    """Which rows of a records table match every given filter (None: any): ``dataset`` and ``model`` are exact
    names or globs (``fnmatch``, case-sensitive: ``zoo/demo/*``), as ``cache rm`` takes entry names, a name of the
    table first (``exp[lr=0.1]`` is a dataset, not the glob it would be); ``key`` and ``protocol`` are exact."""
    if protocol is not None and protocol not in PROTOCOLS:  # "Linear" matched nothing: "0 record(s) match", exit 0
        raise InvalidInputError(f"protocol takes {' | '.join(PROTOCOLS)}, not {protocol!r}")
    chosen = pd.Series(True, index=table.index)
    for column, value in (("key", key), ("dataset", dataset), ("model", model), ("protocol", protocol)):
        if value is None:
            continue
        exact = table[column] == value
        if column in ("dataset", "model") and GLOB_CHARACTERS & set(value) and not exact.any():
            exact = table[column].map(lambda name: fnmatch.fnmatchcase(str(name), value)).astype(bool)
        chosen &= exact
    return chosen


def remove_records(
    cache_dir: str | os.PathLike | None = None, *, key: str | None = None, dataset: str | None = None,
    model: str | None = None, protocol: str | None = None, dry_run: bool = False, among: set[str] | None = None,
    on_removed: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """Delete the records matching every given filter (at least one); returns them. ``dry_run``: only return them.
    ``among``: only records with these keys (those listed to a user who confirmed: a matching record written since
    stays). A Ctrl-C while the table and its run files are rewritten takes effect once they agree, the records
    removed; ``on_removed(records)`` is called before it does (to say so)."""
    if key is None and dataset is None and model is None and protocol is None:
        raise InvalidInputError("say which records to remove (a key, dataset, model or protocol)")

    def matching(table: pd.DataFrame) -> pd.Series:
        chosen = records_matching(table, key=key, dataset=dataset, model=model, protocol=protocol)
        return chosen if among is None else chosen & table["key"].isin(among)

    if dry_run or _never_recorded(cache_dir):
        table = read_records(cache_dir)
        return table[matching(table)].reset_index(drop=True)
    removed: list[pd.DataFrame] = []

    def drop(table: pd.DataFrame) -> pd.DataFrame:
        chosen = matching(table)
        removed.append(table[chosen])
        return table[~chosen]

    _rewrite(cache_dir, drop, done=None if on_removed is None else lambda: on_removed(removed[0]))
    return removed[0].reset_index(drop=True)


def _rewrite(cache_dir, change, blocking: bool = True, done: Callable[[], None] | None = None) -> dict[str, int]:
    """Under the lock: write ``change(all records)`` as the table, then delete the parts it includes, oldest
    first (so a reader in between sees, per key, either the new table's row or a part at least as recent), and
    call ``done()``; a Ctrl-C from the table's write to then is held back until after it (``interrupts_held``)."""
    base = records_path(cache_dir)
    with _locked(base, blocking) as acquired:
        if not acquired:
            return {"records": -1, "parts": 0}
        table, parts = _snapshot(cache_dir)
        table = change(table)
        data = _parquet_bytes(table) if parts or base.exists() or len(table) else None
        with interrupts_held():
            if data is not None:
                atomic_write_bytes(base, data)
            for part in parts:
                part.unlink(missing_ok=True)
            if done is not None:
                done()
        remove_stale_temporaries(records_parts_dir(cache_dir))
    return {"records": len(table), "parts": len(parts)}


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


def make_record(
    *, dataset: str, model: str, protocol: str, params: dict[str, Any], metric: str, selected: dict[str, Any],
    val_metric: float, test_metric: float, n_train: int, n_val: int, n_test: int, iterations: int,
    seconds: float, val_curve: list[float],
) -> dict[str, Any]:
    return {
        "key": record_key(dataset, model, protocol, params),
        "dataset": dataset,
        "model": model,
        "protocol": protocol,
        "metric": metric,
        "params": json.dumps(params, sort_keys=True, default=str),
        "selected": json.dumps(selected, sort_keys=True),
        "val_metric": float(val_metric),
        "test_metric": float(test_metric),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "iterations": int(iterations),
        "seconds": float(seconds),
        "val_curve": json.dumps([round(v, 6) for v in val_curve]),
        "versions": json.dumps(software_versions(), sort_keys=True),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


EXPORT_FIXED_COLUMNS = (
    "model", "finetuned_dataset", "protocol", "metric", "selected", "val_metric", "eval_accuracy", "train_runtime",
    "n_train", "n_val", "n_test", "time", "versions",
)


def export_records(records: pd.DataFrame) -> pd.DataFrame:
    """Records in the public records layout: ``model, finetuned_dataset, protocol, metric, <params>, selected,
    val_metric, eval_accuracy (= test metric), train_runtime (s), n_train, n_val, n_test, time, versions``."""
    params = pd.DataFrame([json.loads(p) for p in records["params"]], index=records.index) if len(records) else pd.DataFrame()
    params = params.map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v) if len(params.columns) else params
    params = params.rename(columns=lambda c: f"param_{c}" if c in EXPORT_FIXED_COLUMNS else c)
    head = pd.DataFrame(
        {"model": records["model"], "finetuned_dataset": records["dataset"], "protocol": records["protocol"],
         "metric": records["metric"]}
    )
    tail = pd.DataFrame(
        {"selected": records["selected"], "val_metric": records["val_metric"], "eval_accuracy": records["test_metric"],
         "train_runtime": records["seconds"], "n_train": records["n_train"], "n_val": records["n_val"],
         "n_test": records["n_test"], "time": records["time"], "versions": records["versions"]}
    )
    return pd.concat([head, params, tail], axis=1).reset_index(drop=True)
