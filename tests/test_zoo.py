"""The offline zoo: derived datasets, the fine-tuning loop (determinism, resume) and `zoo build` (registry, cache)."""

import json

import numpy as np
import pytest
import torch

from modelrank.data import load_dataset
from modelrank.errors import InvalidInputError, UnknownNameError
from modelrank.finetune.full import FullConfig, finetune_full, network_stages
from modelrank.models import MODELS, list_model_rows, load_model
from modelrank.zoo.tasks import DERIVED, apply_shift, sample_tasks


TINY = FullConfig(epochs=3, batch_size=16, lr=0.05, per_class=12, train_stages=2, patience=5, seed=0, input_size=32)


# ------------------------------------------------------------------------------------------ datasets
def test_derived_task_keeps_only_its_classes_relabelled_and_is_deterministic():
    spec = DERIVED["task/ci-digits-invert3"]
    data = load_dataset("task/ci-digits-invert3", "all")
    assert data.class_names == ["zero", "one", "two"]
    assert np.bincount(data.targets).tolist() == [12, 12, 12]
    again = load_dataset("task/ci-digits-invert3", "all")
    assert np.array_equal(np.asarray(data.load(5)), np.asarray(again.load(5)))
    train, test = load_dataset(spec.name, "train"), load_dataset(spec.name, "test")
    assert len(train) + len(test) == len(data)
    # The samples come from the digits test split: the zoo trains on the train split only.
    base = load_dataset("digits", "test")
    original = np.asarray(base.load(0).convert("L"), dtype=np.int16)
    assert np.array_equal(np.asarray(apply_shift(base.load(0), "invert", (0, 0)).convert("L")), 255 - original)


def test_shifts_change_pixels_reproducibly():
    image = load_dataset("faces", "all").load(3)
    noisy = [np.asarray(apply_shift(image, "noise", (1, 3))) for _ in range(2)]
    assert np.array_equal(noisy[0], noisy[1])
    assert not np.array_equal(noisy[0], np.asarray(apply_shift(image, "noise", (2, 3))))
    for shift in ("blur", "rotate"):
        assert np.asarray(apply_shift(image, shift, (0, 0))).shape == np.asarray(image).shape
    with pytest.raises(InvalidInputError):
        apply_shift(image, "sepia", (0, 0))


def test_sampled_tasks_are_seeded_and_loadable():
    first, second = sample_tasks(4, 7, ("animal-mnist", "digits")), sample_tasks(4, 7, ("animal-mnist", "digits"))
    assert first == second and len({t.name for t in first}) == 4
    registered = [name for name in DERIVED if name.startswith("task/s1-")]
    data = load_dataset(registered[0], "all")
    assert len(data.class_names) >= 2 and len(data) == len(data.class_names) * DERIVED[registered[0]].per_class


def test_packaged_image_datasets():
    textures = load_dataset("textures", "all")
    assert len(textures) == 768 and textures.class_names == ["brick", "grass", "gravel"]
    faces = load_dataset("faces", "all")
    assert np.bincount(faces.targets).tolist() == [100, 100]
    mnist = load_dataset("mnist-sample", "test")
    assert len(mnist) == 1000 and mnist.load(0).size == (28, 28)


# ---------------------------------------------------------------------------------------- fine-tuning
@pytest.mark.parametrize("arch", ["test_efficientnet", "test_resnet"])
def test_stage_split_reproduces_the_network(arch):
    import timm

    net = timm.create_model(arch).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        y = x
        for stage in network_stages(net):
            y = stage(y)
        torch.testing.assert_close(net.forward_head(y), net(x))


def test_input_size_override_sets_the_preprocessing():
    model = load_model("random:test_resnet", input_size=48)
    assert model.info["input_size"] == (3, 48, 48)
    assert load_model("random:test_resnet").info["input_size"] != (3, 48, 48)


def test_finetuning_is_deterministic_and_resumes_after_interruption(tmp_path):
    reference = finetune_full("random:test_efficientnet", "source/animals-a", config=TINY, checkpoint_dir=tmp_path / "a")
    assert reference.n_train + reference.n_val == 60 and reference.classes[0] == "bear"
    assert 0 < reference.trained_params < reference.total_params and reference.epochs_run == 3

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(info):
        if info["epoch"] == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        finetune_full("random:test_efficientnet", "source/animals-a", config=TINY, checkpoint_dir=tmp_path / "b",
                      progress=stop_after_first_epoch)
    assert not (tmp_path / "b" / "result.json").exists()
    seen = []
    resumed = finetune_full("random:test_efficientnet", "source/animals-a", config=TINY, checkpoint_dir=tmp_path / "b",
                            progress=lambda info: seen.append(info["epoch"]))
    assert seen == [1, 2]  # epoch 0 came from the checkpoint
    assert resumed.history == reference.history
    assert resumed.test_accuracy == reference.test_accuracy
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A finished run is returned from its folder without training.
    again = finetune_full("random:test_efficientnet", "source/animals-a", config=TINY, checkpoint_dir=tmp_path / "a",
                          progress=lambda info: pytest.fail("trained again"))
    assert again.history == reference.history


def test_finetuning_learns_a_real_task():
    """Whole-network training of a tiny random-init CNN must beat chance clearly on faces vs non-faces."""
    config = FullConfig(epochs=6, batch_size=16, lr=0.05, train_stages=None, patience=6, seed=0, input_size=32)
    result = finetune_full("random:test_resnet", "faces", split="train", test_split="test", config=config)
    assert result.train_accuracy > 0.8
    assert result.test_accuracy > 0.65


