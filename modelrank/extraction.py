"""Run models over a dataset and store penultimate features, source logits and labels in the feature cache."""

from __future__ import annotations

import os
import platform
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np

from . import __version__
from .cache import FeatureKey, FeatureStore, IncompleteEntryError, MixedPrecisionError
from .data import ImageDataset, load_dataset
from .errors import InvalidInputError, MissingResourceError, ModelrankError, check_seed
from .features import FeatureSet
from .models import LoadedModel, check_model_name, load_model
from .models.base import ModelIdentity
from .models.identity import known_identity, remember_identity
from .progress import ProgressFn, report
from .registry import split_names

if TYPE_CHECKING:  # imported where features are computed: reading cached ones needs no torch (seconds to import)
    import torch

DEFAULT_CHUNK = 1024


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None (no --shard) is the whole run, 0/1. An empty text is an error: from
    an unset shell variable in a job array it would make every task do the whole run."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InvalidInputError(f"--shard must look like i/n (e.g. 0/4), not {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InvalidInputError(f"--shard {text}: need 0 <= i < n")
    return i, n


def select_samples(targets: np.ndarray, limit: int | None, per_class: int | None, seed: int, task: str) -> np.ndarray:
    """Sorted indices of a seeded subsample: ``per_class`` per class first, then at most ``limit`` overall."""
    rng = np.random.default_rng(check_seed(seed, "--seed"))
    idx = np.arange(len(targets))
    if per_class is not None:
        if per_class < 1:
            raise InvalidInputError("--per-class must be at least 1")
        if task != "classification":
            raise InvalidInputError("--per-class needs a classification dataset")
        idx = np.concatenate([
            rng.permutation(np.flatnonzero(targets == c))[:per_class] for c in np.unique(targets)
        ])
    if limit is not None:
        if limit < 1:
            raise InvalidInputError("--limit must be at least 1")
        if limit < len(idx):
            idx = rng.choice(idx, size=limit, replace=False)
    return np.sort(idx)


def launcher_shard(shard: tuple[int, int], environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``shard`` = (i, n) shared out among the processes torchrun started (its RANK of WORLD_SIZE, from the
    environment): (i + n RANK, n WORLD_SIZE), whose items j (j mod n WORLD_SIZE = i + n RANK) are exactly shard
    i/n's, one process each; ``shard`` itself outside torchrun."""
    rank, world = environ.get("RANK", "").strip(), environ.get("WORLD_SIZE", "").strip()
    if not (rank and world):  # unset (or exported empty): no launcher
        return shard
    if not (rank.isdigit() and world.isdigit() and int(rank) < int(world)):
        raise InvalidInputError(f"RANK={rank!r} and WORLD_SIZE={world!r} in the environment: a launcher sets "
                                "0 <= RANK < WORLD_SIZE")
    index, count = shard
    return index + count * int(rank), count * int(world)


def launcher_local_rank(environ: Mapping[str, str] = os.environ) -> int | None:
    """The LOCAL_RANK that torchrun (``torch.distributed.run``) gives each process it starts on a node, else None."""
    value = environ.get("LOCAL_RANK", "").strip()
    if not value:  # unset (or exported empty): no launcher
        return None
    if not value.isdigit():
        raise InvalidInputError(f"LOCAL_RANK={value!r} in the environment: a launcher sets it to 0, 1, ...")
    return int(value)


def resolve_device(device: str, local_rank: int | None = None) -> torch.device:
    """``--device`` as a torch device. ``auto`` is CUDA when present; ``auto`` and ``cuda`` in a process started by
    torchrun (``local_rank``, default: from the environment) are that process's own GPU, cuda:LOCAL_RANK, so that
    ``torchrun --nproc_per_node=G`` spreads the processes over the node's G GPUs (they share the work through the
    cache's chunk claims); ``cuda:I`` is always GPU I."""
    import torch

    local_rank = launcher_local_rank() if local_rank is None else local_rank
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):  # TypeError: not a string (device=None from Python), torch's overload list
        raise InvalidInputError(f"unknown device {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        # torch names many device types (meta, mps, xpu, hpu, ...); the code runs on the CPU and CUDA alone: `meta`
        # and `mps` were tracebacks once the model was moved (exit 1), and a cached entry hid them (exit 0).
        raise InvalidInputError(f"unsupported device {device!r}: choose auto, cpu, cuda or cuda:I")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("--device cuda asked for, but no CUDA device is available")
    if resolved.type == "cuda" and resolved.index is None and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise InvalidInputError(f"torchrun process LOCAL_RANK={local_rank} on a node with "
                                    f"{torch.cuda.device_count()} GPU(s): start at most that many per node")
        resolved = torch.device("cuda", local_rank)
    return resolved


def resolve_workers(workers: int | None, device: torch.device) -> int:
    """Data-loading processes: none on small CPU machines, where they would steal cores from the model."""
    if workers is not None:
        return max(0, workers)
    cores = os.cpu_count() or 1
    return min(8, cores // 2) if device.type == "cuda" or cores > 4 else 0


class _TorchView:
    """The samples ``indices`` of ``data`` preprocessed by ``transform``: a map-style dataset for torch's
    ``DataLoader`` (which needs only ``__len__`` and ``__getitem__``)."""

    def __init__(self, data: ImageDataset, indices: np.ndarray, transform: Callable):
        self.data, self.indices, self.transform = data, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            return self.transform(self.data.load(int(self.indices[i])))
        except ModelrankError as exc:  # e.g. a corrupt image: handed back as a value (see _collate)
            return exc


def _collate(items: list):
    """A batch of images, or the first user-facing error met loading them. Raised in a loader worker, that error
    would reach the main process re-raised by torch with the worker's traceback in its message: many lines where
    the user gets one."""
    from torch.utils.data import default_collate

    errors = [item for item in items if isinstance(item, ModelrankError)]
    return errors[0] if errors else default_collate(items)


#: ``--precision`` values: "auto" is float16 autocast on CUDA (its tensor cores) and float32 on the CPU.
PRECISIONS = ("auto", "float32", "float16")


def compute_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision features are computed in on ``device``: ``precision`` ("auto", "float32" or "float16"), with
    "auto" float16 autocast on CUDA and float32 on the CPU. Recorded with every chunk and entry (see ``cache``), so
    a GPU run that must add chunks to an entry the CPU began asks for float32."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "float16" if device.type == "cuda" else "float32"
    if precision == "float16" and device.type != "cuda":
        raise InvalidInputError("--precision float16 needs a CUDA device (float16 autocast); the CPU computes float32")
    return precision


def check_device_options(device: str, precision: str) -> None:
    """``--device`` and ``--precision`` refused up front when they cannot run here. "auto" with "auto" runs anywhere
    and is resolved only when a model is built (resolving imports torch: seconds, for a command that may find
    every feature cached); only the torchrun environment it would read is checked."""
    if device == "auto" and precision == "auto":
        launcher_local_rank()
    else:
        compute_precision(resolve_device(device), precision)


@dataclass
class ExtractPlan:
    model: LoadedModel
    key: FeatureKey
    manifest: dict
    pending: list[int]


def feature_key(model: ModelIdentity, data: ImageDataset, limit, per_class, seed) -> FeatureKey:
    subset = {"limit": limit, "per_class": per_class, "seed": seed}
    if "definition" in data.meta:  # derived datasets: their recipe, not just their name, identifies the data
        subset["definition"] = data.meta["definition"]
    return FeatureKey(model.name, model.fingerprint, data.name, data.split, subset, model.preprocessing)


def plan_model(
    store: FeatureStore, model: LoadedModel, data: ImageDataset, *, limit, per_class, seed, chunk_size, shard,
    precision: str,
) -> ExtractPlan:
    """The entry's pending chunks of ``shard``. A run whose ``precision`` is not the entry's is refused when it has
    chunks to compute (it would mix precisions in one entry, see ``cache``); reading a complete entry is fine."""
    key = feature_key(model.identity, data, limit, per_class, seed)
    ids = select_samples(data.targets, limit, per_class, seed, data.task)
    info = {
        "task": data.task,
        "class_names": data.class_names,
        "model": {k: v for k, v in model.info.items() if k != "preprocessing"},
    }
    info["model"]["input_size"] = list(info["model"]["input_size"])
    manifest = store.open_entry(key, ids, chunk_size, info, precision)
    index, count = shard
    # Checking content here (not just existence) makes a rerun repair corrupt chunks.
    pending = [
        j for j in range(store.n_chunks(manifest))
        if j % count == index and store.read_chunk(key, manifest, j, data.meta.get("stamp")) is None
    ]
    entry_precision = manifest.get("precision", precision)  # entries made before it was recorded: unchecked
    if pending and entry_precision != precision:
        raise MixedPrecisionError(
            f"cache entry {key.dirname()} holds features computed in {entry_precision}; this run would add "
            f"{len(pending)} chunk(s) in {precision}: run it with `--precision {entry_precision}`"
            f"{' on a CUDA device' if entry_precision == 'float16' else ''}, or remove the entry "
            f"(`modelrank cache rm {key.dirname()}`) first")
    return ExtractPlan(model, key, manifest, pending)


#: Seconds between looks at chunks that another run is computing.
CLAIM_POLL_SECONDS = 0.5


class _ClaimingBatches:
    """Batch sampler over candidate chunks: claims each chunk just before its first batch is drawn (skipping
    chunks another live run holds) and never mixes two chunks in one batch, so a chunk's features do not depend
    on which run computed it or which other chunks were pending. Yields positions in the concatenated sample
    ids of all candidates (``sample_ids``), so the dataset handed to loader workers never changes."""

    def __init__(self, store: FeatureStore, plan: ExtractPlan, chunks: list[int], batch_size: int):
        self.store, self.plan, self.chunks, self.batch_size = store, plan, chunks, batch_size
        self.sample_ids = np.concatenate([store.chunk_ids(plan.manifest, j) for j in chunks])
        self.claimed: list[tuple[int, np.ndarray]] = []  # in the order their batches are drawn

    def __iter__(self):
        offset = 0
        for j in self.chunks:
            ids = self.store.chunk_ids(self.plan.manifest, j)
            start, offset = offset, offset + len(ids)
            if not self.store.claim_chunk(self.plan.key, j):
                continue
            if self.store.chunk_path(self.plan.key, j).is_file():  # finished while we were looking
                self.store.release_claim(self.plan.key, j)
                continue
            self.claimed.append((j, ids))
            for first in range(start, start + len(ids), self.batch_size):
                yield list(range(first, min(first + self.batch_size, start + len(ids))))


def run_plan(
    store: FeatureStore,
    plan: ExtractPlan,
    data: ImageDataset,
    *,
    batch_size: int,
    device: torch.device,
    precision: str,
    workers: int,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Compute the plan's pending chunks; each chunk is written as soon as its last sample is done. Returns the
    number of samples this run computed.

    Chunks are claimed one by one, so concurrent runs on one key share the work; a chunk claimed by another
    live run is waited for (and taken over if that run dies), so the entry is complete when this returns.
    """
    import torch

    provenance = {
        "modelrank": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "model": plan.key.model, "fingerprint": plan.key.fingerprint, "dataset": plan.key.dataset,
        "split": plan.key.split, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "precision": precision, "device": device.type,
    }
    net = plan.model.net.to(device)
    computed = 0
    # cuda:I is made the current device as well: pinned batches and the CUDA context stay on GPU I (torchrun).
    try:
        with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
            waiting = list(plan.pending)
            while waiting:
                free = [j for j in waiting if not store.claimed_elsewhere(plan.key, j)]
                if free:
                    computed += _compute_chunks(store, plan, data, free, provenance, batch_size=batch_size,
                                                device=device, precision=precision, workers=workers,
                                                on_batch=on_batch)
                waiting = [j for j in waiting if not store.chunk_path(plan.key, j).is_file()]
                if waiting:
                    time.sleep(CLAIM_POLL_SECONDS)
    except FileNotFoundError:
        if store.entry_dir(plan.key).is_dir():
            raise
        # Not a missing input: pyarrow's "Failed to open local file '.../.chunk-00000.parquet.tmp-…'" said no more.
        raise MissingResourceError(
            f"cache entry {plan.key.dirname()} was removed while this run extracted it (by `modelrank cache rm`, or "
            "by a run that found the images changed); run the command again") from None
    finally:
        net.to("cpu")
    return computed


def _compute_chunks(store, plan, data, chunks, provenance, *, batch_size, device, precision, workers,
                    on_batch) -> int:
    """Compute those of ``chunks`` this run manages to claim; returns the number of samples written."""
    import torch

    sampler = _ClaimingBatches(store, plan, chunks, batch_size)
    loader = torch.utils.data.DataLoader(
        _TorchView(data, sampler.sample_ids, plan.model.transform), batch_sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", collate_fn=_collate,
    )
    autocast = nullcontext() if precision == "float32" else torch.autocast(device.type, dtype=getattr(torch, precision))
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    buffered = 0  # rows of the oldest unwritten claimed chunk computed so far
    written = 0  # claimed chunks already written
    rows = 0
    batches = iter(loader)
    try:
        with torch.inference_mode(), autocast:
            for batch in batches:
                if isinstance(batch, ModelrankError):
                    raise batch
                f, z = plan.model.forward(batch.to(device, non_blocking=True))
                feats.append(f.float().cpu().numpy())
                if z is not None:
                    logits.append(z.float().cpu().numpy())
                _check_finite_outputs(plan.key, precision, feats[-1], logits[-1] if z is not None else None)
                buffered += len(batch)
                if on_batch:
                    on_batch(len(batch))
                index, chunk_ids = sampler.claimed[written]
                store.refresh_claim(plan.key, index)
                if buffered == len(chunk_ids):
                    stamp = data.meta.get("stamp")
                    store.write_chunk(plan.key, index, chunk_ids, data.targets[chunk_ids], np.concatenate(feats),
                                      np.concatenate(logits) if logits else None,
                                      {**provenance, "inputs": stamp(chunk_ids)} if stamp else provenance)
                    store.release_claim(plan.key, index)
                    feats, logits, buffered, written, rows = [], [], 0, written + 1, rows + len(chunk_ids)
    finally:
        for index, _ in sampler.claimed[written:]:
            store.release_claim(plan.key, index)
        _stop_workers(batches)
    return rows


def _check_finite_outputs(key, precision: str, features: np.ndarray, logits: np.ndarray | None) -> None:
    """Refuse a batch whose features or logits hold NaN or inf before any of it is cached: they were cached as a
    complete entry (exit 0), and every metric refused them later, one ``score`` at a time."""
    for what, values in (("features", features), ("logits", logits)):
        if values is not None and not np.isfinite(values).all():
            overflow = f", or its activations overflow {precision} (try --precision float32)"
            cause = "its weights hold NaN or inf" + (overflow if precision != "float32" else "")
            raise InvalidInputError(f"{key.model} gave NaN or inf {what} on {key.dataset}/{key.split}: {cause}")


def _stop_workers(batches) -> None:
    """Stop the data-loading worker processes of a loader's iterator now, a Ctrl-C held back meanwhile. Left to the
    iterator's ``__del__`` after a first Ctrl-C, a second one (users press it twice) landed in its wait for the
    workers: "Exception ignored in ... __del__ ... KeyboardInterrupt", a 20-line traceback before the one line."""
    from .interrupts import interrupts_held

    shutdown = getattr(batches, "_shutdown_workers", None)  # torch's; idempotent (``__del__`` calls it again)
    if shutdown is not None:
        with interrupts_held():
            shutdown()


def open_dataset(dataset: str, split: str | None, data_root: str | None, download: bool) -> ImageDataset:
    data = load_dataset(dataset, split, root=data_root, download=download)
    if len(data) == 0:
        raise InvalidInputError(f"dataset {dataset}/{data.split} is empty")  # its split: --split may be left out
    return data


def open_subset(dataset: str, split: str | None, data_root: str | None, download: bool, limit: int | None,
                per_class: int | None, seed: int) -> ImageDataset:
    """The opened dataset, its subsample options checked against it (``--per-class`` of a regression dataset)
    before any model is built: they can be checked only once the task is known."""
    data = open_dataset(dataset, split, data_root, download)
    select_samples(data.targets, limit, per_class, seed, data.task)
    return data


def extract(
    models: list[str] | str,
    dataset: str,
    split: str | None = None,
    *,
    limit: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    shard: str | tuple[int, int] | None = None,
    cache_dir: str | None = None,
    data_root: str | None = None,
    download: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: ProgressFn | None = None,
) -> list[dict]:
    """Extract and cache features of every model on one dataset split; returns one summary dict per model.

    ``models``: a list of names, or one string of comma-separated names (as ``modelrank.score`` takes them).
    ``precision``: "auto" (float16 autocast on CUDA, float32 on the CPU), "float32" or "float16" (CUDA only). Only
    chunks that are missing (and belong to ``shard``) are computed, so an interrupted run resumes and a
    job array of ``--shard i/n`` covers the data exactly once. ``progress`` (a ``modelrank.progress.ProgressFn``)
    hears of each step on its row "extract": opening the dataset, loading each model, checking the cache, and
    the images computed of each model.
    """
    if isinstance(models, str):  # iterated, "resnet18" was the models "r", "e", ...: "unknown model 'r'"
        models = split_names(models)
    if not models:
        raise InvalidInputError("no model given (e.g. -m efficientnet_lite0,resnet18)")
    # (i, n) is checked as 'i/n' is: (0, 0) divided by zero, and (3, 2) computed nothing and reported success
    shard = parse_shard("/".join(map(str, shard)) if isinstance(shard, (tuple, list)) else shard)
    store = FeatureStore(cache_dir)
    identities = checked_identities(models, cache_dir)
    report(progress, "extract", f"opening dataset {dataset}")
    data = open_subset(dataset, split, data_root, download, limit, per_class, seed)
    check_device_options(device, precision)  # their refusal before any model is built
    dev = n_workers = None
    summaries = []
    for name in models:
        if identities[name] is not None:  # loaded before: built only if some of its features are missing
            report(progress, "extract", f"checking the cached chunks of {name}")
            summary = cached_summary(store, identities[name], data, limit=limit, per_class=per_class, seed=seed,
                                     shard=shard)
            if summary is not None:
                summaries.append(summary)
                continue
        if dev is None:
            dev = resolve_device(device)
            n_workers = resolve_workers(workers, dev)
        report(progress, "extract", f"loading model {name}")
        loaded = load_model(name)
        remember_identity(name, loaded, cache_dir)  # the commands that read these features then need not build it
        summaries.append(extract_model(store, loaded, data, limit=limit, per_class=per_class, seed=seed,
                                       chunk_size=chunk_size, shard=shard, batch_size=batch_size, device=dev,
                                       precision=precision, workers=n_workers, progress=progress))
    return summaries


def extract_model(
    store: FeatureStore,
    model: LoadedModel,
    data: ImageDataset,
    *,
    limit: int | None,
    per_class: int | None,
    seed: int,
    chunk_size: int,
    shard: tuple[int, int],
    batch_size: int,
    device: torch.device,
    workers: int,
    precision: str = "auto",
    progress: ProgressFn | None = None,
) -> dict:
    """Compute one loaded model's missing chunks on an opened dataset (in ``precision``, see ``compute_precision``);
    returns its summary dict."""
    if batch_size < 1:
        raise InvalidInputError("--batch-size must be at least 1")
    if chunk_size < 1:  # before the entry's manifest is written with it (a division by zero followed)
        raise InvalidInputError(f"chunk_size must be at least 1, not {chunk_size}")
    precision = compute_precision(device, precision)
    report(progress, "extract", f"checking the cached chunks of {model.name}")
    plan = plan_model(store, model, data, limit=limit, per_class=per_class, seed=seed,
                      chunk_size=chunk_size, shard=shard, precision=precision)
    n_todo = sum(len(store.chunk_ids(plan.manifest, j)) for j in plan.pending)
    what = f"{model.name} on {data.name}/{data.split} (images)"
    report(progress, "extract", what, 0, n_todo)
    computed = 0

    def advance(n: int) -> None:
        nonlocal computed
        computed += n
        report(progress, "extract", what, computed, n_todo)

    start = time.perf_counter()
    n_done = run_plan(store, plan, data, batch_size=batch_size, device=device, precision=precision, workers=workers,
                      on_batch=advance if progress else None)
    seconds = time.perf_counter() - start
    remaining = len(store.missing_chunks(plan.key, plan.manifest))
    if not remaining:
        _remove_superseded(store, plan.key, data)
    return {
        "model": model.name, "dataset": data.name, "split": data.split, "samples": plan.manifest["n_samples"],
        "computed": n_done, "seconds": round(seconds, 2),
        "images_per_s": round(n_done / seconds, 1) if n_done and seconds > 0 else None,
        "complete": remaining == 0, "entry": plan.key.dirname(), "model_info": model.info,
    }


def _remove_superseded(store: FeatureStore, key: FeatureKey, data: ImageDataset) -> None:
    """Remove the entries that the complete entry ``key`` supersedes (``FeatureStore.superseded``: extracted before
    the images or labels changed). Only once it is complete: removed when the run began, a run stopped by a corrupt
    image just added (or by a Ctrl-C) had lost the old entry too, and once the image was taken out again every
    feature was extracted anew."""
    for folder in store.superseded(key):
        warnings.warn(f"the images or labels of {data.name} changed since cache entry {folder.name} was extracted; "
                      f"it is removed (entry {key.dirname()} holds the features of the data as it is now)")
        shutil.rmtree(folder, ignore_errors=True)


def cached_summary(store: FeatureStore, identity: ModelIdentity, data: ImageDataset, *, limit: int | None,
                   per_class: int | None, seed: int, shard: tuple[int, int]) -> dict | None:
    """``extract_model``'s summary of a model whose chunks of ``shard`` are all cached and sound, from its entry
    alone (the model is not built: seconds per model when a job array is rerun over a zoo), or None when some
    chunk is missing, corrupt or stale, or the entry was made for other samples: the model is then built and
    ``extract_model`` computes (and repairs) what is missing."""
    key = feature_key(identity, data, limit, per_class, seed)
    manifest = store.manifest(key)
    info = manifest.get("info") if manifest else None
    model_info = info.get("model") if isinstance(info, dict) else None
    # what a summary shows of the model, as ``plan_model`` wrote it (else, e.g. hand-edited, the model is built)
    if not (isinstance(model_info, dict) and isinstance(model_info.get("family"), str)
            and isinstance(model_info.get("params"), int) and isinstance(model_info.get("input_size"), list)):
        return None
    if manifest["sample_ids"] != select_samples(data.targets, limit, per_class, seed, data.task).tolist():
        return None
    index, count = shard
    # content, not just existence, as ``plan_model`` checks: a corrupt chunk is removed here and computed then
    if any(store.read_chunk(key, manifest, j, data.meta.get("stamp")) is None
           for j in range(index, store.n_chunks(manifest), count)):
        return None
    return {
        "model": identity.name, "dataset": data.name, "split": data.split, "samples": manifest["n_samples"],
        "computed": 0, "seconds": 0.0, "images_per_s": None,
        "complete": not store.missing_chunks(key, manifest), "entry": key.dirname(),
        "model_info": {**model_info, "input_size": tuple(model_info["input_size"]),
                       "preprocessing": identity.preprocessing},  # as ``LoadedModel.info``
    }


def checked_identities(models: Iterable[str], cache_dir: str | os.PathLike | None) -> dict[str, ModelIdentity | None]:
    """{model: its ``known_identity``, or None}, every model without one checked by ``check_model_name`` (a zoo's are
    registered from ``cache_dir``; a known one loaded before, and its check would import timm), before any dataset
    is opened: a derived task takes seconds to open, the check none."""
    identities = {name: known_identity(name, cache_dir) for name in models}
    for name, known in identities.items():
        if known is None:
            check_model_name(name, cache_dir)
    return identities


def load_features(model: str, dataset: str, split: str | None = None, **options) -> FeatureSet:
    """Features of ``model`` on ``dataset``/``split`` from the cache, extracting what is missing first.

    ``options``: the keyword arguments of ``load_feature_pairs`` (``limit``, ``per_class``, ``seed``,
    ``cache_dir``, ``data_root``, ``extract_missing``, ``batch_size``, ``device``, ``precision``, ``workers``,
    ``download``,
    ``chunk_size``, ``progress``). The model and dataset are opened once: the cache key needs the model's weight
    fingerprint and preprocessing, and the same loaded model computes any missing chunks.
    """
    return load_feature_pairs([(model, dataset)], split, **options)[model, dataset]


def load_feature_pairs(
    pairs: Iterable[tuple[str, str]],
    split: str | None = None,
    *,
    limit: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    data_root: str | None = None,
    extract_missing: bool = True,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    download: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: ProgressFn | None = None,
) -> dict[tuple[str, str], FeatureSet]:
    """``load_features`` for many (model, dataset) pairs: {(model, dataset): FeatureSet}.

    Each model is built at most once and each dataset opened once, however many pairs share them (building a
    model takes 0.2-0.4 s on CPU after seconds of importing timm, and a derived task can take seconds to open,
    while reading cached features takes ~0.01 s); only one model is held at a time. A model loaded before with the
    same weights and libraries (``known_identity``) is built only if features are missing. ``progress``: as in
    ``extract``, plus the row "features" counting the pairs loaded.
    """
    store = FeatureStore(cache_dir)
    by_model: dict[str, list[str]] = {}
    for model, dataset in pairs:
        by_model.setdefault(model, []).append(dataset)
    identities = checked_identities(by_model, cache_dir)
    out: dict[tuple[str, str], FeatureSet] = {}
    n_pairs = sum(len(dict.fromkeys(names)) for names in by_model.values())
    # every dataset opened (and its subsample checked) before the first model is built
    datasets: dict[str, ImageDataset] = {}
    for dataset in dict.fromkeys(d for names in by_model.values() for d in names):
        report(progress, "features", f"opening dataset {dataset}", 0, n_pairs)
        datasets[dataset] = open_subset(dataset, split, data_root, download, limit, per_class, seed)

    def build(model: str) -> LoadedModel:
        report(progress, "features", f"loading model {model}", len(out), n_pairs)
        loaded = load_model(model)
        identities[model] = remember_identity(model, loaded, cache_dir)
        return loaded

    for model, names in by_model.items():
        # built now only when its identity is unknown (never loaded with these weights and libraries)
        loaded = build(model) if identities[model] is None else None
        for dataset in dict.fromkeys(names):
            data = datasets[dataset]

            def complete() -> FeatureKey:
                """Extract what is missing: the key of the model as built (the identity remembered is its own)."""
                nonlocal loaded
                if loaded is None:
                    loaded = build(model)
                dev = resolve_device(device)
                extract_model(store, loaded, data, limit=limit, per_class=per_class, seed=seed, chunk_size=chunk_size,
                              shard=(0, 1), batch_size=batch_size, device=dev, precision=precision,
                              workers=resolve_workers(workers, dev), progress=progress)
                return feature_key(loaded.identity, data, limit, per_class, seed)

            key = feature_key(identities[model], data, limit, per_class, seed)
            manifest = store.manifest(key)
            if extract_missing and (manifest is None or store.missing_chunks(key, manifest)):
                key = complete()
            report(progress, "features", f"reading the features of {model} on {dataset}", len(out), n_pairs)
            try:
                out[model, dataset] = store.load(key, data.task, data.class_names, data.meta.get("stamp"))
            except IncompleteEntryError:
                if not extract_missing:
                    raise
                key = complete()  # a chunk was found corrupt or stale while reading: recompute it, as the warning said
                out[model, dataset] = store.load(key, data.task, data.class_names, data.meta.get("stamp"))
    report(progress, "features", "features loaded", len(out), n_pairs)
    return out
