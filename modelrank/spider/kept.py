"""The learners and folds `spider eval` has finished, kept in the cache so that an interrupted evaluation resumes.

A held-out evaluation fits each learner once per fold (minutes for the networks on a hundred records, hours on a
large benchmark). Each fold's ``EvalResult`` is written as soon as it is done, to
``<cache>/spider-eval/<key>-fold<i>.parquet``, and the learner's whole result, once complete, to
``<cache>/spider-eval/<key>.parquet`` (its folds' files are then removed): the per-task measures as the table, and
the timings, the left-out tasks and the random state after a fold as JSON schema metadata (nothing is unpickled).
The key is a sha256 of everything the result depends on: the content of the records and their side information
(not their file names), the learner and its options, the protocol, the folds, k, the seed, the weighted-tau
convention and the modelrank version. A rerun of the same command reads what was finished and evaluates the rest;
a damaged or unreadable file counts as missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import __version__
from ..cache import atomic_write_bytes, cache_root
from .protocols import EvalResult
from .records import Records

#: the folder under the cache root
KEPT_FOLDER = "spider-eval"
_METADATA_KEY = b"modelrank.spider_eval"


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` (records' fields: frames, arrays, dicts, sets, scalars) into ``digest``, by content."""
    if isinstance(value, pd.DataFrame):
        digest.update(json.dumps([[str(c) for c in value.columns], [str(t) for t in value.dtypes]]).encode())
        try:
            digest.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists): their text stands for them
            digest.update(value.to_csv().encode())
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _update(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (set, frozenset)):  # their iteration order changes from one process to the next
        digest.update(repr(sorted(map(repr, value))).encode())
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def evaluation_key(records: Records, learner: str, options: dict[str, Any], settings: dict[str, Any]) -> str:
    """The key of one learner's result on ``records``: ``settings`` holds the evaluation's own choices (protocol,
    folds, k, seed, weighted-tau convention)."""
    digest = hashlib.sha256(f"modelrank {__version__}".encode())
    for field in dataclasses.fields(records):
        digest.update(field.name.encode())
        _update(digest, getattr(records, field.name))
    digest.update(json.dumps({"learner": learner, "options": options, **settings}, sort_keys=True,
                             default=str).encode())
    return digest.hexdigest()


def kept_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / KEPT_FOLDER / f"{key}.parquet"


def read_kept(key: str, cache_dir: str | os.PathLike | None = None) -> tuple[EvalResult, dict] | None:
    """The result kept under ``key`` and what was kept with it, or None (none kept, or a file that cannot be read
    as one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(kept_path(key, cache_dir))
        extra = json.loads(table.schema.metadata[_METADATA_KEY])
        result = EvalResult(table.to_pandas(), [float(s) for s in extra["fit_seconds"]],
                            [float(s) for s in extra["rank_seconds"]],
                            {str(task): str(reason) for task, reason in extra["left_out"].items()})
        kept_with = extra["with"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException):
        return None
    return (result, kept_with) if {"task", "protocol"} <= set(result.per_task.columns) else None


def keep(key: str, result: EvalResult, cache_dir: str | os.PathLike | None = None, with_: Any = None) -> None:
    """Write ``result`` (and the JSON ``with_``) under ``key``, atomically; a cache that cannot be written only
    means no resume."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(result.per_task, preserve_index=False)
    extra = {"fit_seconds": result.fit_seconds, "rank_seconds": result.rank_seconds, "left_out": result.left_out,
             "with": with_}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _METADATA_KEY: json.dumps(extra)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path = kept_path(key, cache_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:
        pass


class KeptFolds:
    """The ``protocols.FoldStore`` of one learner's evaluation under ``key``: one file per finished fold."""

    def __init__(self, key: str, cache_dir: str | os.PathLike | None = None, force: bool = False):
        self.key, self.cache_dir, self.force = key, cache_dir, force

    def get(self, fold: int) -> tuple[EvalResult, dict] | None:
        kept = None if self.force else read_kept(f"{self.key}-fold{fold}", self.cache_dir)
        if kept is None:
            return None
        try:  # the random state is applied to the evaluation's generator: one numpy refuses is no state
            np.random.default_rng().bit_generator.state = kept[1]
        except (TypeError, ValueError, KeyError):
            return None
        return kept

    def put(self, fold: int, result: EvalResult, random_state: dict) -> None:
        keep(f"{self.key}-fold{fold}", result, self.cache_dir, random_state)

    def discard(self) -> None:
        """Remove the folds' files (the whole result is kept)."""
        for path in kept_path(self.key, self.cache_dir).parent.glob(f"{self.key}-fold*.parquet"):
            path.unlink(missing_ok=True)


def kept_or_evaluated(key: str, evaluate: Callable[[KeptFolds], EvalResult],
                      cache_dir: str | os.PathLike | None = None, force: bool = False) -> tuple[EvalResult, bool]:
    """(the result kept under ``key``, True), else (``evaluate(folds)``, kept now, False), where ``folds`` keeps
    (and gives back) each fold of it; ``force`` evaluates every fold again."""
    kept = None if force else read_kept(key, cache_dir)
    if kept is not None:
        return kept[0], True
    folds = KeptFolds(key, cache_dir, force)
    result = evaluate(folds)
    keep(key, result, cache_dir)
    folds.discard()
    return result, False