def test_finetuning_rejects_bad_configs():
    with pytest.raises(InvalidInputError):
        finetune_full("random:test_resnet", "faces", config=FullConfig(optimizer="lion"))
    with pytest.raises(InvalidInputError):
        finetune_full("random:test_resnet", "faces", config=FullConfig(train_stages=0))


# ------------------------------------------------------------------------------------------- zoo build
def test_zoo_build_registers_ordinary_models_and_resumes(cache_dir):
    from modelrank.zoo.build import build_zoo
    from modelrank.zoo.presets import get_preset
    from modelrank.zoo.registry import manifest_path

    events = []
    zoo = build_zoo("ci", cache_dir=cache_dir, on_event=lambda kind, name, info: events.append((kind, name)))
    preset = get_preset("ci")
    assert len(zoo) == len(preset.archs) * len(preset.sources)
    assert {kind for kind, _ in events} == {"start", "epoch", "done"}
    manifest = json.loads(manifest_path("ci", cache_dir).read_text())
    record = manifest["models"]["zoo/ci/tinyeff-digits"]
    assert record["source_dataset"] == "source/digits" and record["num_classes"] == 10
    assert record["pretraining"] == "none (random init) → digits" and len(record["sha256"]) == 16

    names = [row[0] for row in list_model_rows()[1]]
    assert "zoo/ci/tinyres-animals-a" in names
    model = load_model("zoo/ci/tinyres-animals-a")
    assert model.info["num_classes"] == 5 and model.info["input_size"] == (3, 32, 32)
    assert model.info["source_dataset"] == "source/animals-a"
    assert model.fingerprint == manifest["models"]["zoo/ci/tinyres-animals-a"]["sha256"]

    events.clear()
    moved = cache_dir.parent / "moved-cache"  # a cache copied elsewhere keeps working: nothing stores absolute paths
    cache_dir.rename(moved)
    again = build_zoo("ci", cache_dir=moved, on_event=lambda kind, name, info: events.append((kind, name)))
    assert {kind for kind, _ in events} == {"start", "cached"}  # nothing retrained, and the log says so
    assert again["sha256"].tolist() == zoo["sha256"].tolist()


def test_zoo_models_work_with_extract_and_list_in_the_cli(cache_dir, cli):
    from modelrank.zoo.build import build_zoo

    build_zoo("ci", cache_dir=cache_dir)
    code, out, err = cli("list", "models")
    assert code == 0 and "zoo/ci/tinyeff-animals-a" in out
    code, out, err = cli("extract", "-m", "zoo/ci/tinyeff-animals-a", "-d", "task/ci-faces", "--split", "all")
    assert code == 0, err
    assert "zoo/ci/tinyeff-animals-a" in out
    code, out, err = cli("zoo", "ls", "--preset", "ci")
    assert code == 0 and "source/digits" in out


def test_zoo_build_without_a_source_dataset_fails_before_training(cache_dir, tmp_path, monkeypatch):
    """`zoo build --preset full` without Fashion-MNIST trained the other sources' models for minutes first."""
    import modelrank.data.packaged
    import modelrank.zoo.build
    from modelrank.errors import MissingResourceError
    from modelrank.zoo.build import build_zoo

    def trained(*args, **kwargs):
        raise AssertionError("a model trained before the sources were checked")

    monkeypatch.setattr(modelrank.data.packaged, "FASHION_DEBIAN_DIR", tmp_path / "no-fashion-mnist")
    monkeypatch.setattr(modelrank.zoo.build, "finetune_full", trained)
    with pytest.raises(MissingResourceError, match="Fashion-MNIST not found"):
        build_zoo("full", cache_dir=cache_dir, device="cpu")


def test_unknown_preset_and_zoo_model():
    from modelrank.zoo.presets import get_preset

    with pytest.raises(UnknownNameError):
        get_preset("huge")
    with pytest.raises(UnknownNameError):
        load_model("zoo/ci/never-built")
    assert "zoo/ci/never-built" not in MODELS


def test_zoo_ls_of_an_edited_manifest_lists_what_it_can(cache_dir, cli):
    """Text in params was a traceback (exit 1), one record that was no dict blanked every row (shown as "nanM"), and
    a model without a parameter count showed "nanM"."""
    record = {"name": "zoo/ci/a", "family": "test", "source_dataset": "source/digits", "num_classes": 10,
              "params": 100481, "trained_params": 47121, "input_size": 32, "source_accuracy": 0.5, "sha256": "ab"}
    models = {"zoo/ci/a": record, "zoo/ci/b": {**record, "name": "zoo/ci/b", "params": "big"},
              "zoo/ci/c": [1, 2], "zoo/ci/d": {**record, "name": "zoo/ci/d", "trained_params": None}}
    folder = cache_dir / "zoo" / "ci"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"preset": "ci", "models": models}))
    code, out, err = cli("zoo", "ls", "--preset", "ci", "--format", "json")
    assert code == 0, err
    rows = {row["model"]: row for row in json.loads(out)}
    assert set(rows) == {"zoo/ci/a", "zoo/ci/b", "zoo/ci/d"}
    assert rows["zoo/ci/a"]["params"] == "0.10M" and rows["zoo/ci/b"]["params"] == ""
    assert rows["zoo/ci/d"]["trained"] == ""
    assert "params of zoo/ci/b is not a number ('big')" in err and "the record of zoo/ci/c is damaged" in err
    assert "Traceback" not in err and len(err.splitlines()) == 2
