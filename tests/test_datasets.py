"""The datasets and weights users bring to `extract`: unusual folders, CSVs and images, damaged files, the
data-loading workers they travel to, and the feature cache they land in beside other processes."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelrank.data import load_dataset
from modelrank.extraction import _TorchView

TINY = "random:test_resnet"


def _folder(root: Path, classes=("a", "b"), n: int = 3) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((9, 9, 3), 40 * c + 10 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


class _FakeDTD:
    """Stands in for torchvision's DTD (no network here): two labelled images."""

    def __init__(self, root, download=False, split="train"):
        self._labels = [0, 1]

    def __getitem__(self, i):
        return Image.fromarray(np.full((9, 9), 100 * i, np.uint8)), self._labels[i]


@pytest.mark.parametrize("kind", ["folder", "csv", "digits", "task/ci-digits-invert3", "dtd"])
def test_datasets_pickle_for_spawned_loader_workers(tmp_path, monkeypatch, kind):
    # macOS, Windows and Python 3.14 on Linux start loader workers by spawn or forkserver, which pickle the
    # dataset: a closure as `load` was "Can't pickle local object" (exit 1) on every extraction with --workers.
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "DTD", _FakeDTD)
    root = _folder(tmp_path / "data")
    if kind == "csv":
        (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"data/a/{i}.png,x{i % 2}\n" for i in range(3)))
    name = {"folder": f"folder:{root}", "csv": f"csv:{tmp_path / 'list.csv'}"}.get(kind, kind)
    data = load_dataset(name, "all" if kind in ("folder", "csv") else "test", root=str(tmp_path))
    view = pickle.loads(pickle.dumps(_TorchView(data, np.arange(2), np.asarray)))
    assert np.array_equal(view[1], np.asarray(data.load(1)))


