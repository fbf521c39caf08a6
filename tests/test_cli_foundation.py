"""The foundation commands: help, list, extract, cache, and one-line errors without tracebacks."""

import json

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


def test_list_for_people_and_programs(cli):
    code, out, _ = cli("list", "metrics", "--format", "json")
    metrics = json.loads(out)
    assert code == 0 and {"logme", "ncti"} <= {m["name"] for m in metrics}
    assert {m["scope"] for m in metrics} == {"model", "zoo"}  # explained in `list --help`, never blank
    code, out, _ = cli("list", "parameters", "--format", "json")
    parameters = {(row["metric"], row["parameter"]): row for row in json.loads(out)}
    assert code == 0 and parameters["knn", "k"]["default"] == 5 and parameters["logme", "preset"]["default"] is None
    assert "converged" in parameters["logme", "preset"]["accepts"]
    code, out, _ = cli("list", "parameters")  # the plain table spells None as --set and JSON do
    assert code == 0 and any(line.split()[:3] == ["hscore", "rcond", "null"] for line in out.splitlines())
    code, out, _ = cli("list", "datasets", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "name,source,splits,description"
    code, out, err = cli("list", "models", "--out", "-")
    assert code == 0 and out.splitlines()[0].startswith("name,") and err == ""
    code, out, _ = cli("list", "models")  # stdout is no terminal: plain text, no box lines, a row's name leads a line
    assert code == 0 and not set("┃│━─") & set(out) and out.startswith("# models\n")
    lines = out.splitlines()
    assert all(any(line.startswith(f"{row['name']} ") for line in lines)
               for row in json.loads(cli("list", "models", "--format", "json")[1]))


def test_extract_then_cache_ls_info_rm(cli, cache_dir):
    code, out, err = cli("extract", "-m", "random:test_resnet", "-d", "digits", "--limit", "12", "-b", "6")
    assert code == 0, err
    assert "digits/train" in out
    assert "loading model" not in err  # stderr is no terminal here: no progress display
    code, out, _ = cli("cache", "ls")
    assert code == 0 and "12" in out and "1/1" in out and "float32" in out
    code, out, _ = cli("cache", "info", "test_resnet")
    info = json.loads(out)  # one JSON document
    assert code == 0 and info["samples"] == 12 and info["manifest"]["key"]["dataset"] == "digits"
    assert info["precision"] == "float32"
    key = info["entry"].rsplit("__", 1)[1]
    code, out, _ = cli("cache", "ls")  # the table shows the entry's key, not its whole name (CSV and JSON do)
    assert code == 0 and key in out and info["entry"] not in out
    assert info["entry"] in cli("cache", "ls", "--format", "csv")[1]
    assert cli("cache", "info", key)[0] == 0
    code, out, err = cli("cache", "rm", key, "--yes")  # the key the table shows selects its entry
    assert code == 0 and "removed 1 entry" in err and out == ""
    code, out, _ = cli("cache", "ls", "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = cli("cache", "ls")
    assert code == 0 and out.splitlines()[1:] == ["model  dataset  split  samples  done  MB  precision  key"]


def _fake_entries(cache_dir, *names):
    for name in names:
        (cache_dir / "features" / name).mkdir(parents=True)
        (cache_dir / "features" / name / "chunk-00000.parquet").write_bytes(b"x")


def test_cache_info_of_an_empty_name_is_an_error_not_the_only_entry(cli, cache_dir):
    _fake_entries(cache_dir, "m__digits__train__0123456789ab")
    for name in ("", " "):  # `modelrank cache info "$ENTRY"` with ENTRY unset printed that entry and exited 0
        code, out, err = cli("cache", "info", name)
        assert code == 2 and out == "" and "needs an entry name" in err and err.count("\n") == 1, err
    code, out, _ = cli("cache", "info", "digits")
    assert code == 0 and json.loads(out)["entry"] == "m__digits__train__0123456789ab"


def _entry_names(cache_dir):
    return sorted(p.name for p in (cache_dir / "features").iterdir())


def test_cache_rm_takes_exact_names_or_globs_and_asks(cli, cache_dir, monkeypatch):
    import io

    from modelrank.cache import FeatureStore

    assert FeatureStore(cache_dir).root == cache_dir / "features"
    _fake_entries(cache_dir, "e1-digits", "e2-digits", "lite0-pets")
    # A partial name is no entry: the error lists what contains it and nothing is removed.
    code, out, err = cli("cache", "rm", "digits", "--yes")
    assert code == 2 and "e1-digits, e2-digits" in err and "'*digits*'" in err
    assert _entry_names(cache_dir) == ["e1-digits", "e2-digits", "lite0-pets"]
    code, _, err = cli("cache", "rm", "*digits", "--dry-run")
    assert code == 0 and "e1-digits" in err and "e2-digits" in err and "would remove 2 entries" in err
    assert _entry_names(cache_dir) == ["e1-digits", "e2-digits", "lite0-pets"]
    # No terminal and no --yes: refuse, one line, nothing removed.
    code, _, err = cli("cache", "rm", "*digits")
    assert code == 2 and "--yes" in err and len(err.strip().splitlines()) == 3  # the two matches, then the error
    assert _entry_names(cache_dir) == ["e1-digits", "e2-digits", "lite0-pets"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = cli("cache", "rm", "e1-digits")
    assert code == 0 and "nothing removed" in err and len(_entry_names(cache_dir)) == 3
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, _, err = cli("cache", "rm", "e1-digits", "lite0-pets")
    assert code == 0 and "removed 2 entries" in err and _entry_names(cache_dir) == ["e2-digits"]
    code, _, err = cli("cache", "rm", "zzz*", "--yes")
    assert code == 0 and "nothing removed" in err and _entry_names(cache_dir) == ["e2-digits"]


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


def test_finetune_results_on_stdout_and_run_lines_on_stderr(cli, cache_dir, tmp_path, rng):
    import io

    import pandas as pd

    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 4)) + labels[:, None]
    np.savez(tmp_path / "m.npz", features=features, labels=labels)
    code, out, err = cli("finetune", "--features", str(tmp_path / "m.npz"), "--cs", "1e-2:1e2:3", "--out", "-")
    assert code == 0, err
    assert "done" in err and "done" not in out  # the run's line is a log; stdout holds the records CSV only
    exported = pd.read_csv(io.StringIO(out))
    assert list(exported["model"]) == ["m"] and 0 <= exported["eval_accuracy"].item() <= 1
    code, out, err = cli("records", "ls", "--format", "json")
    assert code == 0 and [r["model"] for r in json.loads(out)] == ["m"]
    code, out, err = cli("finetune", "--features", str(tmp_path / "m.npz"), "--cs", "1e-2:1e2:3", "--format", "csv")
    assert code == 0 and "skipped" in err and pd.read_csv(io.StringIO(out))["model"].tolist() == ["m"]


def test_a_finetune_error_names_the_features_it_is_about(cli, cache_dir, tmp_path, rng):
    labels = np.repeat(np.arange(3), 20)
    lonely = labels.copy()
    lonely[-1] = 3  # a class of one sample: readable, but no stratified split holds it out
    np.savez(tmp_path / "fine.npz", features=rng.normal(size=(60, 4)), labels=labels)
    np.savez(tmp_path / "broken.npz", features=rng.normal(size=(60, 4)), labels=lonely)
    code, out, err = cli("finetune", "--features", str(tmp_path / "fine.npz"), "--features", str(tmp_path / "broken.npz"),
                         "--cs", "1e-2:1e2:3")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("error: broken on custom: ") and "too few" in err, err  # which of the files


@pytest.mark.parametrize("width,boxed", [(120, True), (40, False)])
def test_a_table_too_wide_for_the_terminal_is_plain_text(monkeypatch, capsys, width, boxed):
    import io

    import pandas as pd
    from rich.console import Console

    import modelrank.cli._output as output

    terminal = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    monkeypatch.setattr(output, "console", terminal)
    frame = pd.DataFrame({"model": ["efficientnet_lite0", "efficientnet_lite1"], "dataset": ["animal-mnist"] * 2,
                          "logme": [0.123456, -1.5], "leep": [-2.25, -3.5]})
    output.emit(frame)
    shown = terminal.file.getvalue() + capsys.readouterr().out
    assert ("┃" in shown) == boxed
    assert "efficientnet_lite0" in shown and "animal-mnist" in shown and "0.123" in shown  # never folded


@pytest.mark.parametrize("rows", [False, True], ids=["emit", "emit_rows"])
def test_a_plain_table_on_a_narrow_terminal_comes_in_blocks_that_fit(monkeypatch, capsys, rows):
    import io

    import pandas as pd
    from rich.console import Console

    import modelrank.cli._output as output

    frame = pd.DataFrame({"learner": ["model_prior", "task_attention"],
                          **{f"measure_{i}": [0.123456 * i, -1.5 * i] for i in range(12)}})
    for terminal in (True, False):
        fits = terminal or rows  # piped: a data table's whole lines, whatever the width; a listing is for people
        console = Console(file=io.StringIO(), force_terminal=terminal, width=80, color_system=None)
        monkeypatch.setattr(output, "console", console)
        if rows:
            output.emit_rows(list(frame.columns), frame.values.tolist(), title="t")
        else:
            output.emit(frame, title="t")
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "# t" and (max(map(len, lines)) <= 80) == fits
        text = "\n".join(lines)
        assert all(name in text for name in frame.columns) and "task_attention" in text
        assert text.count("learner") == (3 if fits else 1)  # each block led by the name column


def test_list_parameters_on_a_narrow_terminal_names_metric_and_key_in_every_block(monkeypatch, capsys):
    """`modelrank list parameters` is wider than a 60-column terminal: each block of the plain table is led by both the
    metric and the parameter (with the metric alone, the "accepts" block did not say which parameter a row was)."""
    import io

    from rich.console import Console

    import modelrank.cli._output as output
    from modelrank.cli.list_cmd import list_cmd

    monkeypatch.setattr(output, "console", Console(file=io.StringIO(), force_terminal=True, width=60, color_system=None))
    list_cmd("parameters", "table", None)
    blocks = capsys.readouterr().out.removeprefix("# parameters\n").split("\n\n")
    headers = [block.splitlines()[0].split() for block in blocks]
    assert len(blocks) >= 2 and all(header[:2] == ["metric", "parameter"] for header in headers), headers
    assert {"default", "accepts"} <= {name for header in headers for name in header[2:]}


@pytest.mark.parametrize("rows", [False, True], ids=["emit", "emit_rows"])
def test_plain_tables_align_wide_characters_by_terminal_cells(capsys, rows):
    """A CJK model name fills two terminal cells per character: the next column starts at one cell for every line."""
    import pandas as pd
    from rich.cells import cell_len

    import modelrank.cli._output as output

    frame = pd.DataFrame({"model": ["视觉模型", "resnet50"], "logme": [0.25, -1.25], "leep": [-2.0, -3.0]})
    if rows:
        output.emit_rows(list(frame.columns), frame.values.tolist())
    else:
        output.emit(frame)
    lines = capsys.readouterr().out.splitlines()
    # emit_rows left-aligns every column; pandas right-aligns them (the cells' ends line up)
    edges = {cell_len(line[:line.index(word) + (0 if rows else len(word))])
             for line, word in zip(lines, ["logme", "0.25", "-1.25"])}
    assert len(lines) == 3 and len(edges) == 1, lines


def test_evaluate_on_a_narrow_terminal_fits_and_names_each_row(monkeypatch, cli, tmp_path):
    import io

    import pandas as pd
    from rich.console import Console

    import modelrank.cli._output as output
    import modelrank.cli.evaluate as evaluate_cmd

    rows = [(f"dataset{j}", f"model{i}", float((3 * i + j) % 5), float((i * j) % 4)) for i in range(4) for j in range(9)]
    pd.DataFrame(rows, columns=["Dataset", "Model", "logme", "leep"]).to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame([(d, m, 0.1 * ((5 * n) % 7)) for n, (d, m, _, _) in enumerate(rows)],
                 columns=["dataset", "model", "accuracy"]).to_csv(tmp_path / "t.csv", index=False)
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(output, "console", terminal)
    monkeypatch.setattr(evaluate_cmd, "console", terminal)
    code, out, err = cli("evaluate", "--scores", str(tmp_path / "s.csv"), "--truth", str(tmp_path / "t.csv"),
                         "--tau", "weighted,kendall")
    shown = terminal.file.getvalue() + out
    assert code == 0 and max(map(len, shown.splitlines())) <= 80, shown  # 9 datasets: boxes would be 144 wide
    blocks = shown.strip().split("\n\n")
    assert len(blocks) > 1 and all(block.split()[:2] == ["measure", "method"] for block in blocks)
    assert all(f"dataset{j}" in shown for j in range(9)) and "weighted_tau" in shown


@pytest.mark.parametrize("what", ["models", "datasets", "metrics", "parameters", "learners"])
def test_list_fits_80_columns_piped_without_losing_text(cli, monkeypatch, what):
    """Descriptions made the listings 110 to 360 columns wide: cut into column blocks (each led by the name
    columns) and wrapped, every line fits, and every character of every cell is there."""
    from collections import Counter

    from modelrank.cli._common import console
    from modelrank.cli._output import _cell

    code, out, _ = cli("list", what, "--format", "json")
    rows = json.loads(out)
    monkeypatch.setattr(console, "width", 80)  # what a pipe gets without COLUMNS
    code, out, _ = cli("list", what)
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"# {what}" and max(map(len, lines)) <= 80, out
    lead = 2 if what == "parameters" else 1
    blocks = out.count("\n\n") + 1
    expected = Counter()
    for i, column in enumerate(rows[0]):
        texts = [column, *(_cell(row[column]) for row in rows)]
        expected += Counter({char: count * (blocks if i < lead else 1)
                             for char, count in Counter("".join(texts).replace(" ", "")).items()})
    assert Counter("".join(lines[1:]).replace(" ", "")) == expected


@pytest.mark.parametrize("columns", ["60", "120"])
def test_list_piped_follows_columns_narrower_or_wider_than_80(columns):
    """README: piped listings are wrapped to 80 columns unless COLUMNS says otherwise (it said "more"; a narrower
    COLUMNS is followed too)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": columns}
    out = subprocess.run([sys.executable, "-m", "modelrank", "list", "metrics"], env=env, capture_output=True,
                         text=True, check=True).stdout
    width = max(map(len, out.splitlines()))
    assert width <= int(columns) and (width > 80 or int(columns) < 80), out
