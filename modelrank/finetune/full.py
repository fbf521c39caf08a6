"""Full (or last-stages) fine-tuning of an image model on a labelled dataset: the training loop behind
`modelrank zoo build` and the "full" ground-truth protocol of `modelrank benchmark`.

Protocol: a fresh linear head (one output per training class) on the pre-trained network; SGD with Nesterov
momentum or AdamW; a cosine learning-rate schedule over all planned steps; cross-entropy; a seeded stratified
validation split of the training data picks the best epoch (early stopping with ``patience``); that epoch's
weights are scored on the test split. The fine-tuning recipe of Model Spider's and LogME's zoos (SGD, cosine,
best-on-validation), at the small scale a CPU affords.

``train_stages = k`` trains only the last ``k`` stages of the network (plus the head) and keeps the rest frozen
in eval mode, the usual budget variant (Kornblith et al. 2019, "fine-tune the top blocks"). Without data
augmentation a frozen prefix computes the same activations every epoch, so they are computed once and cached
in memory: training then costs only the trainable suffix, which is what makes a multi-source zoo affordable on
two CPU cores. Stage splitting is known for timm's EfficientNet and ResNet classes; any other architecture is
trained whole.

Resumable: after every epoch the state (weights, optimiser, scheduler, RNG, best-so-far) goes to
``checkpoint_dir/progress.pt``; a rerun with the same configuration continues from there, and a finished run
(``result.json`` + ``weights.pt``) is returned without training again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..cache import atomic_write, atomic_write_bytes, remove_stale_temporaries
from ..data import ImageDataset, load_dataset
from ..data.base import seeded_split
from ..errors import InvalidInputError, error_reason
from ..models import LoadedModel, check_zip_members, file_fingerprint, load_model, read_state_dict

OPTIMIZERS = ("sgd", "adamw")
#: Largest ``input_size``: above timm's largest classification default (800 px, EfficientNet-L2). A typo such as
#: 22400 was no error: resizing to it exhausted the memory and the kernel killed the process.
MAX_INPUT_SIZE = 1024


@dataclass(frozen=True)
class FullConfig:
    """Hyper-parameters of one fine-tuning run (all of them enter the resume/cache key)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    #: Train only the last k stages + head (None: the whole network).
    train_stages: int | None = None
    #: Stop after this many epochs without a better validation accuracy.
    patience: int = 3
    val_fraction: float = 0.15
    #: Seeded subset of at most this many training (and test) images per class (None: all).
    per_class: int | None = None
    seed: int = 0
    #: Square input side (None: the model's own preprocessing size).
    input_size: int | None = None
    label_smoothing: float = 0.0

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInputError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise InvalidInputError("fine-tuning needs epochs >= 1 and batch_size >= 2")
        if not 0 < self.val_fraction < 1:
            raise InvalidInputError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InvalidInputError("lr must be positive and weight_decay non-negative")
        if self.input_size is not None and not 1 <= self.input_size <= MAX_INPUT_SIZE:
            raise InvalidInputError(f"input_size must lie in 1 ... {MAX_INPUT_SIZE} px (or None for the model's own), "
                                    f"got {self.input_size}")
        if self.train_stages is not None and self.train_stages < 1:
            raise InvalidInputError("train_stages must be at least 1 (or None for the whole network)")


@dataclass
class FullResult:
    model: str
    dataset: str
    classes: list[str]
    n_train: int
    n_val: int
    n_test: int
    val_accuracy: float
    test_accuracy: float | None
    train_accuracy: float
    best_epoch: int
    epochs_run: int
    seconds: float
    trained_params: int
    total_params: int
    device: str
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    weights: str | None = None


def network_stages(net: nn.Module) -> list[nn.Module] | None:
    """The ordered feature stages of a timm EfficientNet or ResNet (their ``forward_features``), else None.

    ``forward_head`` (pooling, dropout, classifier) follows the last stage in both.
    """
    kind = type(net).__name__
    if kind == "EfficientNet":
        return [nn.Sequential(net.conv_stem, net.bn1), *net.blocks, nn.Sequential(net.conv_head, net.bn2)]
    if kind == "ResNet":
        return [nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool), net.layer1, net.layer2, net.layer3, net.layer4]
    return None


