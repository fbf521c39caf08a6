"""The command line as a contract: 0 success, 2 usage/input error (one line, no traceback), 130 interrupted,
1 only for a bug (with its traceback)."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from modelrank.cli import app
from modelrank.errors import ModelrankError


def command_paths(command=None, prefix=()):
    """Every command path of the app: ('score',), ('cache', 'ls'), ..."""
    command = command or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        yield (*prefix, name)
        yield from command_paths(sub, (*prefix, name))


ALL_COMMANDS = sorted(command_paths())


def test_every_command_is_walked():
    assert {("score",), ("cache", "ls"), ("spider", "eval"), ("records", "export")} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", [(), *ALL_COMMANDS], ids=lambda p: " ".join(p) or "modelrank")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_command(cli, path, flag):
    code, out, err = cli(*path, flag)
    assert code == 0, err
    assert "Usage" in out and "Traceback" not in out + err
    assert "<bool>" not in out
    options = out.split("Options:", 1)[-1]  # click's metavars (--out PATH), not typer's value types (<path>)
    assert not re.search(r"^\s+-.*<(str|int|float|path|dir|file|list)", options, re.MULTILINE), options
    arguments = out.split("Options:", 1)[0].partition("Arguments:")[2]  # LEARNER_DIR, not LEARNER_DIR <path>
    assert not re.search(r"^\s+[A-Z_]+\s+<", arguments, re.MULTILINE), arguments
    for entry in re.split(r"\n(?=  -)", options):  # one default per option: "[default: off]. [default: 0]" was two
        assert " ".join(entry.split()).count("default:") <= 1, entry


def test_version(cli):
    from modelrank import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"modelrank {__version__}"


def test_learners_named_in_spider_help_exist_and_take_the_options_shown(cli):
    """`spider train --set epochs=50` failed with the default learner (task attention has no epochs), and
    `spider rank --rerank-metric` named a `model_spider` learner, which is `spider`."""
    from modelrank.cli.spider import _learner_options
    from modelrank.spider import LEARNERS

    _, out, _ = cli("spider", "train", "--help")
    learner, option = re.search(r"e\.g\.\s+--learner\s+(\w+)\s+--set\s+(\S+)", out).groups()
    _learner_options(learner, [option])
    _, out, _ = cli("spider", "rank", "--help")
    assert re.search(r"a (\w+) learner\s+trained", out).group(1) in LEARNERS


BAD_INVOCATIONS = [
    ("score", "--features", "/nonexistent.npz", "--bootstrap", "1"),
    ("score", "--features", "/nonexistent.npz", "--format", "xml"),
    ("evaluate", "--scores", "/nonexistent/s.csv", "--truth", "/nonexistent/t.csv", "--compare", "logme"),
    ("records", "rm"),                    # no filter: nothing is removed
    ("spider", "rank", "/nonexistent", "-d", "digits", "--features", "/nonexistent.npz"),
    ("spider", "eval", "/nonexistent.csv", "--tau-protocol", "bogus"),
    ("spider", "eval", "/nonexistent.csv", "--folds", "1"),
    ("foo",),
    ("cache", "clear"),
    ("score", "--bogus"),
    ("evaluate",),                        # missing required options
    ("list",),                            # missing argument
    ("list", "models", "extra"),
    ("list", "things"),
    ("extract", "-m", "a", "-d", "b", "--per-class", "abc"),
    ("score", "--ped", "true"),
    ("score", "-d", "digits"),            # -d without -m
    ("evaluate", "--scores", "/nonexistent/s.csv", "--truth", "/nonexistent/t.csv"),
    ("spider", "train", "/nonexistent.csv", "--out", "/tmp/x"),
    ("cache", "info", "no-such-entry"),
    # Arguments are checked before any model is loaded or any work starts (the guard below fails otherwise).
    *[("score", "-d", "digits", "-m", "random:test_resnet", *rest) for rest in [
        ("--metric", "logmee"),
        ("--metric", "transrate", "--set", "transrate.eps=abc"),
        ("--metric", "transrate", "--set", "transrate.nope=1"),
        ("--metric", "logme", "--set", "transrate.eps=1e-3"),
        ("--metric", "logme", "--set", "logme.preset=bogus"),  # text values are checked early too
        ("--metric", "gbc", "--set", "gbc.gaussian_type=full"),
        ("--metric", "transrate", "--set", "transrate.eps=1e-3", "--set", "transrate.eps=1e-2"),  # the last won
        ("--per-class", "0"),
        ("--limit", "0"),
        ("--split", "val"),
        ("--out", "/nonexistent/folder/scores.csv"),
    ]],
    ("score", "-d", "digits", "-m", "random:test_resnet,resnet5"),
    ("score", "-d", "digits", "-m", "random:test_resnet,random:test_resnet"),  # found out after the extraction
    ("finetune", "-d", "digits", "-m", "random:test_resnet, random:test_resnet"),
    # Options of the other way to give the data are errors, not silently ignored.
    ("score", "-d", "digits", "-m", "random:test_resnet", "--model-name", "x"),
    ("score", "-d", "digits", "-m", "random:test_resnet", "--dataset-name", "pets"),
    ("finetune", "-d", "digits", "-m", "random:test_resnet", "--task", "regression"),
    ("score", "-d", "digitz", "-m", "random:test_resnet"),
    *[("extract", "-m", "random:test_resnet", "-d", "digits", *rest) for rest in [
        ("-b", "-1"),
        ("--batch-size", "0"),
        ("--limit", "0"),
        ("--workers", "-1"),
        ("--workers", "100000"),  # would fork 100000 loader processes
        ("--shard", "3/2"),
        ("--device", "tpu"),
        ("--device", "meta"),  # device types torch knows but modelrank does not run on: a traceback (exit 1)
        ("--device", "mps"),
        ("--device", "cpu", "--precision", "float16"),  # float16 autocast is CUDA's
        ("--precision", "bf16"),
        ("--format", "xml"),
        ("--checkpoint", "/nonexistent/weights.pth"),
        ("--cache-dir", __file__),
        ("--data-root", __file__),
        # An unset shell variable: the cache or the data would be the current folder, and every task of a job
        # array would do the whole run.
        ("--cache-dir", ""),
        ("--data-root", " "),
        ("--shard", ""),
    ]],
    ("extract", "-m", "random:test_resnet,resnet5", "-d", "digits"),
    ("extract", "-m", "random:test_resnet@/nonexistent/weights.pth", "-d", "digits"),
    ("extract", "-m", "random:test_resnet", "-d", "folder:/nonexistent/images"),
    *[("finetune", "-d", "digits", "-m", "random:test_resnet", *rest) for rest in [
        ("--protocol", "half"),
        ("--metric", "f1"),
        ("--cs", "a:b"),
        ("--cs", "nan"),
        ("--cs", "-1,2"),
        ("--cs", "1:0:3"),
        ("--cs", "1e-3:1e3:100000000"),
        ("--val", "1.5"),
        ("--val", "0.6", "--test", "0.5"),
        ("--per-class", "0"),
        ("--out", "/nonexistent/folder/truth.csv"),
        ("--format", "xml"),
        ("--protocol", "full", "--epochs", "0"),
        ("--protocol", "full", "--batch-size", "1"),
        ("--protocol", "full", "--optimizer", "adam"),
        ("--protocol", "full", "--lrs", "0.1,x"),
        ("--protocol", "full", "--lrs", "0"),
        ("--protocol", "full", "--lrs", "inf"),
        ("--protocol", "full", "--wds", "0,nan"),
        ("--protocol", "full", "--input-size", "0"),
        ("--protocol", "full", "--input-size", "22400"),  # a typo for 224: resizing to it was killed for memory
        ("--protocol", "full", "--cs", "1e-3:1e3:5"),  # a linear-probe option: not silently ignored
        ("--protocol", "full", "--no-refit"),
        ("--protocol", "full", "--test", "0.5"),  # it tests on the dataset's test split: the fraction was ignored
        ("--protocol", "full", "--shard", "2/2"),
        ("--protocol", "full", "--device", "tpu"),
        ("--protocol", "full", "--device", "meta"),
        ("--protocol", "full", "--device", ""),
        ("--protocol", "full", "--shard", "half"),
        ("--shard", "1/1"),
        ("--shard", ""),
        ("--cs", ""),  # an unset shell variable, not the default sweep
    ]],
    # score -d extracts missing features: its device and precision are checked as extract's
    *[("score", "-d", "digits", "-m", "random:test_resnet", *rest) for rest in [
        ("--device", "tpu"),
        ("--device", "cpu", "--precision", "float16"),
        ("--precision", "bf16"),
    ]],
    ("finetune", "-d", "digits", "-m", "resnet5"),
    ("finetune", "-d", "digitz", "-m", "random:test_resnet"),
    ("zoo", "build", "--preset", "huge"),
    ("zoo", "build", "--preset", "ci", "--device", "tpu"),
    ("zoo", "ls", "--preset", "huge"),
    ("zoo", "ls", "--format", "xml"),
    ("benchmark", "--preset", "huge"),
    ("benchmark", "--preset", "ci", "--device", "tpu"),
    ("benchmark", "--preset", "ci", "--out", "/nonexistent/folder/results"),
    ("benchmark", "--preset", "ci", "--out", __file__),
    ("benchmark", "--preset", "ci", "--out", ""),  # the results would land in the current folder
    ("benchmark", "--preset", "ci", "--out", "-"),  # a results folder named '-', not the tables on stdout
    ("cache", "ls", "--cache-dir", ""),
    ("benchmark", "--preset", "ci", "--pool", "-1"),
    ("benchmark", "--preset", "ci", "--pool", "100000"),  # more tasks than the targets hold: before the zoo stage
    ("cache", "ls", "--format", "xml"),
    ("cache", "ls", "--out", "/nonexistent/folder/cache.csv"),
    ("cache", "rm", "no-such-entry", "--yes"),
    ("records", "ls", "--format", "xml"),
    ("records", "ls", "-d", ""),  # an unset shell variable: every record was listed
    ("records", "rm", "-m", " ", "--dry-run"),
    ("records", "ls", "--out", "/nonexistent/folder/records.csv"),
    ("records", "export", "/nonexistent/folder/records.csv"),
    ("list", "metrics", "--format", "yaml"),
    ("list", "metrics", "--out", "/nonexistent/folder/metrics.csv"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Make the start of any heavy work a bug (exit 1), so argument checks must come before it."""
    import modelrank.extraction
    import modelrank.finetune.full
    import modelrank.zoo.build

    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(modelrank.extraction, "load_model", work)
    monkeypatch.setattr(modelrank.extraction, "open_dataset", work)
    monkeypatch.setattr(modelrank.finetune.full, "finetune_full", work)
    monkeypatch.setattr(modelrank.zoo.build, "build_zoo", work)


