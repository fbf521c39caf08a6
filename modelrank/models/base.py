"""A loaded model: the network, its own preprocessing, and a way to read penultimate features and source logits.

Features are the INPUT of the classification head (pooled, pre-classifier), read with a forward hook on the head
so that one mechanism serves timm, torchvision and checkpoint models alike; the head's output is the source
logits that LEEP, NCE and PACTran need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..registry import Registry

if TYPE_CHECKING:  # torch takes seconds to import: the registry and cache keys are read without it
    import torch
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: a name plus a config (the timm pattern)."""

    name: str
    arch: str
    family: str
    pretraining: str
    source: str
    #: Returns the path of a state dict for ``arch`` (``None``: build randomly initialised).
    weights: Callable[[], str | None] | None = None
    #: Map a foreign state dict's keys onto the timm model's (``None``: keys already match).
    remap: Callable[[dict, nn.Module], dict] | None = None
    description: str = ""
    #: Square input side the preprocessing resizes to (``None``: the architecture's default, e.g. 224).
    input_size: int | None = None
    #: Classes of the stored head when it is not the architecture's default (fine-tuned zoo models).
    num_classes: int | None = None
    #: Extra facts shown in ``LoadedModel.info`` (e.g. a zoo model's source dataset and accuracy).
    meta: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, **config: Any):
    """``@register_model("efficientnet_lite0", arch=..., ...)`` on a zero-argument weights function."""

    def decorator(weights: Callable[[], str | None]) -> Callable[[], str | None]:
        MODELS.add(name, ModelSpec(name=name, weights=weights, **config))
        return weights

    return decorator


def find_head(net: nn.Module) -> nn.Module | None:
    """The final classification layer: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    from torch import nn

    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        if isinstance(head, nn.Linear):
            return head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


@dataclass(frozen=True)
class ModelIdentity:
    """What a model contributes to a feature-cache key (``extraction.feature_key``): its display name, what
    identifies its weights and its preprocessing."""

    name: str
    fingerprint: str
    preprocessing: str


@dataclass
class LoadedModel:
    name: str
    net: nn.Module
    transform: Callable
    #: What identifies these exact weights in the cache key (a file hash, a hub tag, "random-seed0").
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.net.eval()
        self.head = find_head(self.net)

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.name, self.fingerprint, self.info["preprocessing"])

    @property
    def has_source_head(self) -> bool:
        return self.head is not None and self.info.get("num_classes", 0) > 0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features (n, d), source logits (n, k) or None) for a batch of preprocessed images."""
        import torch

        with torch.no_grad():
            return self._forward(images)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.head is None:
            return self.net(images).flatten(1), None
        captured: dict[str, torch.Tensor] = {}

        def hook(_module, inputs, output):
            captured["features"] = inputs[0]
            captured["logits"] = output

        handle = self.head.register_forward_hook(hook)
        try:
            self.net(images)
        finally:
            handle.remove()
        return captured["features"].flatten(1), captured["logits"]
