"""Run the real `modelrank` entry point in-process (fast) and capture exit code and output."""

import sys

import pytest

from modelrank.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["modelrank", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(monkeypatch, capsys):
    return lambda *args: run_cli(monkeypatch, capsys, *args)