def test_an_image_beyond_pillows_pixel_limit_is_one_line(tmp_path, cli, monkeypatch):
    # Pillow refuses images over 2 x MAX_IMAGE_PIXELS (decompression bombs) with an error that is no OSError:
    # it was a traceback and exit 1. The limit is lowered here so that the "bomb" is small.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # the model resizes to 160 x 160
    root = _folder(tmp_path / "data")
    Image.new("L", (300, 300)).save(root / "a" / "huge.png")
    code, out, err = cli("extract", "-m", TINY, "-d", f"folder:{root}", "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "huge.png" in err and "exceeds limit" in err and err.count("\n") == 1, err


def test_a_corrupt_image_met_by_a_loader_worker_is_one_line(tmp_path, cli):
    # torch re-raises a worker's exception with the worker's traceback in its message: 20 lines of "error:".
    root = _folder(tmp_path / "data")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    code, out, err = cli("extract", "-m", TINY, "-d", f"folder:{root}", "--workers", "1", "-b", "4",
                         "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and err.startswith("error: cannot read image") and "broken.png" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


@pytest.mark.parametrize("damage", ["truncated", "truncated-gzip", "foreign", "counts"])
def test_damaged_fashion_mnist_files_are_one_line(tmp_path, cli, damage):
    # A truncated IDX file was "cannot reshape" and a truncated gzip an EOFError: tracebacks, exit 1.
    import gzip

    images = _idx(np.zeros((6, 4, 4), np.uint8))
    labels = _idx(np.arange(6 if damage != "counts" else 5, dtype=np.uint8))
    suffix = ".gz" if damage == "truncated-gzip" else ""
    if damage == "truncated":
        images = images[:-7]
    elif damage == "truncated-gzip":
        images, labels = gzip.compress(images)[:-9], gzip.compress(labels)
    elif damage == "foreign":
        images = b"<html>not found</html>"
    (tmp_path / f"t10k-images-idx3-ubyte{suffix}").write_bytes(images)
    (tmp_path / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(labels)
    code, out, err = cli("extract", "-m", TINY, "-d", "fashion-mnist", "--split", "test", "--data-root", str(tmp_path),
                         "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "t10k-" in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("damage", ["truncated-gzip", "truncated-pickle", "foreign"])
def test_damaged_animal_mnist_files_are_one_line(tmp_path, cli, monkeypatch, damage):
    # The package's data files, damaged in the install: an EOFError or UnpicklingError traceback, exit 1.
    import gzip
    import sys

    import animal_mnist  # noqa: F401  (the installed one, put back after the test)

    data = pickle.dumps(np.zeros((20, 4, 4), np.uint8))
    files = {"truncated-gzip": gzip.compress(data)[:40], "truncated-pickle": gzip.compress(data[:-9]),
             "foreign": gzip.compress(b"<html>not found</html>")}
    folder = tmp_path / "site" / "animal_mnist" / "data" / "Animal_MNIST"
    folder.mkdir(parents=True)
    (folder.parents[1] / "__init__.py").write_text("")
    (folder / "animal_data_version_3.gz").write_bytes(files[damage])
    (folder / "animal_label_version_3.gz").write_bytes(gzip.compress(pickle.dumps(np.arange(20) % 10)))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "animal_mnist")
    code, out, err = cli("extract", "-m", TINY, "-d", "animal-mnist", "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and f"cannot read the animal-mnist data in {folder}" in err and err.count("\n") == 1, err


def test_complete_fashion_mnist_files_load(tmp_path):
    pixels = np.arange(6 * 16, dtype=np.uint8).reshape(6, 4, 4)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(pixels))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.arange(6, dtype=np.uint8)))
    data = load_dataset("fashion-mnist", "test", root=str(tmp_path))
    assert data.targets.tolist() == list(range(6)) and np.array_equal(np.asarray(data.load(2))[..., 0], pixels[2])


@pytest.mark.parametrize("split", ["val", "trainval", "extra"])
def test_splits_a_folder_or_csv_does_not_have_are_refused(tmp_path, cli, split):
    # They were the train cut under another name: `--split val` scored models on their training images.
    from modelrank.data import load_folder
    from modelrank.errors import InvalidInputError

    root = _folder(tmp_path / "data")
    (tmp_path / "list.csv").write_text("path,label\ndata/a/0.png,x\ndata/b/0.png,y\n")
    for name in (f"folder:{root}", f"csv:{tmp_path / 'list.csv'}"):
        code, out, err = cli("extract", "-m", TINY, "-d", name, "--split", split, "--cache-dir", str(tmp_path / "c"))
        assert code == 2 and "has splits all, train, test" in err and err.count("\n") == 1, err
    with pytest.raises(InvalidInputError, match="has splits all, train, test"):
        load_folder(str(root), split)
    assert not (tmp_path / "c").exists()


def test_a_class_folder_without_images_is_refused(tmp_path, cli):
    # It was a class with no samples: `class_names` named it, the labels of the classes after it shifted, and
    # unzipping on macOS leaves one (__MACOSX, holding only hidden "._" files).
    root = _folder(tmp_path / "data")
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._0.png").write_bytes(b"\0")
    code, out, err = cli("extract", "-m", TINY, "-d", f"folder:{root}", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "no images in class folder '__MACOSX'" in err and err.count("\n") == 1, err


def test_a_folder_that_cannot_be_listed_is_refused_not_skipped(tmp_path, cli, monkeypatch):
    # os.walk skipped it without a word: its images were left out of the data.
    root = _folder(tmp_path / "data")
    _folder(root / "a" / "locked", classes=("more",))
    real_scandir = os.scandir

    def scandir(path="."):  # as for a folder without read permission (tests run as root, which has them all)
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = cli("extract", "-m", TINY, "-d", f"folder:{root}", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and f"cannot list folder {root / 'a' / 'locked'}: Permission denied" in err, err
    assert err.count("\n") == 1


def test_symlinked_and_nested_folders_are_followed_and_hidden_ones_skipped(tmp_path):
    # A symlinked sub-folder was skipped without a word (pathlib's rglob does not follow links); ImageFolder
    # follows them.
    root = _folder(tmp_path / "data")
    elsewhere = _folder(tmp_path / "elsewhere", classes=("z",), n=2)
    (root / "a" / "more").symlink_to(elsewhere / "z", target_is_directory=True)
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)  # walked once, not forever
    (root / "b" / "deep" / "deeper").mkdir(parents=True)
    Image.new("RGB", (9, 9)).save(root / "b" / "deep" / "deeper" / "x.png")
    (root / "b" / ".thumbnails").mkdir()
    Image.new("RGB", (9, 9)).save(root / "b" / ".thumbnails" / "t.png")
    data = load_dataset(f"folder:{root}", "all")
    names = [Path(p).relative_to(root).as_posix() for p in data.load.args[0]]
    assert names == ["a/0.png", "a/1.png", "a/2.png", "a/more/0.png", "a/more/1.png",
                     "b/0.png", "b/1.png", "b/2.png", "b/deep/deeper/x.png"]
    assert data.targets.tolist() == [0] * 5 + [1] * 4


def test_images_beside_the_class_folders_are_reported_as_left_out(tmp_path):
    # They were left out without a word (ImageFolder's rule); a README beside the class folders is no news.
    root = _folder(tmp_path / "data")
    Image.new("RGB", (9, 9)).save(root / "stray.png")
    (root / "README.txt").write_text("my data")
    with pytest.warns(UserWarning, match="1 image\\(s\\) beside the class folders .* left out \\(stray.png\\)"):
        data = load_dataset(f"folder:{root}", "all")
    assert len(data) == 6
    (root / "stray.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_dataset(f"folder:{root}", "all")) == 6


def test_csv_labels_are_the_text_typed_and_only_blank_cells_are_missing(tmp_path):
    # pandas reads "NA", "None", "null" and "nan" as missing: such a class was refused as "missing values".
    from modelrank.errors import InvalidInputError

    _folder(tmp_path / "data")
    rows = [("data/a/0.png", "None"), ("data/a/1.png", "NA"), ("data/b/0.png", "null"), ("data/b/1.png", "007")]
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    data = load_dataset(f"csv:{tmp_path / 'list.csv'}", "all")
    assert data.class_names == ["007", "NA", "None", "null"] and data.targets.tolist() == [2, 1, 3, 0]
    (tmp_path / "list.csv").write_text("path,label\ndata/a/0.png,cat\ndata/a/1.png, \n")
    with pytest.raises(InvalidInputError, match="column label has missing values"):
        load_dataset(f"csv:{tmp_path / 'list.csv'}", "all")


def test_a_model_with_nothing_after_its_at_is_refused(tmp_path, cli):
    # `-m ARCH@$CKPT` with CKPT unset ran ARCH's own (hub or packaged) weights in place of the user's file.
    from modelrank.errors import InvalidInputError
    from modelrank.models import load_model

    root = _folder(tmp_path / "data")
    code, out, err = cli("extract", "-m", f"{TINY}@", "-d", f"folder:{root}", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and f"model {TINY}@ names no weight file after the @" in err and err.count("\n") == 1, err
    assert not (tmp_path / "c").exists()
    with pytest.raises(InvalidInputError, match="names no weight file"):
        load_model(f"{TINY}@")


def test_a_damaged_packaged_weights_file_is_one_line(tmp_path, cli, monkeypatch):
    # torch.load's error reached the user as a traceback of "a bug in modelrank" (exit 1).
    import torch

    import modelrank.models.packaged

    torch.save({"w": torch.zeros(4096)}, tmp_path / "weights.pth")
    data = (tmp_path / "weights.pth").read_bytes()
    (tmp_path / "weights.pth").write_bytes(data[: len(data) // 2])  # a truncated install
    monkeypatch.setattr(modelrank.models.packaged, "_package_weights", lambda index: str(tmp_path / "weights.pth"))
    root = _folder(tmp_path / "data")
    code, out, err = cli("extract", "-m", "efficientnet_lite0", "-d", f"folder:{root}", "--cache-dir",
                         str(tmp_path / "c"))
    assert code == 2 and f"cannot read weights {tmp_path / 'weights.pth'}" in err and err.count("\n") == 1, err


def test_weights_that_do_not_fit_say_how_in_one_line(tmp_path, cli):
    # torch's first line was all the user saw: "Error(s) in loading state_dict for ResNet:".
    import timm
    import torch

    state = timm.create_model("test_resnet").state_dict()
    prefixed = {f"model.{k}": v for k, v in state.items()}
    torch.save({**prefixed, "criterion.weight": torch.ones(3)}, tmp_path / "prefixed.pth")
    torch.save({**state, "conv1.0.weight": torch.zeros(1, 1, 1, 1)}, tmp_path / "reshaped.pth")
    for name, message in (("prefixed.pth", "tensor(s) missing (e.g. conv1.0.weight); 93 unexpected (e.g. model.conv1"),
                          ("reshaped.pth", "conv1.0.weight: (1, 1, 1, 1) in the file, (16, 3, 3, 3) in the model")):
        code, out, err = cli("extract", "-m", f"test_resnet@{tmp_path / name}", "-d", "digits", "--limit", "8",
                             "--cache-dir", str(tmp_path / "c"))
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_training_wrapper_state_dict_loads_as_the_network_it_wraps(tmp_path):
    """A Lightning-style checkpoint ({"state_dict": {"model.conv1...": ...}}: the network held as one attribute) was
    refused as 92 tensors missing and 92 unexpected; it is the network's own state dict behind one prefix."""
    import timm
    import torch

    from modelrank.models import load_model

    net = timm.create_model("test_resnet", num_classes=7)
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "wrapped.ckpt")
    loaded = load_model(f"test_resnet@{tmp_path / 'wrapped.ckpt'}")
    assert loaded.info["num_classes"] == 7
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor), name


def test_a_refused_pickle_is_one_line_without_torchs_advice(tmp_path, cli):
    # A protocol-4 pickle (any pickle.dumps) made torch warn "please file an issue" before the refusal.
    (tmp_path / "object.pth").write_bytes(pickle.dumps(Path("not/a/tensor"), protocol=4))
    code, out, err = cli("extract", "-m", f"test_resnet@{tmp_path / 'object.pth'}", "-d", "digits", "--limit", "8",
                         "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "not a torch file of plain tensors" in err and err.count("\n") == 1, err


def test_hub_weights_are_keyed_by_the_weights_the_installed_version_gives(monkeypatch):
    # The fingerprint was "hub:ARCH" whatever the hub's default for ARCH: after an upgrade of timm that changed
    # it (timm's resnet50: torchvision's weights, then a1_in1k) the cache served the old weights' features.
    import timm
    import torchvision.models as tvm

    import modelrank.models as models

    tags = iter(["r160_in1k", "r160_in1k", "other_in1k"])

    def offline(arch, pretrained, num_classes=None):  # no hub here: the default config, without its weights
        net = timm.create_model(arch, pretrained=False)
        net.pretrained_cfg = {**net.pretrained_cfg, "tag": next(tags)}
        return net

    monkeypatch.setattr(models, "_create_timm", offline)
    first, same, upgraded = (models.load_model("test_resnet").fingerprint for _ in range(3))
    assert first == same == "hub:test_resnet.r160_in1k" and upgraded == "hub:test_resnet.other_in1k"
    real_get_model = tvm.get_model
    monkeypatch.setattr(tvm, "get_model", lambda name, weights=None, **kw: real_get_model(name, weights=None, **kw))
    fingerprint = models.load_model("tv:resnet18").fingerprint
    assert fingerprint == f"hub:{tvm.ResNet18_Weights.DEFAULT.url}" and "resnet18-" in fingerprint


def test_an_entry_removed_while_extracting_says_so(cache_dir):
    # `cache rm`, or a run that found the folder's images changed, removed the entry under a running extraction:
    # it ended with pyarrow's "Failed to open local file '.../.chunk-00000.parquet.tmp-...'".
    import shutil

    from modelrank.cache import FeatureStore
    from modelrank.errors import MissingResourceError
    from modelrank.extraction import extract

    def remove_the_entry(row, text, done, total):
        if done:  # the chunk's one batch is computed, and about to be written
            shutil.rmtree(next(FeatureStore(cache_dir).entries())[0])

    with pytest.raises(MissingResourceError, match="was removed while this run extracted it"):
        extract([TINY], "digits", "train", limit=8, batch_size=8, workers=0, progress=remove_the_entry)


def test_cache_rm_interrupted_says_what_is_left(cache_dir, cli, monkeypatch):
    # The note was the default "nothing was written", after entries were removed.
    import shutil

    import modelrank.cache

    for limit in ("4", "5"):
        assert cli("extract", "-m", TINY, "-d", "digits", "--limit", limit)[0] == 0
    calls, rmtree = [], shutil.rmtree

    def rmtree_then_ctrl_c(path, *args, **kwargs):  # Ctrl-C after the first entry
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(modelrank.cache.shutil, "rmtree", rmtree_then_ctrl_c)
    code, out, err = cli("cache", "rm", "*", "--yes")
    assert code == 130 and "cache ls" in err and "nothing was written" not in err, err
    assert len(list(modelrank.cache.FeatureStore().entries())) == 1


def test_cache_ls_beside_a_running_extraction_never_fails(cache_dir, cli, monkeypatch):
    # A claim released between `cache ls` listing it and reading its size made `ls` exit 2 with
    # "No such file or directory: .../chunk-00060.claim" (1 in ~7000 listings with 4-image chunks).
    assert cli("extract", "-m", TINY, "-d", "digits", "--limit", "4")[0] == 0
    folder = next((cache_dir / "features").iterdir())
    (folder / "chunk-00001.claim").write_text("{}")
    seen, stat = set(), Path.stat

    def released_after_listing(path, *args, **kwargs):  # is_file() finds the claim, the size read misses it
        if path.suffix == ".claim" and path in seen:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        seen.add(path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", released_after_listing)
    code, out, err = cli("cache", "ls")
    assert code == 0 and folder.name.rsplit("__", 1)[1] in out, err


def test_cache_rm_beside_a_running_extraction_never_fails(cache_dir, cli, monkeypatch):
    # A claim the extraction released while `cache rm` removed the entry's files made `rm` fail with
    # "No such file or directory", the entry half removed.
    import os

    assert cli("extract", "-m", TINY, "-d", "digits", "--limit", "4")[0] == 0
    folder = next((cache_dir / "features").iterdir())
    (folder / "chunk-00001.claim").write_text("{}")
    unlink = os.unlink

    def released_meanwhile(path, *args, **kwargs):  # the extraction unlinks the claim first
        unlink(path, *args, **kwargs)
        if str(path).endswith(".claim"):
            raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(os, "unlink", released_meanwhile)
    code, out, err = cli("cache", "rm", "*", "--yes")
    assert code == 0 and "removed 1 entry" in err and not folder.exists(), err


def test_paths_with_a_tilde_are_the_users_home(tmp_path, monkeypatch, cli):
    # The shell expands ~ only at the start of a word: folder:~/x and ARCH@~/w.pth reached us as "~/...".
    import timm
    import torch

    monkeypatch.setenv("HOME", str(tmp_path))
    _folder(tmp_path / "data")
    Image.new("RGB", (9, 9)).save(tmp_path / "data" / "a" / "photo.jfif", format="JPEG")  # JPEG by another suffix
    (tmp_path / "list.csv").write_text("path,label\ndata/a/0.png,a\ndata/b/0.png,b\n")
    assert len(load_dataset("folder:~/data", "all")) == 7
    assert len(load_dataset("csv:~/list.csv", "all")) == 2
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "w.pth")
    code, out, err = cli("extract", "-m", "test_resnet@~/w.pth", "-d", "folder:~/data", "--cache-dir",
                         str(tmp_path / "c"))
    assert code == 0, err
    (tmp_path / "weights").mkdir()
    code, out, err = cli("extract", "-m", "test_resnet@~/weights", "-d", "folder:~/data", "--cache-dir",
                         str(tmp_path / "c"))
    assert code == 2 and "is a folder; give the state-dict file inside it" in err and err.count("\n") == 1, err


def test_a_csv_split_column_gives_the_splits(tmp_path, cli):
    # The column was ignored: --split test was the seeded 80/20 cut, mixing the CSV's training rows into it.
    from modelrank.errors import InvalidInputError

    _folder(tmp_path / "data", n=3)
    rows = [("a/0.png", "a", "train"), ("a/1.png", "a", "Test"), ("a/2.png", "a", "val"),
            ("b/0.png", "b", "train"), ("b/1.png", "b", "test "), ("b/2.png", "b", "train")]
    (tmp_path / "list.csv").write_text("path,label,split\n" + "".join(f"data/{p},{c},{s}\n" for p, c, s in rows))
    name = f"csv:{tmp_path / 'list.csv'}"
    test, val, every = (load_dataset(name, split) for split in ("test", "val", "all"))
    assert [Path(p).name for p in test.load.args[0]] == ["1.png", "1.png"] and test.targets.tolist() == [0, 1]
    assert val.targets.tolist() == [0] and val.class_names == ["a", "b"] and len(every) == 6
    with pytest.raises(InvalidInputError, match=r"no rows of split 'trainval'; its split column holds test, train, val"):
        load_dataset(name, "trainval")
    code, out, err = cli("extract", "-m", TINY, "-d", name, "--split", "val", "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    (tmp_path / "list.csv").write_text("path,label,split\ndata/a/0.png,a,train\ndata/b/0.png,b,\n")
    with pytest.raises(InvalidInputError, match="column split has 1 blank cell"):
        load_dataset(name, "train")


def test_random_weights_are_keyed_by_the_versions_that_draw_them(monkeypatch):
    # "random-seed0" alone: a timm or torch whose initialisers changed would reuse the old random weights' features.
    import timm
    import torch

    import modelrank.models as models

    before = models.load_model(TINY).fingerprint
    assert before == f"random-seed0:timm-{timm.__version__}:torch-{torch.__version__}"
    monkeypatch.setattr(timm, "__version__", "99.0")
    assert models.load_model(TINY).fingerprint != before


def test_a_csv_with_both_label_and_target_is_refused(tmp_path):
    # It was read as regression without a word.
    from modelrank.errors import InvalidInputError

    _folder(tmp_path / "data")
    (tmp_path / "list.csv").write_text("path,label,target\ndata/a/0.png,a,0.5\ndata/b/0.png,b,1.5\n")
    with pytest.raises(InvalidInputError, match="both a label and a target column"):
        load_dataset(f"csv:{tmp_path / 'list.csv'}", "all")


def test_a_csv_with_two_label_columns_equal_up_to_case_is_refused(tmp_path):
    # `label` and `Label`: the last one was taken without a word.
    from modelrank.errors import InvalidInputError

    _folder(tmp_path / "data")
    (tmp_path / "list.csv").write_text("path,label,Label\ndata/a/0.png,a,x\ndata/b/0.png,b,x\n")
    with pytest.raises(InvalidInputError, match="columns 'label' and 'Label' differ only in letter case"):
        load_dataset(f"csv:{tmp_path / 'list.csv'}", "all")


def test_csv_paths_that_lead_to_no_file_are_refused_before_any_model_is_built(tmp_path, cli):
    # Met while extracting, after the model was built and the chunks before it computed; a CSV repaired by
    # dropping the row is a new cache entry, so those chunks were lost.
    _folder(tmp_path / "data")
    (tmp_path / "list.csv").write_text("path,label\ndata/a/0.png,a\ndata/b/9.png,b\ndata/b,b\n")
    code, out, err = cli("extract", "-m", TINY, "-d", f"csv:{tmp_path / 'list.csv'}", "--cache-dir",
                         str(tmp_path / "c"))
    assert code == 2 and "2 of its 3 image paths lead to no file (missing, a broken link or a folder)" in err, err
    assert str(tmp_path / "data" / "b" / "9.png") in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_a_broken_link_in_an_image_folder_is_refused_before_any_model_is_built(tmp_path, cli):
    root = _folder(tmp_path / "data")
    (root / "b" / "moved.png").symlink_to(tmp_path / "elsewhere.png")
    code, out, err = cli("extract", "-m", TINY, "-d", f"folder:{root}", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and f"1 of its 7 image paths lead to no file (missing, a broken link or a folder), e.g. {root}" \
        in err and err.count("\n") == 1, err
    assert not (tmp_path / "c").exists()


def _fashion_root(root: Path, shade: int) -> Path:
    root.mkdir(parents=True)
    (root / "t10k-images-idx3-ubyte").write_bytes(_idx(np.full((6, 4, 4), shade, np.uint8)))
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.arange(6, dtype=np.uint8) % 2))
    return root


def test_fashion_mnist_is_keyed_by_its_content_not_its_root(tmp_path, cache_dir):
    # --data-root was not in the cache key: another copy (or a changed one) was scored with the first's features.
    from modelrank.cache import FeatureStore
    from modelrank.extraction import extract

    roots = [_fashion_root(tmp_path / name, shade) for name, shade in (("one", 0), ("two", 200), ("same", 0))]

    def run(root: Path) -> int:
        return extract([TINY], "fashion-mnist", "test", data_root=str(root), batch_size=6, workers=0)[0]["computed"]

    assert [run(roots[0]), run(roots[1]), run(roots[2]), run(roots[0])] == [6, 6, 0, 0]  # "same": a copy of one
    os.utime(roots[0] / "t10k-images-idx3-ubyte", ns=(0, 0))  # touched, not changed: still the same data
    assert run(roots[0]) == 0
    _fashion_root(tmp_path / "changed", 100)
    (tmp_path / "changed" / "t10k-images-idx3-ubyte").replace(roots[0] / "t10k-images-idx3-ubyte")
    assert run(roots[0]) == 6  # changed in place: other pixels, other features
    assert len(list(FeatureStore(cache_dir).entries())) == 3


def test_derived_tasks_follow_the_content_of_their_base_data(tmp_path, cache_dir):
    from modelrank.extraction import extract

    roots = [_fashion_root(tmp_path / name, shade) for name, shade in (("one", 0), ("two", 200), ("same", 0))]

    def run(root: Path) -> int:
        return extract([TINY], "source/fashion", "test", data_root=str(root), batch_size=6, workers=0)[0]["computed"]

    assert [run(roots[0]), run(roots[1]), run(roots[2])] == [6, 6, 0]
    (roots[0] / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.arange(6, dtype=np.uint8) % 3))  # relabelled
    assert run(roots[0]) == 6


def test_packaged_array_data_is_keyed_by_its_arrays():
    from modelrank.data.base import array_dataset

    images, labels = np.zeros((4, 2, 2), np.uint8), np.array([0, 1, 0, 1])
    first = array_dataset("d", "all", images, labels, ["a", "b"]).meta["definition"]
    assert array_dataset("d", "all", images.copy(), labels.copy(), ["a", "b"]).meta["definition"] == first
    images[0, 0, 0] = 1
    assert array_dataset("d", "all", images, labels, ["a", "b"]).meta["definition"] != first
    assert array_dataset("d", "all", images[:, ::-1], labels, ["a", "b"]).meta["definition"] != first  # a view
    assert load_dataset("digits", "test").meta["definition"] != load_dataset("digits", "train").meta["definition"]


class _FakeRootDTD(_FakeDTD):
    """A DTD that, like torchvision's, needs its folder under the root."""

    def __init__(self, root, download=False, split="train"):
        if not (Path(root) / "dtd").is_dir():
            raise RuntimeError("Dataset not found")
        super().__init__(root, download, split)


def test_torchvision_datasets_are_keyed_by_the_files_under_their_root(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "DTD", _FakeRootDTD)
    for name in ("one", "two"):
        (tmp_path / name / "dtd" / "images").mkdir(parents=True)
        (tmp_path / name / "dtd" / "images" / "0.jpg").write_bytes(b"x" * (3 if name == "one" else 4))

    def definition(root: str) -> dict:
        return load_dataset("dtd", "test", root=str(tmp_path / root)).meta["definition"]

    one = definition("one")
    assert one == definition("one") and one["path"] == str((tmp_path / "one" / "dtd").resolve())
    assert one["fingerprint"] != {**definition("two"), "path": one["path"]}["fingerprint"]
    (tmp_path / "one" / "other.tar.gz").write_bytes(b"")  # another dataset's file under the same root: no change
    assert definition("one") == one
    (tmp_path / "one" / "dtd" / "images" / "1.jpg").write_bytes(b"x")
    assert definition("one")["fingerprint"] != one["fingerprint"]
