"""The foundation commands: help, list, extract, cache, and one-line errors without tracebacks."""

import numpy as np
import pytest



def assert_user_error(result, fragment):
    code, out, err = result
    assert code == 2, (code, out, err)
    assert fragment in err
    assert "Traceback" not in err + out


def test_help_lists_commands(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "extract" in out and "cache" in out


@pytest.mark.parametrize("what,expected", [("models", "efficientnet_lite0"), ("datasets", "animal-mnist")])
def test_list(cli, what, expected):
    code, out, _ = cli("list", what)
    assert code == 0 and expected in out


def test_extract_then_cache_ls_info_rm(cli, cache_dir):
    code, out, err = cli("extract", "-m", "random:test_resnet", "-d", "digits", "--limit", "12", "-b", "6")
    assert code == 0, err
    assert "digits/train" in out
    code, out, _ = cli("cache", "ls")
    assert code == 0 and "12" in out and "1/1" in out
    code, out, _ = cli("cache", "info", "test_resnet")
    assert code == 0 and "fingerprint" in out
    code, out, _ = cli("cache", "rm", "all")
    assert code == 0 and "removed 1 entry" in out


def test_unknown_model(cli, cache_dir):
    assert_user_error(cli("extract", "-m", "resnet5", "-d", "digits"), "did you mean")


def test_missing_dataset(cli, cache_dir, tmp_path):
    assert_user_error(cli("extract", "-m", "random:test_resnet", "-d", "pets", "--data-root", str(tmp_path)), "--download")


def test_bad_split(cli, cache_dir):
    assert_user_error(cli("extract", "-m", "random:test_resnet", "-d", "digits", "--split", "val"), "splits")


def test_non_image_file_in_folder(cli, cache_dir, tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    assert_user_error(cli("extract", "-m", "random:test_resnet", "-d", f"folder:{tmp_path}", "--split", "all"), "not an image")


def test_corrupt_image_in_folder(cli, cache_dir, tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cls / "ok.png")
    (tmp_path / "b" / "bad.jpg").write_bytes(b"not a jpeg")
    assert_user_error(cli("extract", "-m", "random:test_resnet", "-d", f"folder:{tmp_path}", "--split", "all"), "bad.jpg")


def test_missing_checkpoint(cli, cache_dir, tmp_path):
    assert_user_error(cli("extract", "-m", f"test_resnet@{tmp_path}/nope.pth", "-d", "digits"), "does not exist")


def test_bad_shard_option(cli, cache_dir):
    assert_user_error(cli("extract", "-m", "random:test_resnet", "-d", "digits", "--shard", "2/2"), "--shard")
