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
from modelrank.finetune.full import FullConfig, finetune_full
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
    (folder / "learner.json").write_text(json.dumps({"format": 1, "learner": "model_prior", "config": {}}))
    (folder / "state.pt").write_bytes(torch_payload(marker))
    with pytest.raises(InvalidInputError, match="cannot read state.pt"):
        load_learner(folder)
    code, out, err = cli("spider", "rank", str(folder), "t1")
    assert code == 2 and "cannot read state.pt" in err and "Traceback" not in err


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