@pytest.mark.parametrize("args", BAD_INVOCATIONS, ids=" ".join)
def test_bad_invocations_are_one_line_exit_2(cli, cache_dir, no_work, args):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err


@pytest.mark.parametrize("args", [
    ("score", "--features", "/nonexistent.npz"),
    ("list", "metrics"),
    ("cache", "ls"),
    ("evaluate", "--scores", "/nonexistent/s.csv", "--truth", "/nonexistent/t.csv"),
    ("spider", "rank", "/nonexistent", "t1"),
    ("spider", "eval", "/nonexistent.csv"),
], ids=" ".join)
def test_out_dash_with_format_json_is_a_usage_error(cli, cache_dir, args):
    """``--out -`` prints CSV on stdout: with ``--format json`` a program would get CSV where it asked for JSON."""
    cache_dir.mkdir()  # `cache ls` reads an existing cache
    code, out, err = cli(*args, "--out", "-", "--format", "json")
    assert code == 2 and out == "" and "--out - writes CSV to stdout and --format json" in err, (out, err)


@pytest.mark.parametrize("name", ["r.json", "R.JSON.gz", "r.parquet", "r.xlsx"])
def test_out_named_for_another_format_is_a_usage_error(cli, cache_dir, tmp_path, name):
    """``--out r.json`` wrote CSV into r.json (``--out`` writes CSV whatever the file is called)."""
    code, out, err = cli("list", "metrics", "--out", str(tmp_path / name))
    assert code == 2 and "--out writes CSV" in err and not (tmp_path / name).exists(), err
    code, out, err = cli("list", "metrics", "--out", str(tmp_path / "r.csv.gz"))
    assert code == 0 and (tmp_path / "r.csv.gz").is_file(), err


