"""The Parquet feature cache shared by every subcommand.

One folder per key (model + weight fingerprint, dataset + split + subset, preprocessing). Inside:
``manifest.json`` (the key, the selected sample ids, the chunk size) and ``chunk-NNNNN.parquet`` files, each
holding a fixed slice of the selected samples and, in its schema metadata, the sha256 of its decoded columns
(``_table_digest``: written with the chunk, checked on every read). Chunks are the unit of resume (a
rerun computes only missing chunks), of sharding (``--shard i/n`` computes chunks ``j % n == i``) and of sharing
work between concurrent runs on one key: a run claims a chunk by creating ``chunk-NNNNN.claim`` exclusively and
skips chunks claimed by a live run (a claim whose owner died, or that has not been refreshed for
``CLAIM_TTL_SECONDS``, is taken over). Every file is written to a uniquely named temporary (a uuid, so hosts
or containers sharing a file system never collide) and renamed, so a crash never leaves a file that reads as
complete; temporaries left behind by a killed run are removed once stale. A chunk that fails to read back or
whose bytes do not match their sha256 is reported, deleted and recomputed.

An entry holds features of one compute precision (``float16``: CUDA autocast; ``float32``: the CPU), recorded in
its manifest by the run that created it and in every chunk's metadata. Keying entries by precision instead would
make a CPU ``score`` miss the features a GPU extracted and extract them all again; one entry per key keeps that
working. What is refused is a mix: ``load`` names the chunks whose precision differs from the entry's (a job array
spread over GPU and CPU nodes, a resume on another kind of device, two runs creating one entry at once) and says
how to redo them, since features of two precisions differ by ~1e-3 and scores computed on a mix would depend on
which run computed which chunk. (``extraction.plan_model`` refuses such a run before it computes anything.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import time
import uuid
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InvalidInputError, MissingResourceError, ModelrankError, error_reason
from .features import FeatureSet

FORMAT_VERSION = 1
#: A claim not refreshed for this long belongs to a run that stopped (its owner refreshes it every batch);
#: ``MODELRANK_CLAIM_TTL`` (seconds) sets another (``claim_ttl``).
CLAIM_TTL_SECONDS = 600.0
#: A temporary file older than this was left by a killed writer (every write takes seconds, not hours).
STALE_TEMPORARY_SECONDS = 3600.0
TEMPORARY_MARK = ".tmp-"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$MODELRANK_CACHE``, else ``~/.cache/modelrank``."""
    return Path(cache_dir or os.environ.get("MODELRANK_CACHE") or Path.home() / ".cache" / "modelrank")


def temporary_path(path: Path) -> Path:
    """A sibling name for writing ``path`` before the rename; unique across processes, hosts and containers."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex}")


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and TEMPORARY_MARK in path.name


def remove_stale_temporaries(folder: Path, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Delete temporaries in ``folder`` older than ``max_age`` seconds (left by a killed writer)."""
    removed = []
    now = time.time()
    for path in folder.iterdir() if folder.is_dir() else []:
        try:
            if is_temporary(path) and now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(temporary)`` then rename onto ``path``: readers see the old file or the complete new one."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(path: Path) -> dict | None:
    """An entry's manifest, or None when it is missing, unreadable or not shaped like one (valid JSON of another
    shape, e.g. a hand-edited or foreign file): such an entry is rebuilt, never trusted."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    key, size, count, ids = (manifest.get(k) for k in ("key", "chunk_size", "n_samples", "sample_ids"))
    shaped = (isinstance(key, dict) and all(isinstance(key.get(k), str) for k in ("model", "dataset", "split"))
              and isinstance(size, int) and size > 0 and isinstance(count, int) and isinstance(ids, list)
              and len(ids) == count and all(type(i) is int and i >= 0 for i in ids)
              and isinstance(manifest.get("precision", ""), str))  # absent in entries made before it was recorded
    return manifest if shaped else None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    model: str
    fingerprint: str
    dataset: str
    split: str
    subset: dict[str, Any] = field(default_factory=dict, hash=False)
    preprocessing: str = ""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def dirname(self) -> str:
        safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:60]  # noqa: E731
        return f"{safe(self.model)}__{safe(self.dataset)}__{self.split}__{self.digest()}"


def _fixed_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """FixedSizeList column -> (n, d) float32 without per-row Python."""
    width = column.type.list_size
    flat = np.concatenate([chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks])
    return flat.reshape(-1, width)


def _column_values(column: pa.ChunkedArray) -> np.ndarray:
    """A chunk's column as numpy: (n, d) for a FixedSizeList column, else (n,)."""
    return _matrix(column) if pa.types.is_fixed_size_list(column.type) else column.to_numpy()


