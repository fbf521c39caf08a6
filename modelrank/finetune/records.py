"""The records table: one row per fine-tune / probe run, the ground truth that transferability scores are judged by.

Stored as ``records.parquet`` in the cache folder (``--cache-dir``, else ``$MODELRANK_CACHE``, else
``~/.cache/modelrank``). Every append takes a lock file and rewrites the table through a temporary file and a
rename, so a crash never leaves a half-written table and two processes never lose each other's rows.

A record's ``key`` is (dataset, model, protocol, hash of the hyper-parameters): a sweep that finds its key
already recorded skips that run (unless forced), which is how an interrupted sweep resumes.
``export_records`` gives the CSV shape of the public records tables (TransferGraph ``records.csv``: ``model,
finetuned_dataset, <hyper-parameters>, train_runtime, eval_accuracy``), which ``modelrank evaluate --truth`` reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..cache import cache_root
from ..errors import InvalidInputError

RECORDS_FILE = "records.parquet"
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


def read_records(cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """All records (an empty table with the record columns when none were written yet)."""
    path = records_path(cache_dir)
    if not path.exists():
        return pd.DataFrame(columns=RECORD_COLUMNS)
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the records table {path}: {exc}") from exc


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_record(record: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Add ``record`` to the table, replacing any earlier record with the same key (a forced rerun)."""
    missing = [c for c in RECORD_COLUMNS if c not in record]
    if missing:
        raise InvalidInputError(f"record lacks {', '.join(missing)}")
    path = records_path(cache_dir)
    with _locked(path):
        table = read_records(cache_dir)
        table = table[table["key"] != record["key"]]
        row = pd.DataFrame([{c: record[c] for c in RECORD_COLUMNS}])
        table = row if table.empty else pd.concat([table, row], ignore_index=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    return path


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