def test_seeds_out_of_numpys_range_are_usage_errors(cli, cache_dir, no_work, tmp_path):
    import numpy as np

    labels = np.repeat([0, 1], 10)
    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=labels)
    (tmp_path / "r.csv").write_text("dataset,model,accuracy\n" + "".join(
        f"t{j},m{i},{0.1 * i + 0.01 * j}\n" for i in range(3) for j in range(3)))
    for args in (["extract", "-m", "random:test_resnet", "-d", "digits", "--seed", "-1"],
                 ["score", "-d", "digits", "-m", "random:test_resnet", "--seed", "-5"],
                 ["score", "--features", str(tmp_path / "a.npz"), "--metric", "knn", "--bootstrap", "3",
                  "--bootstrap-seed", "-1"],
                 ["finetune", "--features", str(tmp_path / "a.npz"), "--seed", "-1"],
                 ["spider", "eval", str(tmp_path / "r.csv"), "--learners", "model_prior,random", "--seed", "-1"],
                 ["spider", "eval", str(tmp_path / "r.csv"), "--seed", str(2**32)]):
        code, out, err = cli(*args)
        assert code == 2 and "seed'" in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


def test_options_of_the_other_input_mode_are_named(cli, tmp_path):
    import numpy as np

    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=np.repeat([0, 1], 10))
    learner = tmp_path / "missing-learner"
    for args, message in ((["score", "--features", str(tmp_path / "a.npz"), "--split", "train", "--limit", "5"],
                           "--split, --limit only go with -d DATASET"),
                          (["finetune", "--features", str(tmp_path / "a.npz"), "--per-class", "3"],
                           "--per-class only goes with -d DATASET"),
                          (["score", "-d", "digits", "-m", "random:test_resnet", "--task", "regression"],
                           "--task only goes with --features"),
                          (["score", "--features", str(tmp_path / "a.npz"), "--device", "cpu"],
                           "--device only goes with -d DATASET"),
                          (["score", "--features", str(tmp_path / "a.npz"), "--bootstrap-exact"],
                           "--bootstrap-exact goes with --bootstrap B"),
                          (["finetune", "--features", str(tmp_path / "a.npz"), "--epochs", "3", "--device", "cpu"],
                           "--epochs, --device only go with --protocol full"),  # the linear probe has no epochs
                          (["spider", "rank", str(learner), "t1", "--per-class", "3"], "--per-class only goes with -d"),
                          (["spider", "rank", str(learner), "t1", "--model-name", "m"], "--model-name only goes with")):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, (args, err)


def test_blank_names_of_feature_files_are_usage_errors(cli, tmp_path):
    """``--model-name "$NAME"`` with NAME unset: a row without a name (or, for "", silently the file's stem)."""
    import numpy as np

    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=np.repeat([0, 1], 10))
    for args, message in ((["score", "--features", str(tmp_path / "a.npz"), "--model-name", " "], "--model-name is empty"),
                          (["score", "--features", str(tmp_path / "a.npz"), "--model-name", ""], "--model-name is empty"),
                          (["finetune", "--features", str(tmp_path / "a.npz"), "--dataset-name", ""],
                           "--dataset-name is empty")):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, (args, err)


