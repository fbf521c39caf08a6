"""A model's cache identity, remembered so that reading its cached features does not build it.

A feature-cache key holds the model's display name, weight fingerprint and preprocessing (``ModelIdentity``), and
all three come from ``load_model``, which imports timm and builds the network: most of the time of `modelrank score`
on cached features went there. ``known_identity`` returns them from a small JSON file that ``remember_identity``
wrote the first time, named by a digest of everything they depend on: the name, the registered configuration, the
sha256 of the weights file, and the versions of modelrank, torch, timm and torchvision. Any change to those is
another file, so a stale identity is never used; a damaged file is ignored and rewritten, and one file per identity
(written atomically) lets any number of processes share the folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import metadata
from typing import Any

from .. import __version__
from ..cache import atomic_write_bytes, cache_root, sha256_hex
from ..errors import ModelrankError
from . import MODELS, _split_checkpoint, weights_fingerprint
from .base import LoadedModel, ModelIdentity

#: The folder of the cache root that holds the remembered identities.
IDENTITY_FOLDER = "model-identities"
#: The libraries that build a network and its preprocessing: a new version may change either.
LIBRARIES = ("torch", "timm", "torchvision")


def _library_versions() -> dict[str, str]:
    return {"modelrank": __version__, **{name: metadata.version(name) for name in LIBRARIES}}


def _identity_key(name: str, cache_dir: str | os.PathLike | None) -> dict[str, Any]:
    """Everything ``load_model(name)``'s identity depends on, as plain JSON values."""
    weights = weights_fingerprint(name, cache_dir)  # also registers a zoo's models from cache_dir
    base, _ = _split_checkpoint(name)
    spec = MODELS.entry(base).obj if base in MODELS else None
    # The registered configuration (architecture, input size, head, weight remapping, ...), functions by name.
    config = None if spec is None else {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)}
    key = {"name": name, "config": config, "weights": weights, "versions": _library_versions()}
    named = json.dumps(key, sort_keys=True, default=lambda value: getattr(value, "__qualname__", repr(value)))
    return json.loads(named)


def _identity_path(key: dict[str, Any], cache_dir: str | os.PathLike | None):
    return cache_root(cache_dir) / IDENTITY_FOLDER / f"{sha256_hex(json.dumps(key, sort_keys=True).encode())}.json"


def known_identity(name: str, cache_dir: str | os.PathLike | None = None) -> ModelIdentity | None:
    """The identity ``load_model(name)`` gave with the same weights, configuration and library versions, or None
    (never seen, or a name ``load_model`` would refuse: its own checks then say why)."""
    try:
        key = _identity_key(name, cache_dir)
        stored = json.loads(_identity_path(key, cache_dir).read_text())
    except (ModelrankError, OSError, UnicodeDecodeError, ValueError, metadata.PackageNotFoundError):
        return None
    identity = stored.get("identity") if isinstance(stored, dict) and stored.get("key") == key else None
    fields = [field.name for field in dataclasses.fields(ModelIdentity)]
    if not (isinstance(identity, dict) and sorted(identity) == sorted(fields)
            and all(isinstance(identity[f], str) for f in fields)):
        return None
    return ModelIdentity(**identity)


def remember_identity(name: str, model: LoadedModel, cache_dir: str | os.PathLike | None = None) -> ModelIdentity:
    """``model.identity`` (of ``load_model(name)``), written for ``known_identity``; a cache that cannot be written
    (read-only, full) only means that the next command builds the model again."""
    identity = model.identity
    try:
        key = _identity_key(name, cache_dir)
        path = _identity_path(key, cache_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps({"key": key, "identity": dataclasses.asdict(identity)}).encode())
    except (ModelrankError, OSError, metadata.PackageNotFoundError):  # e.g. a library not installed as a package
        pass
    return identity
