"""Model registry and loading: packaged offline models, any timm name, torchvision models and local checkpoints.

Names understood by ``load_model``:

* a registered name (``modelrank list models``), e.g. ``efficientnet_lite0`` — weights ship in a package;
* any timm model name, e.g. ``resnet50`` — pretrained weights from the Hugging Face hub (needs network);
* ``tv:NAME`` — a torchvision classification model with its default weights (needs network);
* ``ARCH@PATH`` (or ``checkpoint=PATH``) — ARCH (any of the above) with weights from a local state-dict file;
* ``random:ARCH`` — ARCH randomly initialised (seed 0): the baseline every pretrained model should beat.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, MissingResourceError, UnknownNameError, error_reason
from . import packaged  # noqa: F401  (registers the offline models)
from .base import MODELS, LoadedModel, ModelSpec, find_head, register_model

if TYPE_CHECKING:  # imported where a model is read or built: the registry and identities are used without torch
    import torch
    from torch import nn

GENERIC_NAMES = [
    ["<timm name>", "timm", "any", "hub (network)", "any of timm.list_models(), pretrained from the hub"],
    ["tv:<name>", "torchvision", "any", "hub (network)", "a torchvision classification model, default weights"],
    ["<arch>@<path>", "checkpoint", "any", "local file", "an architecture above with a local state dict"],
    ["random:<arch>", "timm", "any", "none", "randomly initialised (seed 0): the no-transfer baseline"],
]


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a weights file, cached by (path, size, mtime) so repeated runs do not rehash."""
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FINGERPRINTS[key] = digest.hexdigest()[:16]
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple, str] = {}


def _check_weight_file(path: Path) -> None:
    if path.is_dir():
        raise InvalidInputError(f"weight file {path} is a folder; give the state-dict file inside it")
    if not path.is_file():
        raise MissingResourceError(f"weight file {path} does not exist")