def test_feature_files_under_one_model_name_are_usage_errors(cli, cache_dir, tmp_path):
    """dir1/a.npz and dir2/a.npz (or a repeated --model-name): `finetune` recorded two runs of one (dataset,
    model) and `spider rank` kept one of the files without a word."""
    import numpy as np

    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)),
                 labels=np.repeat([0, 1], 10))
    same_stem = ["--features", str(tmp_path / "x" / "a.npz"), "--features", str(tmp_path / "y" / "a.npz")]
    for args in (["finetune", *same_stem], ["finetune", *same_stem, "--model-name", "m", "--model-name", "m"]):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and "both name model" in err and err.count("\n") == 1, (args, err)


def test_finetune_feature_files_need_a_test_fraction(cli, tmp_path):
    import numpy as np

    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=np.repeat([0, 1], 10))
    code, out, err = cli("finetune", "--features", str(tmp_path / "a.npz"), "--test", "0")
    assert code == 2 and out == "" and err.startswith("error: --test 0 leaves --features files no test set"), err


def _score_and_truth(tmp_path):
    import pandas as pd

    rows = [(f"d{j}", f"m{i}", float((i * 7 + j * 3) % 5), float(i + j)) for i in range(3) for j in range(2)]
    pd.DataFrame(rows, columns=["Dataset", "Model", "logme", "leep"]).to_csv(tmp_path / "s.csv", index=False)
    truth = pd.DataFrame([(d, m, 0.1 * ((i * 5) % 7)) for i, (d, m, _, _) in enumerate(rows)],
                         columns=["dataset", "model", "accuracy"])
    truth.to_csv(tmp_path / "t.csv", index=False)
    return ["--scores", str(tmp_path / "s.csv"), "--truth", str(tmp_path / "t.csv"), "--tau", "kendall"]


def test_out_onto_an_input_file_is_refused(cli, tmp_path):
    """``--out`` naming an input replaced it with the results: the scores table (or the features) was lost."""
    import numpy as np

    args = _score_and_truth(tmp_path)
    before = (tmp_path / "s.csv").read_bytes()
    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=np.repeat([0, 1], 10))
    for command, message in ((["evaluate", *args, "--out", str(tmp_path / "s.csv")], "also the --scores file"),
                             (["evaluate", *args, "--out", str(tmp_path / "." / "t.csv")], "also the --truth file"),
                             (["score", "--features", str(tmp_path / "a.npz"), "--metric", "logme", "--out",
                               str(tmp_path / "a.npz")], "also the --features file")):
        code, out, err = cli(*command)
        assert code == 2 and out == "" and message in err and err.count("\n") == 1, (command, err)
    assert (tmp_path / "s.csv").read_bytes() == before
    # the CSV of a csv: dataset (finetune wrote its records over it)
    (tmp_path / "data.csv").write_text("path,label\n")
    for command in ("finetune", "score"):
        code, out, err = cli(command, "-d", f"csv:{tmp_path / 'data.csv'}", "-m", "random:test_resnet", "--out",
                             str(tmp_path / "data.csv"))
        assert code == 2 and "also the -d csv: file" in err and err.count("\n") == 1, (command, err)
    code, out, err = cli("spider", "rank", str(tmp_path), "-d", f"csv:{tmp_path / 'data.csv'}", "--out",
                         str(tmp_path / "data.csv"))
    assert code == 2 and "also the -d csv: file" in err and err.count("\n") == 1, err
    assert (tmp_path / "data.csv").read_text() == "path,label\n"


def _single_value_options(command):
    """(path, flag) of every option of every command that takes one value (not a flag, not repeatable)."""
    for path in ALL_COMMANDS:
        node = command
        for name in path:
            node = node.commands[name]
        for param in node.params:
            if param.param_type_name == "option" and not (param.multiple or param.is_flag or param.count):
                yield path, param.opts[0]


def test_a_single_value_option_given_twice_is_a_usage_error(cli, cache_dir, no_work):
    """click keeps the last of two values: `score -d pets -d flowers` scored flowers alone, without a word."""
    cases = list(_single_value_options(typer.main.get_command(app)))
    assert {(("score",), "-d"), (("evaluate",), "--out"), (("extract",), "--batch-size")} <= set(cases)
    assert not {(("score",), "-m"), (("score",), "--metric")} & set(cases)  # those two are repeatable
    for path, flag in cases:
        code, out, err = cli(*path, flag, "1", flag, "2")
        assert code == 2 and out == "" and err.count("\n") == 1, (path, flag, err)
        assert "was given 2 times; it takes one value" in err and "Traceback" not in err, (path, flag, err)
    code, out, err = cli("score", "-d", "digits", "-d", "pets", "--help")  # help answers whatever else is given
    assert code == 0 and "Usage" in out, err


