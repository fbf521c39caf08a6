"""One progress display for long work: totals and ETA on stderr, hidden with --quiet or without a terminal."""

import io

import pytest
from rich.console import Console

from modelrank.progress import ProgressDisplay, epoch_reporter, report


def terminal(width=150):
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def test_display_draws_rows_with_totals_and_eta_and_escapes_text():
    console = terminal()
    with ProgressDisplay(console) as display:
        display("extract", "loading model [bold]x", 0, None)
        display("extract", "lite0 on digits (images)", 0, 40)
        display("extract", "lite0 on digits (images)", 16, 40)
        display("grid", "grid point 3/20: lr=0.1 wd=0", 2, 20)
    shown = console.file.getvalue()
    assert "loading model [bold]x" in shown  # user text is not taken as markup
    assert "16/40" in shown and "3/20" in shown and "eta" in shown


def test_new_work_on_a_row_clears_the_rows_below_it():
    display = ProgressDisplay(terminal())
    with display:
        display("models", "fine-tuning a", 0, 2)
        display("grid", "grid point 1/2", 0, 2)
        display("epoch", "a: epochs", 3, 10)
        display("grid", "grid point 1/2", 1, 2)  # progress on the same work keeps the rows below
        assert list(display._rows) == ["models", "grid", "epoch"]
        display("grid", "grid point 2/2", 1, 2)
        assert list(display._rows) == ["models", "grid"]
        display("models", "fine-tuning b", 1, 2)
        assert list(display._rows) == ["models"]


def test_disabled_display_and_no_listener_draw_nothing():
    console = terminal()
    with ProgressDisplay(console, enabled=False) as display:
        display("extract", "loading", 0, None)
        report(display, "extract", "images", 3, 10)
    assert console.file.getvalue() == ""
    report(None, "extract", "nobody listens", 1, 2)  # the library's default: no callback, no error


def test_epoch_reporter_counts_epochs_then_chains():
    calls, chained = [], []
    on_epoch = epoch_reporter(lambda *args: calls.append(args), "lite0: epochs", 3, chained.append)
    on_epoch({"epoch": 0, "epochs": 3})
    assert calls == [("epoch", "lite0: epochs", 0, 3), ("epoch", "lite0: epochs", 1, 3)]
    assert chained == [{"epoch": 0, "epochs": 3}]
    assert epoch_reporter(None, "x", 3) is None


@pytest.mark.parametrize("quiet", [False, True])
def test_extract_shows_loading_steps_and_the_bar_on_a_terminal_unless_quiet(cli, cache_dir, monkeypatch, quiet):
    import modelrank.cli._common as common

    console = terminal()
    monkeypatch.setattr(common, "err_console", console)
    args = ["extract", "-m", "random:test_resnet", "-d", "digits", "--limit", "12", "-b", "6"]
    code, out, err = cli(*(["--quiet"] if quiet else []), *args)
    assert code == 0, err
    shown = console.file.getvalue()
    if quiet:
        assert shown == ""
    else:
        assert "opening dataset digits" in shown and "loading model random:test_resnet" in shown
        assert "/12" in shown and "eta" in shown
    assert "loading model" not in out  # data only on stdout



@pytest.mark.parametrize("drawn", [False, True])
def test_zoo_build_logs_epochs_only_when_no_bar_shows_them(monkeypatch, drawn):
    import modelrank.cli._common as common
    from modelrank.cli.zoo import _zoo_events

    console = terminal()
    monkeypatch.setattr(common, "err_console", console)
    monkeypatch.setattr(common, "_quiet", False)  # no `modelrank` call here to reset an earlier test's --quiet
    event = _zoo_events(ProgressDisplay(console, enabled=drawn))
    event("start", "zoo/ci/a[1]", {"index": 0, "total": 2})
    event("epoch", "zoo/ci/a[1]", {"epoch": 0, "epochs": 3, "loss": 1.0, "val_accuracy": 0.5})
    event("done", "zoo/ci/a[1]", {"source_accuracy": 0.75, "seconds": 4.0})
    logged = console.file.getvalue()
    assert "1/2 zoo/ci/a[1]" in logged and "source accuracy 0.750" in logged  # names are not markup
    assert ("epoch 1/3" in logged) != drawn