def check_zip_members(path: Path) -> None:
    """Refuse a torch (zip) file whose members' bytes fail their CRC-32. torch's reader never checks it: a flipped
    bit in a tensor's bytes (a damaged copy, bit rot) loaded without a word as other weights, and the features,
    scores and fine-tunes of a damaged model were cached as the model's (its fingerprint is the damaged file's).
    Reading the file costs about what hashing it for that fingerprint does. A file that is no zip (torch's legacy
    format) or that zipfile cannot parse is left to ``torch.load`` to judge."""
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zlib.error:  # a deflated member whose bytes do not inflate: damaged as well
        damaged = "a compressed member"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError):
        return
    if damaged is not None:
        raise InvalidInputError(f"cannot read weights {path}: the bytes of {damaged} in it fail their CRC-32 check "
                                "(the file is damaged: copy or download it again)")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file; unwraps ``{"state_dict": ...}`` / ``{"model": ...}``."""
    import torch

    path = Path(path).expanduser()  # the shell leaves the ~ of ARCH@~/w.pth alone
    _check_weight_file(path)
    if path.stat().st_size == 0:
        raise InvalidInputError(f"weight file {path} is empty")
    if path.suffix != ".safetensors":
        check_zip_members(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(os.fspath(path))
        else:
            with warnings.catch_warnings():
                # Any pickle that is no torch file warns "please file an issue" to torch before it is refused.
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text would advise weights_only=False, i.e. running the file's code
        raise InvalidInputError(f"cannot read weights {path}: not a torch file of plain tensors (it may be damaged, "
                                "or hold objects that only running its code could rebuild)") from None
    except Exception as exc:  # every decoder error means the same thing to the user
        raise InvalidInputError(f"cannot read weights {path}: {error_reason(exc)}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"{path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _create_timm(arch: str, pretrained: bool, num_classes: int | None = None) -> nn.Module:
    import timm
    import torch

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    torch.manual_seed(0)  # random:ARCH and fresh heads are reproducible
    return timm.create_model(arch, pretrained=pretrained, **kwargs)


def _timm_transform(net: nn.Module, input_size: int | None = None):
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({"input_size": (3, input_size, input_size)} if input_size else {}, model=net)
    return create_transform(**config), config


def _head_classes(state: dict[str, torch.Tensor], net: nn.Module) -> int | None:
    """Number of classes of the head stored in ``state`` (fine-tuned checkpoints rarely have 1000)."""
    head = find_head(net)
    if head is None:
        return None
    names = {id(m): n for n, m in net.named_modules()}
    weight = state.get(f"{names[id(head)]}.weight")
    return int(weight.shape[0]) if weight is not None else None


def _check_arch(arch: str) -> None:
    """UnknownNameError, naming the closest names, unless ``arch`` is a timm architecture or ``tv:NAME``."""
    if arch.startswith(("tv:", "torchvision:")):
        import torchvision.models as tvm

        tv_name = arch.split(":", 1)[1]
        if tv_name not in tvm.list_models(module=tvm):
            close = difflib.get_close_matches(tv_name, tvm.list_models(module=tvm), n=3)
            raise UnknownNameError(f"unknown torchvision model {tv_name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    elif arch not in _timm_names():
        # Offline (registered) models first: they are the ones that work without network.
        close = difflib.get_close_matches(arch, MODELS.names(), n=3, cutoff=0.6)
        close += [n for n in difflib.get_close_matches(arch, _timm_names(), n=3, cutoff=0.6) if n not in close]
        close = close[:3]
        raise UnknownNameError(f"unknown model {arch!r}" + (f"; did you mean {', '.join(close)}?" if close else "; see `modelrank list models`"))


def _split_checkpoint(name: str) -> tuple[str, str]:
    """``ARCH@PATH`` -> (ARCH, PATH); a name without ``@`` -> (name, ""). Nothing after the ``@`` is an error:
    ``-m resnet50@$CKPT`` with CKPT unset ran the hub's (or the packaged) weights in place of the user's file."""
    name, at, checkpoint = name.partition("@")
    if at and not checkpoint:
        raise InvalidInputError(f"model {name}@ names no weight file after the @; give {name}@PATH, or {name} for "
                                "its own weights")
    if at and name.startswith("random:"):
        # The file's weights were loaded and the random initialisation dropped without a word: the "no-transfer
        # baseline" of a ranking was a trained model, under a name that says random.
        raise InvalidInputError(f"model {name}@{checkpoint} asks for random weights and a weight file; give "
                                f"{name} for the random baseline, or {name.removeprefix('random:')}@{checkpoint}")
    return name, checkpoint


def check_model_name(name: str, cache_dir: str | os.PathLike | None = None) -> None:
    """Fail as ``load_model(name)`` would on an unknown name or a missing checkpoint file, without building the
    network or reading weights: commands check every name before hours of work on the first one."""
    if name.startswith("zoo/") and name not in MODELS:
        from ..zoo.registry import register_zoo_models, zoo_root

        register_zoo_models(cache_dir)
        if name not in MODELS:  # a zoo's models are registered only from the cache that built it
            raise UnknownNameError(f"unknown zoo model {name!r}: the zoos built in {zoo_root(cache_dir)} have no such "
                                   "model (`modelrank zoo ls`); zoo models live in the cache that built them, so point "
                                   "--cache-dir or MODELRANK_CACHE at that cache")
    name, checkpoint = _split_checkpoint(name)
    if checkpoint:
        _check_weight_file(Path(checkpoint).expanduser())
    if name not in MODELS:
        _check_arch(name.removeprefix("random:"))


def weights_fingerprint(name: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The ``file_fingerprint`` of the weights file behind ``name`` (``ARCH@PATH``, a zoo model, a packaged model),
    None where the name fixes the weights (``random:``, the hub), without building the network: what tells a
    fine-tune record of a file's weights from one of its earlier contents."""
    if name.startswith("zoo/") and name not in MODELS:
        from ..zoo.registry import register_zoo_models

        register_zoo_models(cache_dir)
    name, checkpoint = _split_checkpoint(name)
    if checkpoint:
        return file_fingerprint(os.path.expanduser(checkpoint))
    spec = MODELS.entry(name).obj if name in MODELS else None
    path = spec.weights() if spec is not None and spec.weights else None
    return file_fingerprint(path) if path else None