#: A dataset's stamp of the files behind some of its samples (``ImageDataset.meta["stamp"]``), stored with each
#: chunk: stamp(sample ids) -> str.
Stamp = Callable[[np.ndarray], str]


def entry_key(name: str) -> str:
    """The key part of an entry's folder name (``FeatureKey.dirname``'s last part): what `cache ls` shows of it."""
    return name.rsplit("__", 1)[-1]


class FeatureStore:
    """Chunked Parquet entries under ``root/features``."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        root = cache_root(cache_dir)
        if root.exists() and not root.is_dir():  # cache_dir= from Python (the CLI checks --cache-dir) was a
            raise InvalidInputError(f"cache folder {root} is a file, not a folder")  # NotADirectoryError mid-run
        self.root = root / "features"
        claim_ttl()  # a bad MODELRANK_CLAIM_TTL is refused before any work, not when a first claim is judged

    # ----------------------------------------------------------------------------------------- layout
    def entry_dir(self, key: FeatureKey) -> Path:
        return self.root / key.dirname()

    def chunk_path(self, key: FeatureKey, index: int) -> Path:
        return self.entry_dir(key) / f"chunk-{index:05d}.parquet"

    # --------------------------------------------------------------------------------------- manifest
    def open_entry(self, key: FeatureKey, sample_ids: np.ndarray, chunk_size: int, info: dict[str, Any],
                   precision: str | None = None) -> dict:
        """Create (or validate) the entry's manifest; returns it. Removes temporaries left by killed runs.
        ``precision``: that of the features this run computes, recorded when it creates the entry (an existing
        manifest keeps its own: the caller compares)."""
        folder = self.entry_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        path = folder / "manifest.json"
        manifest = {
            "format": FORMAT_VERSION,
            "key": asdict(key),
            "chunk_size": int(chunk_size),
            "n_samples": int(len(sample_ids)),
            "sample_ids": [int(i) for i in sample_ids],
            "info": info,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **({"precision": precision} if precision else {}),
        }
        if path.is_file():
            path.open("rb").close()  # one we may not read (another user's, in a shared cache): an error, not rebuilt
            old = read_manifest(path)
            if old and old["sample_ids"] == manifest["sample_ids"] and old["chunk_size"] == chunk_size:
                return old
            warnings.warn(f"cache entry {folder.name} had an unreadable or different manifest; rebuilding it")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(manifest).encode())
        return manifest

    def manifest(self, key: FeatureKey) -> dict | None:
        return read_manifest(self.entry_dir(key) / "manifest.json")

    @staticmethod
    def n_chunks(manifest: dict) -> int:
        return -(-manifest["n_samples"] // manifest["chunk_size"])

    @staticmethod
    def chunk_ids(manifest: dict, index: int) -> np.ndarray:
        size = manifest["chunk_size"]
        return np.asarray(manifest["sample_ids"][index * size : (index + 1) * size], dtype=np.int64)

    # ----------------------------------------------------------------------------------------- chunks
    def write_chunk(
        self,
        key: FeatureKey,
        index: int,
        sample_ids: np.ndarray,
        labels: np.ndarray,
        features: np.ndarray,
        logits: np.ndarray | None,
        provenance: dict[str, Any],
    ) -> None:
        labels, features = np.asarray(labels), np.asarray(features)  # lists read their .ndim / .shape below
        columns = {
            "sample_id": pa.array(np.asarray(sample_ids, dtype=np.int64)),
            "label": pa.array(labels) if labels.ndim == 1 else _fixed_list(labels),
            "features": _fixed_list(features),
        }
        if logits is not None:
            columns["source_logits"] = _fixed_list(logits)
        table = pa.table(columns)
        meta = {**provenance, "features_shape": list(features.shape), "chunk": index, "sha256": _table_digest(table)}
        table = table.replace_schema_metadata({"modelrank": json.dumps(meta)})
        atomic_write(self.chunk_path(key, index), lambda tmp: pq.write_table(table, tmp))

    def read_chunk(self, key: FeatureKey, manifest: dict, index: int, stamp: Stamp | None = None) -> pa.Table | None:
        """The chunk's table (its metadata: ``chunk_meta``), or None when absent; a corrupt or stale chunk is
        reported, removed and reported absent.

        Corrupt: unreadable, sample ids other than the manifest's, or contents whose sha256 differs from the one
        stored in the chunk's metadata at write time (bit rot, a flipped byte: silent otherwise). Stale: ``stamp``
        (the dataset's ``meta["stamp"]``) of the chunk's samples differs from the one it was written with (an image
        replaced since).
        """
        path = self.chunk_path(key, index)
        if not path.is_file():
            return None
        expected = self.chunk_ids(manifest, index)
        try:
            table = pq.read_table(path)
            meta = chunk_meta(table)
            if not np.array_equal(table.column("sample_id").to_numpy(), expected):
                reason = "its sample ids do not match the manifest"
            elif "sha256" in meta and meta["sha256"] != _table_digest(table):  # chunks before the hash: unchecked
                reason = "its contents do not match their sha256"
            else:
                reason = None
        except FileNotFoundError:  # removed by a concurrent run that found it corrupt
            return None
        except PermissionError:  # another user's chunk in a shared cache: not corrupt, and not ours to replace
            raise
        except Exception as exc:  # pyarrow raises several types for truncated / garbage files
            reason = error_reason(exc)
        if reason:
            warnings.warn(f"cache file {path} is corrupt ({reason}); it will be recomputed")
        elif stamp is not None and meta.get("inputs") != stamp(expected):
            warnings.warn(f"images behind cache file {path} changed since it was extracted; it will be recomputed")
        else:
            return table
        path.unlink(missing_ok=True)
        return None

    def missing_chunks(self, key: FeatureKey, manifest: dict) -> list[int]:
        """Chunks not yet on disk (existence only; content is checked when read)."""
        return [j for j in range(self.n_chunks(manifest)) if not self.chunk_path(key, j).is_file()]

    # ----------------------------------------------------------------------------------------- claims
    def claim_path(self, key: FeatureKey, index: int) -> Path:
        return self.entry_dir(key) / f"chunk-{index:05d}.claim"

    def claim_chunk(self, key: FeatureKey, index: int) -> bool:
        """Claim chunk ``index`` for this process (an exclusively created lock file); False when a live run holds it.

        A stale claim (its owner is dead, or it was not refreshed for ``CLAIM_TTL_SECONDS``) is taken over.
        """
        path = self.claim_path(key, index)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not _claim_is_stale(path):
                    return False
                try:  # a rename succeeds for one process only; the others find the claim gone or fresh
                    stale = temporary_path(path)
                    os.rename(path, stale)
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(_owner(), f)
            except BaseException:
                # A claim naming no owner (the disk was full) would hold the chunk for CLAIM_TTL_SECONDS: the
                # rerun after space is freed would wait that long for a run that is gone.
                path.unlink(missing_ok=True)
                raise
            return True
        return False

    def refresh_claim(self, key: FeatureKey, index: int) -> None:
        try:
            os.utime(self.claim_path(key, index))
        except FileNotFoundError:
            pass

    def release_claim(self, key: FeatureKey, index: int) -> None:
        path = self.claim_path(key, index)
        try:
            if json.loads(path.read_text()) == _owner():
                path.unlink()
        except (OSError, ValueError):
            pass

    def claimed_elsewhere(self, key: FeatureKey, index: int) -> bool:
        path = self.claim_path(key, index)
        return path.is_file() and not _claim_is_stale(path)

    # ------------------------------------------------------------------------------------------- load
    def load(self, key: FeatureKey, task: str = "classification", class_names: list[str] | None = None,
             stamp: Stamp | None = None) -> FeatureSet:
        """The entry's arrays; each chunk is copied into whole-entry arrays and released as soon as it is read, so
        the peak holds the entry once plus one chunk (not every chunk's table and then its concatenation).
        ``stamp``: see ``read_chunk`` (a stale chunk makes the entry incomplete)."""
        manifest = self.manifest(key)
        if manifest is None:
            raise MissingResourceError(f"no cached features for {key.model} on {key.dataset}/{key.split}")
        n, size = manifest["n_samples"], manifest["chunk_size"]
        arrays: dict[str, np.ndarray] = {}
        precisions: dict[int, str] = {}  # chunk -> its precision (chunks written before it was recorded: none)
        for j in range(self.n_chunks(manifest)):
            table = self.read_chunk(key, manifest, j, stamp)
            if table is None:
                raise IncompleteEntryError(
                    f"cached features for {key.model} on {key.dataset}/{key.split} are incomplete (chunk {j}); "
                    "run `modelrank extract` again to finish them"
                )
            if arrays and set(table.column_names) != set(arrays):
                raise IncompleteEntryError(
                    f"cached features for {key.model} on {key.dataset}/{key.split} mix chunks of different columns "
                    f"(chunk {j}); remove the entry (`modelrank cache rm`) and extract again"
                )
            meta = chunk_meta(table)
            if "precision" in meta:
                precisions[j] = meta["precision"]
            for name in table.column_names:
                part = _column_values(table.column(name))
                if name not in arrays:
                    # float64 for the softmax below and for regression target vectors (stored as float32 lists)
                    wide = name == "source_logits" or (name == "label" and part.ndim == 2)
                    arrays[name] = np.empty((n, *part.shape[1:]), dtype=np.float64 if wide else part.dtype)
                arrays[name][j * size : j * size + len(part)] = part
            del table, part  # this chunk's Arrow buffers go before the next chunk is read
        precision = self._check_precision(key, manifest, precisions)
        probs = arrays.get("source_logits")
        if probs is not None:  # in place: one (n, k) float64 array (50k x 1000 logits: 400 MB)
            probs -= probs.max(axis=1, keepdims=True)
            np.exp(probs, out=probs)
            probs /= probs.sum(axis=1, keepdims=True)
        info = manifest.get("info", {})
        return FeatureSet(
            features=arrays["features"],
            labels=arrays["label"],
            model=key.model,
            dataset=key.dataset,
            task=info.get("task", task),
            source_probs=probs,
            sample_ids=arrays["sample_id"],
            class_names=info.get("class_names", class_names),
            meta={"split": key.split, "cache_dir": str(self.entry_dir(key)), "precision": precision,
                  **info.get("model", {})},
        )

    def _check_precision(self, key: FeatureKey, manifest: dict, precisions: dict[int, str]) -> str | None:
        """The entry's precision (its manifest's, else that of most of its chunks); a chunk of another one is a
        ``MixedPrecisionError`` naming the chunks to redo and how."""
        common = Counter(precisions.values()).most_common(1)
        entry = manifest.get("precision") or (common[0][0] if common else None)
        odd = [j for j, p in precisions.items() if p != entry]
        if not odd:
            return entry
        folder = self.entry_dir(key)
        names = " ".join(f"{folder / f'chunk-{j:05d}.parquet'}" for j in odd[:5]) + (" ..." if len(odd) > 5 else "")
        raise MixedPrecisionError(
            f"cached features for {key.model} on {key.dataset}/{key.split} mix precisions: {len(odd)} chunk(s) in "
            f"{', '.join(sorted({precisions[j] for j in odd}))}, the entry in {entry}; delete them ({names}) and "
            f"extract again on a device that computes {entry} (`modelrank extract`: float16 on CUDA, float32 on the "
            f"CPU), or remove the entry (`modelrank cache rm {folder.name}`) and extract it on one kind of device"
        )

    # ------------------------------------------------------------------------------------ inspection
    def entries(self) -> Iterator[tuple[Path, dict | None]]:
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            yield folder, read_manifest(folder / "manifest.json")

    def describe(self, folder: Path, manifest: dict | None) -> dict[str, Any]:
        if manifest is None:
            return {"entry": folder.name, "model": "?", "dataset": "?", "split": "?", "samples": 0,
                    "done": "manifest unreadable", "size_mb": _size_mb(folder)}
        total = self.n_chunks(manifest)
        done = sum(1 for j in range(total) if (folder / f"chunk-{j:05d}.parquet").is_file())
        key = manifest["key"]
        return {
            "entry": folder.name, "model": key["model"], "dataset": key["dataset"], "split": key["split"],
            "samples": manifest["n_samples"], "done": f"{done}/{total} chunks", "size_mb": _size_mb(folder),
            "precision": manifest.get("precision", ""),  # blank: an entry made before it was recorded
        }

    def superseded(self, key: FeatureKey) -> list[Path]:
        """Entries of the same model, settings and dataset location as ``key`` whose data fingerprint differs:
        extracted before the user's images or labels changed (``FeatureKey.subset["definition"]``), or the files
        under a data root; also for a derived task, whose definition holds its base data's one level down. Entries
        holding a live claim (being extracted) are not listed."""
        definition = key.subset.get("definition")
        if not isinstance(definition, dict) or _without_fingerprints(definition) == definition:
            return []

        def without_fingerprint(entry: dict) -> dict:
            subset = dict(entry.get("subset", {}))
            subset["definition"] = _without_fingerprints(dict(subset.get("definition") or {}))
            return {**entry, "subset": subset}

        mine = without_fingerprint(json.loads(json.dumps(asdict(key))))
        # An entry that a live run is extracting stays: that run may read another copy of the data at the same path
        # (node-local copies whose file times differ), and removing its entry under it would stop it.
        return [
            folder for folder, manifest in self.entries()
            if manifest and folder != self.entry_dir(key) and without_fingerprint(manifest.get("key", {})) == mine
            and not any(not _claim_is_stale(claim) for claim in folder.glob("chunk-*.claim"))
        ]

    def remove(self, names: Iterable[str]) -> list[str]:
        """Delete the entries with exactly these folder names; returns the names removed."""
        wanted = set(names)
        removed = []
        for folder, _ in list(self.entries()):
            if folder.name in wanted:
                # A running extraction (or another `cache rm`) removes and adds files meanwhile: not errors.
                shutil.rmtree(folder, ignore_errors=True)
                if folder.exists():  # a file added meanwhile, or one that may not be removed: the error says which
                    shutil.rmtree(folder)
                removed.append(folder.name)
        return removed


class IncompleteEntryError(MissingResourceError):
    """A cache entry with a missing or corrupt chunk (``extract`` completes it)."""


class MixedPrecisionError(ModelrankError):
    """A cache entry whose chunks were computed in different precisions (``extract`` cannot repair it: the user
    chooses which chunks to redo, and on which device)."""


def chunk_meta(table: pa.Table) -> dict[str, Any]:
    """What a chunk records about itself (``write_chunk``'s provenance, its shape, index and sha256)."""
    return json.loads((table.schema.metadata or {}).get(b"modelrank", b"{}"))


def _without_fingerprints(definition: Any) -> Any:
    """A dataset definition without its data fingerprints, at any depth (what stays: where the data is and how it
    is made)."""
    if isinstance(definition, dict):
        return {k: _without_fingerprints(v) for k, v in definition.items() if k != "fingerprint"}
    return definition


def _size_mb(folder: Path) -> float:
    """Size of the entry's finished files (temporaries of running or killed writers excluded). A running
    extraction removes files meanwhile (a released claim): gone between listing and stat, they count as gone."""
    total = 0
    for f in folder.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() and not is_temporary(f) else 0
        except FileNotFoundError:
            pass
    return round(total / 2**20, 2)


def _table_digest(table: pa.Table) -> str:
    """sha256 of a chunk's decoded columns (names, types and values), independent of the Parquet encoding."""
    digest = hashlib.sha256()
    for name in ("sample_id", "label", "features", "source_logits"):
        if name not in table.column_names:
            continue
        column = table.column(name)
        values = _column_values(column)
        digest.update(f"{name}:{values.dtype}:{values.shape}".encode())  # Parquet renames list fields: not the type
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


_OWNERS: dict[int, dict[str, Any]] = {}


def _owner() -> dict[str, Any]:
    """Identifies this process in chunk claims: host and pid (to tell a dead owner on this host), plus a random
    token (a pid reused by another container or a later process on the same host is not the owner)."""
    pid = os.getpid()  # per pid: a forked child is another owner
    if pid not in _OWNERS:
        _OWNERS[pid] = {"host": socket.gethostname(), "pid": pid, "token": uuid.uuid4().hex}
    return _OWNERS[pid]


def _filesystem_now(directory: Path) -> float:
    """The clock of the file system that holds ``directory``: the mtime of a file stamped now.

    On a cache shared by many hosts (NFS, Lustre) a claim's mtime is stamped by the file server, while each host's
    own clock may be minutes off; measuring a claim's age with this host's clock would take over live claims
    (clock ahead) or keep dead ones for too long (clock behind). Falls back to this host's clock."""
    probe = directory / f".clock{TEMPORARY_MARK}{_owner()['token']}"
    try:
        probe.touch()
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        probe.unlink(missing_ok=True)


def claim_ttl() -> float:
    """``MODELRANK_CLAIM_TTL`` in seconds, else ``CLAIM_TTL_SECONDS``. Read when a claim is judged, not when this
    module is imported: a value that is no number was a traceback (exit 1) in every command that imports the cache,
    ``nan`` kept the claims of killed runs for ever and a negative value took over the claims of live ones."""
    text = os.environ.get("MODELRANK_CLAIM_TTL", "").strip()
    if not text:  # unset, or exported empty
        return CLAIM_TTL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise InvalidInputError(f"MODELRANK_CLAIM_TTL={text!r} in the environment: give the seconds after which an "
                                f"unrefreshed chunk claim counts as abandoned, a number > 0 (default "
                                f"{CLAIM_TTL_SECONDS:g})")
    return value


def _claim_is_stale(path: Path) -> bool:
    try:
        age = _filesystem_now(path.parent) - path.stat().st_mtime
        owner = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return True
    except (OSError, ValueError):  # being written right now, or garbage: only age can tell
        owner = {}
    if age > claim_ttl():
        return True
    me = _owner()
    if owner.get("host") != me["host"] or not isinstance(owner.get("pid"), int):
        return False
    if owner["pid"] == me["pid"]:
        return owner.get("token") != me["token"]
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    return False
