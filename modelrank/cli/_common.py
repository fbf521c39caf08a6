"""What every subcommand module shares: the Typer app, the consoles, common options and small parsers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import ModelrankError
from ..registry import repeated

app = typer.Typer(
    name="modelrank",
    help="Rank pre-trained models by how well they will transfer to your task, without fine-tuning them all.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no "<bool>" type column, no box lines when piped
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

_NOTHING_KEPT = "nothing was written"
_interrupt_note = _NOTHING_KEPT
_quiet = False


def set_interrupt_note(note: str) -> None:
    """Say what an interruption from now on leaves behind (e.g. "finished chunks are kept; rerun to resume")."""
    global _interrupt_note
    _interrupt_note = note


def interrupt_note() -> str:
    return _interrupt_note


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"modelrank {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display and no progress lines on stderr "
                               "(errors and warnings still show)."),
) -> None:
    global _quiet
    _quiet = quiet
    set_interrupt_note(_NOTHING_KEPT)


def progress_wanted() -> bool:
    """Draw progress? Only on a terminal, and not with --quiet."""
    return not _quiet and err_console.is_terminal


def progress_display(quiet: bool = False):
    """The progress display of a long command: on stderr, drawn only on a terminal and without --quiet
    (``quiet``: a subcommand's own --quiet)."""
    from ..progress import ProgressDisplay

    return ProgressDisplay(err_console, enabled=not quiet and progress_wanted())


def confirmed(question: str, refusal: str) -> bool:
    """The user's yes on the terminal; without a terminal (a script, a pipe) nobody can answer: ``refusal`` as a
    one-line error (exit 2), so nothing is removed unasked."""
    import sys

    if not sys.stdin.isatty():
        raise ModelrankError(refusal)
    return typer.confirm(question, default=False, err=True)


def log(message: str) -> None:
    """A progress line on stderr (a finished stage, a finished run), silenced by --quiet; ``message`` is markup."""
    if not _quiet:
        err_console.print(message, highlight=False, soft_wrap=True)


def folder_path(value: str) -> Path:
    """The value of a folder option (``--cache-dir``, ``--data-root``, ``benchmark --out``). An empty one, as
    ``--cache-dir "$CACHE"`` gives with CACHE unset, would be ``Path("")``, the current folder: the cache or
    the results would land in whatever folder the script runs in. (An empty environment variable is unset.)"""
    if not value.strip():
        raise typer.BadParameter("an empty path would mean the current folder; give a folder (or '.')")
    path = Path(value)
    if path.is_file():
        raise typer.BadParameter(f"{value} is a file, not a folder")
    return path


def existing_cache_path(value: str) -> Path:
    """``folder_path`` of a command that only reads the cache or removes from it (`cache ls`, `records compact`,
    ...): a folder that does not exist is a typo, not an empty cache, and nothing is created for it (`records
    compact` made the folder and its lock file; the others answered "0 records")."""
    path = folder_path(value)
    if not path.is_dir():
        raise typer.BadParameter(f"{value} does not exist; give an existing cache folder (this command creates none)")
    return path


def cache_dir_option(existing: bool = False):
    """``--cache-dir`` (or ``$MODELRANK_CACHE``); ``existing``: a command that only reads or removes needs the
    folder to be there (the default one may be missing: nothing was cached yet)."""
    return typer.Option(None, "--cache-dir", envvar="MODELRANK_CACHE", metavar="DIR",
                        parser=existing_cache_path if existing else folder_path,
                        help=f"Feature cache folder{' (an existing one)' if existing else ''} "
                        "[default: ~/.cache/modelrank].")


CacheDirOption = cache_dir_option()
ExistingCacheDirOption = cache_dir_option(existing=True)
DataRootOption = typer.Option(None, "--data-root", envvar="MODELRANK_DATA", parser=folder_path, metavar="DIR",
                              help="Where torchvision datasets live.")


#: --device and --precision of the commands that extract (``extract``, and ``score -d`` for missing features).
DEVICE_HELP = "auto (CUDA with AMP if present), cpu, cuda, cuda:1 ..."
PRECISION_HELP = ("auto (float16 autocast on CUDA, float32 on the CPU) | float32 | float16 (CUDA). One cache entry "
                  "holds one precision.")


def SizeOption(flag: str, help: str, default: Optional[int] = None, *, minimum: int = 1, maximum: Optional[int] = None,
               short: Optional[str] = None):
    """An integer option checked by the parser (a one-line usage error before any work): sizes, counts, epochs."""
    names = (flag, short) if short else (flag,)
    return typer.Option(default, *names, min=minimum, max=maximum, help=help)


def SeedOption(help: str, flag: str = "--seed"):
    """A random seed: numpy and scikit-learn take 0 ... 2**32 - 1 (a negative one was a traceback mid-run)."""
    return typer.Option(0, flag, min=0, max=2**32 - 1, help=help)


#: most data-loading processes: more than 4 per core only start processes that wait (100000 would fork 100000)
MAX_WORKERS = 4 * (os.cpu_count() or 1)


#: how help says that an option takes several names (``registry.names_of``)
SEVERAL = "comma-separated or repeated"


def check_distinct(names: list[str], flag: str) -> None:
    """A name given twice in a comma-separated list is an error: its work was done twice, into two rows of one name."""
    twice = repeated(names)
    if twice:
        raise ModelrankError(f"{flag} names {twice[0]!r} more than once")


def check_extraction(models: list[str], dataset: str, split: Optional[str], cache_dir: Optional[Path]) -> None:
    """Every model name, the dataset and its split, checked before the first model is loaded."""
    from ..data import check_dataset
    from ..extraction import checked_identities

    if not models:
        raise ModelrankError("no model given")
    # `score` found out only after extracting everything, when two columns shared one name
    check_distinct(models, "-m")
    checked_identities(models, cache_dir)
    check_dataset(dataset, split)


# Features a user brings (`score`, `finetune`): the "rank my models from features and labels" path.
FeatureFilesOption = typer.Option(
    None, "--features", help="Feature file (repeatable): .npz with features, labels[, source_probs, class_names] or "
    ".parquet with features, label[, source_probs, class_name].")
ModelNamesOption = typer.Option(None, "--model-name", help="Model name of each --features file, in order [default: file stem].")
DEFAULT_DATASET_NAME = "custom"
DatasetNameOption = typer.Option(DEFAULT_DATASET_NAME, "--dataset-name", help="Dataset name for --features files.")
TaskOption = typer.Option(None, "--task", help="classification | regression for --features files [default: inferred from the labels].")


def load_feature_files(features: list[Path], model_names: Optional[list[str]], dataset_name: str, task: Optional[str]):
    from ..scoring import load_feature_file

    if model_names and len(model_names) != len(features):
        raise ModelrankError(f"{len(model_names)} --model-name for {len(features)} --features files")
    # A blank name (an unset shell variable) would be a row without a name, or silently the file's stem.
    if any(not name.strip() for name in model_names or []):
        raise ModelrankError("--model-name is empty; give each --features file a name (or leave the option out)")
    if not dataset_name.strip():
        raise ModelrankError("--dataset-name is empty; give the dataset a name (or leave the option out)")
    names = model_names or [None] * len(features)
    sets = [load_feature_file(f, n, dataset_name, task) for f, n in zip(features, names)]
    # Two files under one model name (dir1/a.npz and dir2/a.npz, or a repeated --model-name) were two records of
    # one (dataset, model) in `finetune`, and one silently replaced the other in `spider rank`.
    files: dict[str, Path] = {}
    for path, fs in zip(features, sets):
        if fs.model in files:
            raise ModelrankError(f"--features {files[fs.model]} and {path} both name model {fs.model!r}; "
                                 "give each file its own --model-name")
        files[fs.model] = path
    return sets


def check_data_options(features: Optional[list[Path]], dataset: Optional[str], models: Optional[list[str]],
                       model_names: Optional[list[str]], dataset_name: str, task: Optional[str],
                       dataset_options: dict[str, object]) -> None:
    """The data of `score` / `finetune`: ``--features FILE...`` or ``-d DATASET -m MODELS``, each with only its own
    options (``dataset_options``: flag -> value of the options that go with ``-d``)."""
    if bool(features) == bool(dataset or models):
        raise ModelrankError("give either --features FILE... or -d DATASET -m MODELS")
    if not features and not (dataset and models):
        raise ModelrankError("-d DATASET and -m MODELS go together")
    if features:
        only_with("-d DATASET", dataset_options)
    else:
        only_with("--features", {"--model-name": model_names, "--task": task,
                                 "--dataset-name": None if dataset_name == DEFAULT_DATASET_NAME else dataset_name})


def only_with(mode: str, options: dict[str, object]) -> None:
    """Options of the other way to give the data (``--features FILE...`` or ``-d DATASET``) are an error, not
    silently ignored. ``options``: flag -> value, None (or empty) when not given."""
    given = [flag for flag, value in options.items() if value not in (None, [])]
    if given:
        raise ModelrankError(f"{', '.join(given)} only go{'es' if len(given) == 1 else ''} with {mode}")


def key_values(pairs: list[str], flag: str) -> dict[str, object]:
    """['epochs=50', 'hidden=16'] -> {'epochs': 50, 'hidden': 16} (values parsed as JSON when they parse).

    One key with two different values (``--observed m0=0.5 --observed m0=0.6``, ``--set lr=1 --set lr=2``) is an
    error: the last one won without a word."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ModelrankError(f"{flag} expects key=value, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        key = key.strip()
        if key in out and out[key] != value:
            raise ModelrankError(f"{flag} gives {key} two values, {out[key]!r} and {value!r}; give one")
        out[key] = value
    return out