def _build_arch(
    arch: str, pretrained: bool, num_classes: int | None = None, input_size: int | None = None
) -> tuple[nn.Module, Any, dict]:
    """Network + eval transform + data config for a timm architecture or ``tv:NAME`` (``input_size``: timm only)."""
    _check_arch(arch)
    if arch.startswith(("tv:", "torchvision:")):
        if input_size:
            raise InvalidInputError(f"a custom input size is supported for timm models, not {arch}")
        import torchvision.models as tvm

        tv_name = arch.split(":", 1)[1]
        weights = tvm.get_model_weights(tv_name).DEFAULT if pretrained else None
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        try:
            net = tvm.get_model(tv_name, weights=weights, **kwargs)
        except (OSError, RuntimeError) as exc:
            raise MissingResourceError(
                f"cannot download torchvision weights for {tv_name} ({type(exc).__name__}); "
                f"without network use {arch}@weights.pth with a local file"
            ) from None
        transform = (weights or tvm.get_model_weights(tv_name).DEFAULT).transforms()
        return net, transform, {"input_size": (3, transform.crop_size[0], transform.crop_size[0])}
    try:
        net = _create_timm(arch, pretrained, num_classes)
    except Exception as exc:  # the hub raises a zoo of exception types when offline
        raise MissingResourceError(
            f"cannot fetch pretrained weights for {arch} ({type(exc).__name__}: {error_reason(exc, 120)}); "
            f"offline, use a packaged model (modelrank list models) or {arch}@weights.safetensors"
        ) from None
    transform, config = _timm_transform(net, input_size)
    return net, transform, config


def load_model(name: str, checkpoint: str | None = None, input_size: int | None = None) -> LoadedModel:
    """Load a model by name (see the module docstring) ready for feature extraction on the CPU.

    ``input_size`` overrides the square side the preprocessing resizes to (default: the registered model's
    ``input_size``, else the architecture's own).
    """
    if name.startswith("zoo/") and name not in MODELS:
        from ..zoo.registry import register_zoo_models

        register_zoo_models()
    if "@" in name:
        if checkpoint:
            raise InvalidInputError(f"give the checkpoint either as {name} or with --checkpoint, not both")
        name, checkpoint = _split_checkpoint(name)
    elif checkpoint:
        name, checkpoint = _split_checkpoint(f"{name}@{checkpoint}")  # the checks of the same name as ARCH@PATH
    checkpoint = os.path.expanduser(checkpoint) if checkpoint else checkpoint  # ARCH@~/w.pth: the shell leaves ~
    spec: ModelSpec | None = MODELS.entry(name).obj if name in MODELS else None
    arch = spec.arch if spec else name
    random_init = arch.startswith("random:")
    arch = arch.removeprefix("random:")
    input_size = input_size or (spec.input_size if spec else None)

    if checkpoint:
        probe, _, _ = _build_arch(arch, pretrained=False)
        state = _unwrapped(read_state_dict(checkpoint), probe)
        net, transform, config = _build_arch(arch, pretrained=False, num_classes=_head_classes(state, probe),
                                             input_size=input_size)
        fingerprint, pretraining, source = file_fingerprint(checkpoint), f"checkpoint {Path(checkpoint).name}", "checkpoint"
    elif spec and spec.weights:
        path = spec.weights()
        net, transform, config = _build_arch(arch, pretrained=False, num_classes=spec.num_classes, input_size=input_size)
        state = read_state_dict(path)  # a damaged installed file: one line, as for the user's own
        fingerprint, pretraining, source = file_fingerprint(path), spec.pretraining, spec.source
    else:
        net, transform, config = _build_arch(arch, pretrained=not random_init, input_size=input_size)
        state = None
        fingerprint = _random_fingerprint(arch) if random_init else _hub_fingerprint(arch, net)
        pretraining = "none (random init)" if random_init else "hub default"
        source = "timm" if not arch.startswith("tv:") else "torchvision"
    if state is not None:
        if spec and spec.remap and not checkpoint:
            state = spec.remap(state, net)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:  # torch's first line only says "Error(s) in loading state_dict for ResNet:"
            raise InvalidInputError(f"weights do not fit {arch}: {_misfit(state, net) or error_reason(exc)}") from None

    head = find_head(net)
    info = {
        "arch": arch,
        "family": spec.family if spec else arch.split(":")[-1].rstrip("0123456789_").split("_")[0],
        "params": sum(p.numel() for p in net.parameters()),
        "input_size": tuple(config.get("input_size", ())),
        "pretraining": pretraining,
        "source": source,
        "num_classes": int(head.out_features) if head is not None else 0,
        "preprocessing": repr(transform),
        **(spec.meta if spec else {}),
    }
    display = f"{name}@{Path(checkpoint).name}" if checkpoint else (f"random:{arch}" if random_init else name)
    return LoadedModel(display, net, transform, fingerprint, info)