def _replace_head(net: nn.Module, n_classes: int) -> None:
    if hasattr(net, "reset_classifier"):
        net.reset_classifier(n_classes)
        return
    from ..models.base import find_head

    head = find_head(net)
    if head is None:
        raise InvalidInputError(f"cannot find a classification head to replace in {type(net).__name__}")
    parent_name, _, attr = next(n for n, m in net.named_modules() if m is head).rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, attr, nn.Linear(head.in_features, n_classes))


class _Split:
    """A network cut into a frozen prefix (run once, cached) and a trainable suffix + head."""

    def __init__(self, net: nn.Module, train_stages: int | None):
        self.net = net
        stages = network_stages(net)
        if stages is None or train_stages is None or train_stages >= len(stages):
            self.prefix, self.suffix, self.whole = [], stages, stages is None
        else:
            self.prefix, self.suffix, self.whole = stages[:-train_stages], stages[-train_stages:], False
        for p in net.parameters():
            p.requires_grad = not self.prefix
        for module in self.trainable_modules():
            for p in module.parameters():
                p.requires_grad = True

    def trainable_modules(self) -> list[nn.Module]:
        if self.whole or not self.prefix:
            return [self.net]
        return [*self.suffix, self.net.get_classifier()]

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def train(self) -> None:
        self.net.eval()  # frozen stages keep their BatchNorm statistics
        self.net.training = True  # forward_head's dropout reads the top-level flag
        for module in self.trainable_modules():
            module.train()

    @torch.no_grad()
    def run_prefix(self, images: torch.Tensor) -> torch.Tensor:
        for stage in self.prefix:
            images = stage(images)
        return images

    def run_suffix(self, x: torch.Tensor) -> torch.Tensor:
        if self.whole:
            return self.net(x)
        for stage in self.suffix:
            x = stage(x)
        return self.net.forward_head(x)


def _encode(model: LoadedModel, data: ImageDataset, indices: np.ndarray) -> torch.Tensor:
    if len(indices) == 0:
        return torch.empty(0)
    return torch.stack([model.transform(data.load(int(i))) for i in indices])