def test_options_of_several_names_are_repeatable_and_comma_separated(cli, cache_dir, no_work, tmp_path):
    import numpy as np

    np.savez(tmp_path / "a.npz", features=np.random.default_rng(0).normal(size=(20, 3)), labels=np.repeat([0, 1], 10))
    code, out, err = cli("score", "--features", str(tmp_path / "a.npz"), "--metric", "hscore,gbc", "--metric", "knn",
                         "--format", "csv")
    assert code == 0, err
    assert {"hscore", "gbc", "knn"} <= set(out.splitlines()[0].split(",")), out
    # a name repeated across two -m is still a name given twice, refused before any model is built
    for command in (("extract", "-d", "digits"), ("score", "-d", "digits"), ("finetune", "-d", "digits")):
        code, out, err = cli(*command, "-m", "random:test_resnet", "-m", "random:test_resnet")
        assert code == 2 and "-m names 'random:test_resnet' more than once" in err, (command, err)
    code, out, err = cli("evaluate", *_score_and_truth(tmp_path)[:4], "--tau", "kendall", "--tau", "spearman",
                         "--format", "csv")
    assert code == 0 and {"kendall", "spearman"} <= {line.split(",")[2] for line in out.splitlines()[1:]}, (out, err)
    code, out, err = cli("evaluate", *_score_and_truth(tmp_path)[:4], "--lower-is-better", "logme",
                         "--lower-is-better", "leep", "--tau", "kendall", "--format", "csv")
    assert code == 0, err


def test_evaluate_compare_with_out_dash_keeps_stdout_one_csv(cli, tmp_path):
    code, out, err = cli("evaluate", *_score_and_truth(tmp_path), "--compare", "logme,leep", "--out", "-")
    assert code == 2 and out == "" and "--compare and --out - would both print on stdout" in err, (out, err)
    code, out, err = cli("evaluate", *_score_and_truth(tmp_path), "--compare", "logme,logme")
    assert code == 2 and out == "" and "two different methods" in err, (out, err)  # was a table of zeros


