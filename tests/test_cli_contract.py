"""The command line as a contract: 0 success, 2 usage/input error (one line, no traceback), 130 interrupted,
1 only for a bug (with its traceback)."""

import signal
import subprocess
import sys
import time

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


def test_version(cli):
    from modelrank import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"modelrank {__version__}"


BAD_INVOCATIONS = [
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
]


@pytest.mark.parametrize("args", BAD_INVOCATIONS, ids=" ".join)
def test_bad_invocations_are_one_line_exit_2(cli, cache_dir, args):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err


@pytest.mark.parametrize("args", [(), ("cache",), ("spider",)], ids=lambda a: " ".join(a) or "modelrank")
def test_group_without_subcommand_shows_help_and_exits_2(cli, args):
    code, out, err = cli(*args)
    assert code == 2 and "Usage" in out + err and "Traceback" not in out + err


def test_bug_exits_1_with_traceback(cli, cache_dir, monkeypatch):
    import modelrank.finetune

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(modelrank.finetune, "read_records", broken)
    code, _, err = cli("records", "ls")
    assert code == 1
    assert "Traceback" in err and "simulated bug" in err and "internal error" in err


def test_debug_shows_the_traceback_of_user_errors(monkeypatch):
    from modelrank.cli import main

    monkeypatch.setenv("MODELRANK_DEBUG", "1")
    with pytest.raises(ModelrankError):
        main(["list", "things"])


def _default_sigint():
    # A shell that starts jobs in the background ignores SIGINT in them, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_sigint_exits_130_and_says_what_was_kept(tmp_path):
    env_cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelrank", "extract", "-m", "random:test_resnet", "-d", "animal-mnist", "-b", "8",
         "--workers", "0", "--cache-dir", str(env_cache)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )
    time.sleep(10)  # imports, model and dataset set-up; the whole run takes minutes
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "interrupted:" in err and "rerun" in err
