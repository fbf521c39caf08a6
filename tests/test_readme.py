"""The README's command examples are true: the quick-start scripts exist and CI calls the test one, every
`modelrank` line parses against the real CLI, and the main workflow block runs for real, in order."""

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from modelrank.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [[line.split("  #")[0].strip() for line in b.splitlines() if line.strip() and not line.startswith("#")]
            for b in blocks]


def modelrank_lines() -> list[str]:
    return [line for block in bash_blocks() for line in block if line.startswith("modelrank ")]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    quick = bash_blocks()[0]
    assert quick == ["./scripts/demo.sh", "./scripts/test.sh"]
    for script in quick:
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("line", modelrank_lines())
def test_every_readme_command_parses(line):
    """Subcommands, options and arguments exist as written (click parses without running anything)."""
    command, name, args = typer.main.get_command(app), "modelrank", shlex.split(line)[1:]
    while isinstance(command, typer.core.TyperGroup):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r}"
        command = command.commands[name]
    command.make_context(name, args)  # raises on unknown options, missing or malformed values


@pytest.mark.slow
def test_main_workflow_block_runs(cli, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in bash_blocks() if any(line.startswith("modelrank evaluate") for line in b))
    for line in block:
        code, out, err = cli(*shlex.split(line)[1:])
        assert code == 0, f"{line}\n{out}\n{err}"
    assert (tmp_path / "scores.csv").is_file() and (tmp_path / "truth.csv").is_file()
    assert "weighted" in out.lower()


def test_dataset_lists_name_every_registered_dataset():
    """The extract section's lists: every torchvision dataset and every dataset that ships in a package
    (`mnist-sample`, `faces` and `textures` were missing); derived `source/...` and `task/...` ones come later."""
    from modelrank.data import list_dataset_rows

    section = README.split("* **Datasets**", 1)[1].split("* **Subsets**", 1)[0]
    listed = set(re.findall(r"`([a-z0-9-]+)`", section))
    registered = {name for name, source, *_ in list_dataset_rows()[1]
                  if not source.startswith(("derived", "your files"))}
    assert registered <= listed, sorted(registered - listed)
