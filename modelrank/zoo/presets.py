"""What each preset builds and measures. ``ci`` runs in seconds on tiny random-init models (for the tests);
``demo`` builds a 12 + 3 model zoo in minutes on 2 CPU cores; ``full`` adds Fashion-MNIST (Debian package
``dataset-fashion-mnist``) as a fifth source, 8 more sampled target tasks, more training data, 5 probe seeds,
and fine-tuning of every model on three target tasks (last two stages + head) as a second ground truth.

Budget choices for CPUs (measured, see README): every zoo model is fine-tuned and read at a reduced square
input (EfficientNet and ResNet work at any size; the source images are 8x8 to 32x32), and only its last stages
are trained (``FullConfig.train_stages``), whose frozen-prefix activations are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnknownNameError
from ..finetune.full import FullConfig
from .tasks import CI_TASKS, HANDPICKED_TASKS, SAMPLED_DEMO, SAMPLED_FULL


@dataclass(frozen=True)
class PoolConfig:
    """The benchmark's pool stage (``modelrank.zoo.pool``): ``train_tasks`` + ``held_out_tasks`` tasks sampled from
    the preset's target tasks (``ways`` classes x ``shots`` images, linear-probe truth on the other images of
    those classes), held-out tasks from the target tasks of about ``held_out_fraction`` (whole overlap groups);
    ``learners`` (row -> (learner, options)) are trained on the training tasks and compared on the held-out ones
    with the model prior and one ``metric`` row per score in ``metrics`` (added by the stage)."""

    train_tasks: int
    held_out_tasks: int
    ways: tuple[int, ...] = (2, 3, 5)
    shots: tuple[int, ...] = (5, 10, 20)
    #: test images per class of a probe (None: every image of the task's classes that is not a shot)
    test_per_class: int | None = None
    max_draws: int = 3
    held_out_fraction: float = 0.3
    metrics: tuple[str, ...] = ("logme", "hscore_reg")
    learners: dict[str, tuple[str, dict]] = field(default_factory=lambda: {
        "task_attention": ("task_attention", {}), "graph": ("graph", {}), "spider": ("spider", {})})
    k_observed: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Preset:
    name: str
    #: short name -> registered base model (ImageNet-pretrained, or random:ARCH for the ci preset)
    archs: dict[str, str]
    #: registered source datasets (``source/...``): every arch is fine-tuned on every source
    sources: tuple[str, ...]
    #: also rank the base models themselves (``zoo/<preset>/<arch>-imagenet``)
    include_base: bool
    input_size: int
    source_training: FullConfig
    tasks: tuple[str, ...]
    #: linear probes per (model, task) with different split seeds: their spread is the seed noise
    probe_seeds: int = 3
    #: fine-tuning of every model on target tasks as a second ground truth (None: linear probe only)
    task_finetuning: FullConfig | None = None
    #: the tasks that get that fine-tuning (None: all of them)
    finetune_tasks: tuple[str, ...] | None = None
    extract_batch: int = 64
    metrics: tuple[str, ...] | str = "all"
    #: the pool of sampled tasks the learned rankers train and are evaluated on (None: no pool stage)
    pool: PoolConfig | None = None
    notes: str = field(default="", compare=False)

    def zoo_name(self, arch: str, source: str) -> str:
        return f"zoo/{self.name}/{arch}-{source.removeprefix('source/')}"

    def base_name(self, arch: str) -> str:
        return f"zoo/{self.name}/{arch}-imagenet"


LITE = {"lite0": "efficientnet_lite0", "lite1": "efficientnet_lite1", "lite2": "efficientnet_lite2"}

PRESETS = {
    "ci": Preset(
        name="ci",
        archs={"tinyeff": "random:test_efficientnet", "tinyres": "random:test_resnet"},
        sources=("source/digits", "source/animals-a"),
        include_base=False,
        input_size=32,
        source_training=FullConfig(epochs=2, batch_size=16, lr=0.05, per_class=8, train_stages=2, patience=2, seed=0, input_size=32),
        tasks=tuple(t.name for t in CI_TASKS),
        probe_seeds=2,
        task_finetuning=FullConfig(epochs=1, batch_size=8, lr=0.01, train_stages=1, patience=1, seed=0, input_size=32),
        extract_batch=32,
        metrics=("logme", "hscore", "leep", "nce"),
        pool=PoolConfig(12, 6, ways=(2, 3), shots=(3, 5), test_per_class=5, max_draws=6, held_out_fraction=0.5,
                        learners={"task_attention": ("task_attention", {"inner_draws": 2}),
                                  "graph": ("graph", {"epochs": 20}), "spider": ("spider", {"episodes": 20})},
                        k_observed=2),
    ),
    "demo": Preset(
        name="demo",
        archs=LITE,
        sources=("source/digits", "source/mnist", "source/animals-a", "source/animals-b"),
        include_base=True,
        input_size=48,
        source_training=FullConfig(epochs=8, batch_size=32, lr=0.02, per_class=100, train_stages=2, patience=3, seed=0, input_size=48),
        tasks=tuple(t.name for t in [*HANDPICKED_TASKS, *SAMPLED_DEMO]),
        probe_seeds=5,
        pool=PoolConfig(200, 30),
    ),
    "full": Preset(
        name="full",
        archs=LITE,
        sources=("source/digits", "source/mnist", "source/animals-a", "source/animals-b", "source/fashion"),
        include_base=True,
        input_size=48,
        source_training=FullConfig(epochs=10, batch_size=32, lr=0.02, per_class=150, train_stages=2, patience=3, seed=0, input_size=48),
        tasks=tuple(t.name for t in [*HANDPICKED_TASKS, *SAMPLED_DEMO, *SAMPLED_FULL]),
        probe_seeds=5,
        task_finetuning=FullConfig(epochs=4, batch_size=32, lr=0.01, train_stages=2, patience=2, seed=0, input_size=48),
        finetune_tasks=("task/faces", "task/textures", "task/animals-mix5"),
        pool=PoolConfig(300, 45),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