def _per_class_subset(targets: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    if per_class is None:
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:per_class] for c in np.unique(targets)]))


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_atomic(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _load_progress(path: Path, key: str) -> dict[str, Any] | None:
    """The saved progress of the run ``key``, or None (absent, another run's, or unreadable: start over).

    Read with ``weights_only=True``: the file holds only tensors, numbers, strings, lists and dicts, so a file
    planted in a shared cache cannot run code; anything else is refused and the run starts from scratch.
    """
    if not path.is_file():
        return None
    try:
        # torch does not check the CRC-32 of the file's members: a damaged checkpoint resumed on other weights
        check_zip_members(path)
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, or a pickle that needs more than tensors and containers
        warnings.warn(f"ignoring unreadable fine-tuning progress {path} ({error_reason(exc)}); "
                      "training from the start")
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return saved


def _weights_intact(path: Path, sha256: str | None) -> bool:
    """Whether ``path`` has the recorded sha256 (results from before the hash was recorded: whether it reads)."""
    if sha256 is not None:
        return file_fingerprint(path) == sha256
    try:
        read_state_dict(path)
    except InvalidInputError:
        return False
    return True


def _finished_result(folder: Path, key: str, keep_weights: bool) -> FullResult | None:
    """The stored result of the finished run ``key`` in ``folder``, or None (absent, another run's, or damaged).

    The weights file must still have the sha256 recorded with the result: a damaged or replaced file is
    reported and the run trained again rather than handed to ``extract``.
    """
    done, weights = folder / "result.json", folder / "weights.pt"
    if not done.is_file() or (keep_weights and not weights.is_file()):
        return None
    try:
        stored = json.loads(done.read_text())
        if stored.get("key") != key:
            return None
        result = FullResult(**stored["result"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        warnings.warn(f"ignoring damaged {done} ({exc}); training again")
        return None
    if keep_weights and not _weights_intact(weights, stored.get("weights_sha256")):
        warnings.warn(f"{weights} is not the file recorded when it was trained; training again")
        return None
    # The folder may have moved with its cache since the run: point at where the weights are now.
    result.weights = str(weights) if keep_weights else None
    return result


@torch.no_grad()
def _accuracy(split: _Split, cached: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int) -> float:
    if len(labels) == 0:
        return float("nan")
    was = split.net.training
    split.net.eval()
    correct = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with autocast:
        for start in range(0, len(labels), batch):
            logits = split.run_suffix(cached[start : start + batch].to(device))
            correct += int((logits.argmax(1).cpu() == labels[start : start + batch]).sum())
    if was:
        split.train()
    return correct / len(labels)


def finetune_full(
    model: str | LoadedModel,
    dataset: str | ImageDataset,
    *,
    split: str = "train",
    test_split: str | None = "test",
    config: FullConfig = FullConfig(),
    device: str = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    keep_weights: bool = True,
    progress: Callable[[dict[str, float]], None] | None = None,
    data_root: str | None = None,
    train: bool = True,
    retrain: bool = False,
) -> FullResult | None:
    """Fine-tune ``model`` on ``dataset``/``split`` and score the best-validation epoch on ``test_split``.

    ``model``: a registry name (``modelrank list models``) or a LoadedModel; ``dataset``: a registry name or an
    ImageDataset (then ``test_split`` must be None or the test set is passed via a name). ``checkpoint_dir``:
    where progress, the final ``weights.pt`` (a plain state dict of the fine-tuned network, new head included)
    and ``result.json`` go; None trains in memory only. ``keep_weights=False`` keeps only ``result.json``
    (ground-truth runs that nobody reloads). ``progress`` receives a dict after every epoch. ``train=False`` only
    looks: the finished run's result from ``checkpoint_dir``, or None when it has not finished (another job's share
    of a sharded grid, ``finetune.sweep.run_full_grid``). ``retrain=True`` (``finetune --force``) trains from the
    first epoch even when ``checkpoint_dir`` holds the finished run or its progress.
    """
    from ..extraction import resolve_device

    config.validate()
    train_data = load_dataset(dataset, split, root=data_root) if isinstance(dataset, str) else dataset
    test_data = load_dataset(dataset, test_split, root=data_root) if isinstance(dataset, str) and test_split else None
    if train_data.task != "classification":
        raise InvalidInputError(f"full fine-tuning supports classification datasets; {train_data.name} is {train_data.task}")
    loaded = load_model(model, input_size=config.input_size) if isinstance(model, str) else model
    dev = resolve_device(device)

    chosen = _per_class_subset(train_data.targets, config.per_class, config.seed)
    classes, encoded = np.unique(train_data.targets[chosen], return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError(f"{train_data.name}/{split} has {classes.size} class; fine-tuning needs at least 2")
    val_mask = np.zeros(len(chosen), dtype=bool)
    val_mask[seeded_split(encoded, "test", seed=config.seed, test_fraction=config.val_fraction)] = True
    train_idx, val_idx = chosen[~val_mask], chosen[val_mask]
    if len(val_idx) == 0 or len(train_idx) < 2:
        raise InvalidInputError(
            f"{len(chosen)} images of {train_data.name}/{split} (per class: {config.per_class or 'all'}) leave "
            f"{len(train_idx)} for training and {len(val_idx)} for validation ({config.val_fraction:.0%} of each "
            "class, which picks the best epoch); use more images per class"
        )
    y_train = torch.as_tensor(encoded[~val_mask], dtype=torch.long)
    y_val = torch.as_tensor(encoded[val_mask], dtype=torch.long)
    if test_data is not None:
        keep = np.flatnonzero(np.isin(test_data.targets, classes))
        keep = keep[_per_class_subset(test_data.targets[keep], config.per_class, config.seed)]
        test_idx, y_test = keep, torch.as_tensor(np.searchsorted(classes, test_data.targets[keep]), dtype=torch.long)
    else:
        test_idx, y_test = np.empty(0, dtype=np.int64), torch.empty(0, dtype=torch.long)
    names = [train_data.class_names[c] if train_data.class_names else str(c) for c in classes.tolist()]

    key = _digest({
        "model": loaded.name, "fingerprint": loaded.fingerprint, "preprocessing": loaded.info["preprocessing"],
        "dataset": train_data.name, "split": train_data.split, "n": len(train_data), "test": test_split,
        "config": asdict(config),
    })
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        finished = None if retrain and train else _finished_result(folder, key, keep_weights)
        if finished is not None or not train:
            return finished
    if not train:
        return None

    start_time = time.perf_counter()
    net = copy.deepcopy(loaded.net).cpu()
    torch.manual_seed(config.seed)
    _replace_head(net, int(classes.size))
    cut = _Split(net, config.train_stages)
    net.to(dev)
    cached = {}
    for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        images = _encode(loaded, train_data if name != "test" else test_data, idx)
        cached[name] = torch.cat([
            cut.run_prefix(images[s : s + 128].to(dev)).cpu() for s in range(0, len(images), 128)
        ]) if len(images) else images

    # channels_last: ~30% faster convolution backward on CPU (oneDNN) and on CUDA tensor cores.
    net.to(memory_format=torch.channels_last)
    cached = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in cached.items()}
    params = cut.parameters()
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_idx) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    use_amp = dev.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext

    history: list[dict[str, float]] = []
    best = {"val": -1.0, "epoch": -1, "state": None}
    first_epoch, stale, elapsed_before = 0, 0, 0.0
    progress_path = folder / "progress.pt" if folder is not None else None
    saved = _load_progress(progress_path, key) if progress_path is not None and not retrain else None
    if saved is not None:
        try:
            net.load_state_dict(saved["net"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"])
            if dev.type == "cuda" and saved.get("cuda_rng") is not None:  # dropout on the GPU draws from its own
                torch.cuda.set_rng_state(saved["cuda_rng"], dev)
            history, best, stale = saved["history"], saved["best"], saved["stale"]
            first_epoch, elapsed_before = saved["epoch"] + 1, saved["seconds"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # the right key, but tampered contents
            raise InvalidInputError(
                f"fine-tuning progress {progress_path} is damaged ({error_reason(exc)}); delete it "
                "to train from the start"
            ) from None

    epoch = first_epoch - 1
    for epoch in range(first_epoch, config.epochs):
        if stale >= config.patience:
            break
        cut.train()
        order = torch.as_tensor(np.random.default_rng([config.seed, epoch]).permutation(len(train_idx)))
        losses = []
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            if len(batch) < 2:  # BatchNorm in train mode needs two samples
                continue
            with autocast():
                loss = loss_fn(cut.run_suffix(cached["train"][batch].to(dev)), y_train[batch].to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        val_acc = _accuracy(cut, cached["val"], y_val, dev, 256)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                        "val_accuracy": val_acc, "lr": scheduler.get_last_lr()[0]})
        if val_acc > best["val"]:
            best = {"val": val_acc, "epoch": epoch, "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
            stale = 0
        else:
            stale += 1
        if progress_path is not None:
            _save_atomic({
                "key": key, "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None, "history": history,
                "best": best, "stale": stale, "epoch": epoch,
                "seconds": elapsed_before + time.perf_counter() - start_time,
            }, progress_path)
        if progress:
            progress({**history[-1], "epochs": config.epochs})
        if not np.isfinite(losses).all():
            # The weights are NaN or inf from here on: more epochs would only cost time. The run keeps its best
            # epoch (an earlier one, else this one) and says why: lr too large for this model, not a bad model.
            warnings.warn(f"{loaded.name} on {train_data.name}: the loss diverged (non-finite) in epoch {epoch} at "
                          f"lr={config.lr:g}, weight_decay={config.weight_decay:g}; this run stops at its best epoch "
                          f"({best['epoch']})")
            break

    net.load_state_dict(best["state"])
    result = FullResult(
        model=loaded.name, dataset=train_data.name, classes=names, n_train=len(train_idx), n_val=len(val_idx),
        n_test=len(test_idx), val_accuracy=best["val"],
        test_accuracy=_accuracy(cut, cached["test"], y_test, dev, 256) if len(test_idx) else None,
        train_accuracy=_accuracy(cut, cached["train"], y_train, dev, 256), best_epoch=best["epoch"],
        epochs_run=len(history), seconds=round(elapsed_before + time.perf_counter() - start_time, 2),
        trained_params=sum(p.numel() for p in cut.parameters()), total_params=sum(p.numel() for p in net.parameters()),
        device=str(dev), config=asdict(config), history=history,
    )
    net.cpu()
    if folder is not None:
        stored = {"key": key, "result": asdict(result)}
        if keep_weights:
            _save_atomic(net.state_dict(), folder / "weights.pt")
            result.weights = stored["result"]["weights"] = str(folder / "weights.pt")
            stored["weights_sha256"] = file_fingerprint(folder / "weights.pt")
        atomic_write_bytes(folder / "result.json", json.dumps(stored, indent=1).encode())
        if progress_path is not None and progress_path.is_file():
            progress_path.unlink()
    return result