def test_evaluate_plot_path_is_checked_first_and_reported_as_written(cli, tmp_path):
    pytest.importorskip("matplotlib")
    args = _score_and_truth(tmp_path)
    for plot, message in ((tmp_path, "is a directory"), (tmp_path / "p.csv", "matplotlib writes"),
                          (tmp_path / "missing" / "p.png", "does not exist")):
        code, out, err = cli("evaluate", *args, "--plot", str(plot))
        assert code == 2 and out == "" and message in err and "Traceback" not in err, (plot, err)
    code, out, err = cli("evaluate", *args, "--plot", str(tmp_path / "scatter"))
    assert code == 0 and f"wrote {tmp_path / 'scatter.png'}" in err, err  # matplotlib's suffix, said as written
    assert (tmp_path / "scatter.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "scatter.png", "t.csv"]  # no temporary left


@pytest.mark.parametrize("ragged, line, fields", [
    ("d1,m1,0.5\nd1,m2\nd2,m1,0.4\n", 3, 2),                  # a missing field was read as a blank cell
    ("d1,m1,0.5,9\nd1,m2,0.6\nd2,m1,0.4\n", 2, 4),            # a longer first row made an index column
    ("d1,m1,0.5,\nd1,m2,0.6,\nd2,m1,0.4,\n", 2, 4),           # trailing commas shifted every column by one
    ('d1,m1,0.5\n"d1,x",m2\n\nd2,m1,0.4\n', 3, 2),           # a quoted comma is no field of its own
    ('d1,m1,0.5\n\n"d1\nx",m2\nd2,m1,0.4\n', 4, 2),          # the line where a row of two lines starts
])
def test_rows_with_more_or_fewer_fields_than_the_header_are_refused(cli, tmp_path, ragged, line, fields):
    good = tmp_path / "good.csv"
    good.write_text("dataset,model,accuracy\nd1,m1,0.5\nd1,m2,0.6\nd2,m1,0.4\nd2,m2,0.3\n")
    path = tmp_path / "ragged.csv"
    path.write_text("dataset,model,accuracy\n" + ragged)
    meta = tmp_path / "meta.csv"
    meta.write_text("task,size\nd1,10\nd2\n")
    for args, bad, at in (
        (["evaluate", "--scores", str(path), "--truth", str(good)], path, (line, fields)),
        (["evaluate", "--scores", str(good), "--truth", str(path)], path, (line, fields)),
        (["spider", "train", str(path), "--out", str(tmp_path / "l"), "--learner", "model_prior"], path, (line, fields)),
        (["spider", "train", str(good), "--out", str(tmp_path / "l"), "--learner", "model_prior",
          "--task-meta", str(meta)], meta, (3, 1)),
    ):
        code, out, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and f"{bad}: line {at[0]} has {at[1]} field(s) but the header has" \
            in err, (args, err)


SCORES_TEXT = "Dataset,Model,logme\nd1,m0,1\nd1,m1,2\nd1,m2,3\n"


def _kendall_of_texts(cli, tmp_path, truth_text: str, scores_text: str = SCORES_TEXT):
    """``evaluate --tau kendall`` of a truth and a scores file with these contents."""
    truth, scores = tmp_path / "t.csv", tmp_path / "s.csv"
    truth.write_text(truth_text)
    scores.write_text(scores_text)
    return cli("evaluate", "--scores", str(scores), "--truth", str(truth), "--tau", "kendall")


def test_rows_short_only_under_blank_trailing_header_names_are_read(cli, tmp_path):
    """A header ending in a comma names no column there: pandas fills it and the readers drop it."""
    code, out, err = _kendall_of_texts(cli, tmp_path, "dataset,model,accuracy,\nd1,m0,0.1\nd1,m1,0.2,\nd1,m2,0.3\n")
    assert code == 0 and "1.0" in out, err


@pytest.mark.parametrize("members", [[], ["a.csv", "b.csv"]])
def test_a_zip_without_exactly_one_file_is_an_input_error(cli, tmp_path, members):
    """pandas reads a .zip of one file; with none or several its ValueError was taken for a bug (exit 1)."""
    import zipfile

    path = tmp_path / "truth.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in members:
            archive.writestr(name, "dataset,model,accuracy\nd1,m0,0.1\n")
    code, out, err = cli("evaluate", "--scores", str(path), "--truth", str(path))
    assert code == 2 and f"cannot read scores file {path}: " in err and err.count("\n") == 1, err


def test_csv_fields_of_any_size_are_read(cli, tmp_path):
    """Python's csv module stops at fields of 128 KiB; pandas reads them (a long class list, a learning curve)."""
    truth = "dataset,model,accuracy,notes\n" + "".join(f"d1,m{i},0.{i},{'x' * 200_000}\n" for i in range(3))
    code, out, err = _kendall_of_texts(cli, tmp_path, truth)
    assert code == 0 and "1.0" in out, err


def test_csv_headers_typed_with_spaces_after_the_commas_are_read(cli, tmp_path):
    """"dataset, model, accuracy" named its columns " model" and " accuracy": "no model column"."""
    truth = "dataset, model, accuracy\nd1, m0, 0.1\nd1, m1, 0.2\nd1, m2, 0.3\n"
    code, out, err = _kendall_of_texts(cli, tmp_path, truth, "Dataset, Model, logme\nd1, m0, 1\nd1, m1, 2\nd1, m2, 3\n")
    assert code == 0 and "1.0" in out, err
    code, out, err = _kendall_of_texts(cli, tmp_path, truth, "Dataset,Model,logme, logme\nd1,m0,1,1\nd1,m1,2,2\n")
    assert code == 2 and "has the column 'logme' more than once" in err, err


@pytest.mark.parametrize("args", [(), ("cache",), ("spider",)], ids=lambda a: " ".join(a) or "modelrank")
def test_group_without_subcommand_shows_help_and_exits_2(cli, args):
    code, out, err = cli(*args)
    assert code == 2 and "Usage" in out + err and "Traceback" not in out + err


def test_bug_exits_1_with_traceback(cli, cache_dir, monkeypatch):
    cache_dir.mkdir()  # `records ls` reads an existing cache
    import modelrank.finetune

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(modelrank.finetune, "read_records", broken)
    code, _, err = cli("records", "ls")
    assert code == 1
    assert "Traceback" in err and "simulated bug" in err and "internal error" in err


def test_lines_on_stderr_are_never_folded(cli, cache_dir, tmp_path):
    """Piped, rich folds text at the console width (80, 200 in these tests): "wrote <path>" came out in pieces."""
    folder = tmp_path.joinpath(*["a-folder-name-long-enough-to-fold-a-line-" * 2] * 3)
    folder.mkdir(parents=True)
    code, out, err = cli("list", "metrics", "--format", "json", "--out", str(folder / "metrics.csv"))
    assert code == 0 and err.splitlines() == [f"wrote {folder / 'metrics.csv'}"], err


def test_an_eof_error_in_a_command_is_a_bug_not_an_interruption(cli, cache_dir, monkeypatch):
    """Typer turns an EOFError escaping a command into Abort, which meant "interrupted" (exit 130)."""
    cache_dir.mkdir()  # `records ls` reads an existing cache
    import modelrank.finetune

    def truncated(*args, **kwargs):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(modelrank.finetune, "read_records", truncated)
    code, _, err = cli("records", "ls")
    assert code == 1 and "interrupted" not in err
    assert "Traceback" in err and "end-of-stream marker" in err and "internal error" in err


def test_a_closed_output_pipe_is_no_bug(cli, cache_dir, monkeypatch):
    """``modelrank ... | head`` closes stdout early: Typer exited 1 (a bug, by the contract); now quietly 141, as
    a shell reports a process that SIGPIPE ended."""
    import errno

    import modelrank.cli.list_cmd

    def reader_gone(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(modelrank.cli.list_cmd, "emit_rows", reader_gone)
    code, _, err = cli("list", "metrics", "--format", "csv")
    assert code == 141 and err == "", err


def test_out_of_memory_is_an_input_error_not_a_bug(cli, cache_dir, monkeypatch):
    cache_dir.mkdir()  # `records ls` reads an existing cache
    import modelrank.finetune

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 224. GiB for an array with shape (1000000000, 30)")

    monkeypatch.setattr(modelrank.finetune, "read_records", too_big)
    code, out, err = cli("records", "ls")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: out of memory: Unable to allocate 224. GiB") and "ask for less" in err

    def too_big_for_pillow(*args, **kwargs):  # Pillow resizing a 40000 x 1 image: a MemoryError without a message
        raise MemoryError()

    monkeypatch.setattr(modelrank.finetune, "read_records", too_big_for_pillow)
    code, out, err = cli("records", "ls")
    assert code == 2 and err.startswith("error: out of memory: an allocation failed; ask for less"), err


def test_debug_shows_the_traceback_of_user_errors(monkeypatch):
    from modelrank.cli import main

    monkeypatch.setenv("MODELRANK_DEBUG", "1")
    with pytest.raises(ModelrankError):
        main(["list", "things"])


def _default_sigint():
    # A shell that starts jobs in the background ignores SIGINT in them, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)



def test_ctrl_c_while_the_command_line_loads_exits_130_in_one_line():
    """A Ctrl-C in the ~0.3 s of imports before ``cli.main`` runs ended with a traceback. The entry point imports
    the command line inside a handler, and ``import modelrank`` itself imports no numpy, so there is little
    before it. (A SIGINT cannot be timed into that window reliably: the import raises KeyboardInterrupt here.)"""
    script = (
        "import sys\n"
        "class Interrupted:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'modelrank.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupted())\n"
        "import runpy\n"
        "runpy.run_module('modelrank', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "list", "metrics"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130 and done.stdout == ""
    assert done.stderr == "modelrank: interrupted while starting; nothing was done\n"
    light = subprocess.run([sys.executable, "-c", "import sys, modelrank; print('numpy' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert light.stdout.strip() == "False"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'modelrank = "modelrank._launch:main"' in pyproject

def test_ctrl_c_after_the_command_finished_leaves_its_output_and_status_alone():
    """A Ctrl-C while the interpreter exits (torch's atexit finalizers, after the result was printed) printed
    "Exception ignored in atexit callback ... KeyboardInterrupt". Here an atexit handler sends it at that point."""
    script = (
        "import atexit, os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "atexit.register(lambda: [os.kill(os.getpid(), signal.SIGINT), sum(range(10))])\n"
        "import runpy\n"
        "runpy.run_module('modelrank', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "list", "metrics", "--format", "csv"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("name,") and done.stderr == "", done.stderr


@pytest.mark.slow
def test_sigint_exits_130_and_says_what_was_kept(tmp_path):
    env_cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelrank", "extract", "-m", "random:test_resnet", "-d", "animal-mnist", "-b", "8",
         "--workers", "0", "--cache-dir", str(env_cache)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )
    # Interrupt once extraction has started (its manifest is written; the whole run takes minutes): a fixed
    # sleep could land in the imports on a loaded machine.
    deadline = time.monotonic() + 180
    while not list(env_cache.glob("features/*/manifest.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    time.sleep(1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "interrupted:" in err and "rerun" in err


def test_out_named_for_a_compression_is_compressed(cli, cache_dir, tmp_path):
    """`--out r.csv.gz` wrote plain text under the .gz name (pandas compresses by the suffix, and the temporary it
    wrote ended in .tmp-<uuid>): every reader of it, modelrank's own included, found a damaged gzip file."""
    import gzip
    import importlib.util
    import lzma

    import pandas as pd

    cache_dir.mkdir()
    for name, opener in (("ls.csv.gz", gzip.open), ("ls.csv.xz", lzma.open)):
        code, out, err = cli("cache", "ls", "--out", str(tmp_path / name))
        assert code == 0, err
        with opener(tmp_path / name, "rt") as f:
            assert f.readline().startswith("entry,model,dataset")
        assert list(pd.read_csv(tmp_path / name).columns)[:2] == ["entry", "model"]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    if importlib.util.find_spec("zstandard") is None:  # pandas needs it to write .zst: a usage error up front
        code, out, err = cli("cache", "ls", "--out", str(tmp_path / "ls.csv.zst"))
        assert code == 2 and "needs the zstandard package" in err and err.count("\n") == 1, err


def test_random_weights_with_a_weight_file_and_a_file_given_twice_are_named(cli, cache_dir, no_work, tmp_path):
    """random:ARCH@PATH loaded the file and dropped the random initialisation without a word (a trained model as the
    no-transfer baseline); -m ARCH@PATH --checkpoint PATH said "weight file PATH@PATH does not exist"."""
    from modelrank.errors import InvalidInputError
    from modelrank.models import load_model

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"a weights file")
    for args in (("-m", f"random:test_resnet@{weights}"), ("-m", "random:test_resnet", "--checkpoint", str(weights))):
        code, out, err = cli("extract", *args, "-d", "digits")
        assert code == 2 and "asks for random weights and a weight file" in err and err.count("\n") == 1, err
    code, out, err = cli("finetune", "-m", f"random:test_resnet@{weights}", "-d", "digits")
    assert code == 2 and "asks for random weights and a weight file" in err and err.count("\n") == 1, err
    with pytest.raises(InvalidInputError, match="asks for random weights"):
        load_model("random:test_resnet", checkpoint=str(weights))
    code, out, err = cli("extract", "-m", f"test_resnet@{weights}", "--checkpoint", str(weights), "-d", "digits")
    assert code == 2 and "either after the @ or with --checkpoint, not both" in err and err.count("\n") == 1, err


def test_per_class_of_a_regression_dataset_is_refused_before_any_model_is_built(cli, cache_dir, tmp_path, monkeypatch):
    """`score -d` and `spider rank -d` found out only after building the first model (as `extract` did not)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    import modelrank.extraction
    from modelrank.spider import Records, make_learner

    for i in range(3):
        Image.new("RGB", (9, 9)).save(tmp_path / f"{i}.png")
    (tmp_path / "list.csv").write_text("path,target\n0.png,0.5\n1.png,1.5\n2.png,2.5\n")
    records = Records(pd.DataFrame([(t, m, 0.5 + 0.1 * i + 0.01 * j) for j, t in enumerate(("t0", "t1", "t2"))
                                    for i, m in enumerate(("m0", "m1"))], columns=["dataset", "model", "accuracy"]))
    protos = {t: np.zeros((2, 4), dtype=np.float32) for t in records.record_tasks}
    learner = make_learner("spider", episodes=1, val_fraction=0.0).fit(
        Records(records.table, task_prototypes=protos, info={"encoder": "random:test_resnet"})).save(tmp_path / "spider")

    def build(name):
        raise AssertionError(f"{name} was built before the arguments were checked")

    monkeypatch.setattr(modelrank.extraction, "load_model", build)
    dataset = f"csv:{tmp_path / 'list.csv'}"
    for args in (["score", "-d", dataset, "-m", "random:test_resnet", "--per-class", "2"],
                 ["spider", "rank", str(learner), "-d", dataset, "--per-class", "2"]):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err == "error: --per-class needs a classification dataset\n", (args, err)


@pytest.mark.parametrize("args", [("records", "compact"), ("records", "ls"), ("records", "export", "-"),
                                  ("records", "rm", "-d", "x", "--yes"), ("cache", "ls"), ("cache", "info", "x"),
                                  ("cache", "rm", "x", "--yes"), ("zoo", "ls", "--preset", "ci")], ids=" ".join)
@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_cache_folder_that_does_not_exist_is_a_usage_error_for_reads(cli, tmp_path, monkeypatch, args, given):
    """`records compact --cache-dir TYPO` created the folder (and a lock file in it); the others listed nothing."""
    typo = tmp_path / "cahce"
    if given == "option":
        args = (*args, "--cache-dir", str(typo))
    else:
        monkeypatch.setenv("MODELRANK_CACHE", str(typo))
    code, out, err = cli(*args)
    assert code == 2 and out == "" and err.count("\n") == 1 and f"{typo} does not exist" in err, err
    assert list(tmp_path.iterdir()) == []


def test_control_characters_of_user_text_never_reach_the_terminal_raw(cli, tmp_path):
    """A path with a newline made the one-line error two lines; a model name holding an ESC sequence recoloured the
    terminal from the table (CSV and JSON, for programs, keep the names as they are)."""
    import io

    import pandas as pd
    from rich.console import Console

    from modelrank.cli._output import frame_table
    from modelrank.spider import Records, make_learner

    code, out, err = cli("spider", "train", str(tmp_path / "a\nb\x1b[31m.csv"), "--out", str(tmp_path / "l"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "\x1b" not in err, err
    assert "a\\nb\\x1b[31m.csv does not exist" in err
    names = ["m0\x1b[31m", "m1\nx", "m2"]
    table = pd.DataFrame([(t, m, 0.5 + 0.1 * i + 0.01 * j) for j, t in enumerate(["t0", "t1"])
                          for i, m in enumerate(names)], columns=["dataset", "model", "accuracy"])
    learner = make_learner("model_prior").fit(Records(table)).save(tmp_path / "prior")
    code, out, err = cli("spider", "rank", str(learner), "--out", str(tmp_path / "r.csv"))
    assert code == 0 and "\x1b" not in out and "m0\\x1b[31m" in out and "m1\\nx" in out, out
    assert set(pd.read_csv(tmp_path / "r.csv")["model"]) == set(names)
    code, out, _ = cli("spider", "rank", str(learner), "--format", "json")
    assert code == 0 and set(pd.read_json(io.StringIO(out))["model"]) == set(names)
    screen = Console(file=io.StringIO(), force_terminal=True, width=80)  # the rich table of a terminal
    screen.print(frame_table(pd.DataFrame({"model": names, "score": [1.0, 2.0, 3.0]}), title="for t\x1b[2J"))
    shown = screen.file.getvalue()
    assert "m0\\x1b[31m" in shown and "\x1b[31m" not in shown.replace("\\x1b[31m", "") and "\x1b[2J" not in shown


def test_control_characters_of_user_text_are_escaped_in_notes_too(cli, tmp_path):
    """The notes and warnings on stderr quote dataset and model names as well: a dataset named with an ESC sequence
    reached the terminal raw in evaluate's "no ranking" note."""
    import pandas as pd

    dataset = "d\x1b[31m\nx"
    pd.DataFrame({"Dataset": [dataset] * 3, "Model": ["a", "b", "c"], "logme": [1.0, 1.0, 1.0]}).to_csv(
        tmp_path / "scores.csv", index=False)
    pd.DataFrame({"dataset": [dataset] * 3, "model": ["a", "b", "c"], "accuracy": [0.1, 0.2, 0.3]}).to_csv(
        tmp_path / "truth.csv", index=False)
    code, _, err = cli("evaluate", "--scores", str(tmp_path / "scores.csv"), "--truth", str(tmp_path / "truth.csv"))
    assert code == 0 and "no ranking" in err, err
    assert "\x1b" not in err and "d\\x1b[31m\\nx" in err, err