def _random_fingerprint(arch: str) -> str:
    """What names seed-0 random weights: the seed and the versions whose initialisers draw them (a new timm or
    torch may initialise a layer otherwise, and the cached features of the old weights would be reused)."""
    import timm
    import torch
    import torchvision

    library = f"torchvision-{torchvision.__version__}" if arch.startswith(("tv:", "torchvision:")) else \
        f"timm-{timm.__version__}"
    return f"random-seed0:{library}:torch-{torch.__version__}"


def _hub_fingerprint(arch: str, net: nn.Module) -> str:
    """What names the weights the hub gave for ``arch``: its default in the installed timm or torchvision, which a
    new version may change (timm's ``resnet50`` was the torchvision weights, then ``a1_in1k``). The timm name with
    its tag (``resnet50.a1_in1k``), or the torchvision weights' URL (its file name holds their hash)."""
    if arch.startswith(("tv:", "torchvision:")):
        import torchvision.models as tvm

        return f"hub:{tvm.get_model_weights(arch.split(':', 1)[1]).DEFAULT.url}"
    cfg = getattr(net, "pretrained_cfg", None) or {}
    tagged = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("architecture") and cfg.get("tag") else arch
    return f"hub:{tagged}"


def _unwrapped(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` without the one leading ``PREFIX.`` that every name in it carries, when the names without it are
    exactly the network's: the state dict of a training wrapper that holds the network as one attribute (a
    Lightning module's ``self.model``, a ``backbone``). Anything else is returned as it is (``_misfit`` then says how
    it differs)."""
    heads = {name.split(".", 1)[0] for name in state}
    if len(heads) != 1 or not all("." in name for name in state):
        return state
    prefix = f"{heads.pop()}."
    inner = {name.removeprefix(prefix): tensor for name, tensor in state.items()}
    return inner if set(inner) == set(net.state_dict()) else state


def _misfit(state: dict[str, torch.Tensor], net: nn.Module) -> str:
    """How a state dict differs from the network's own, in one line: counts of missing and unexpected tensors,
    the first of each, and the first shape that differs."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    parts = [f"{len(missing)} tensor(s) missing (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                     f"{tuple(own[k].shape)} in the model)")
    return "; ".join(parts)


def list_model_rows() -> tuple[list[str], list[list[str]]]:
    from ..zoo.registry import register_zoo_models

    register_zoo_models()  # zoo models built by `modelrank zoo build` are ordinary registry models
    rows = [[e.name, e.obj.family, e.obj.pretraining, e.obj.source, e.obj.description] for e in MODELS]
    return ["name", "family", "pretraining", "weights", "description"], rows + GENERIC_NAMES


__all__ = ["MODELS", "LoadedModel", "ModelSpec", "check_model_name", "list_model_rows", "load_model", "read_state_dict", "register_model"]
