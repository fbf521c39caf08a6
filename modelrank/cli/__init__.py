"""The `modelrank` command line: a thin Typer layer over the Python API, one module per subcommand.

Every command turns user errors (``ModelrankError``) into one red line and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from . import cache, evaluate, extract, finetune, list_cmd, score, spider, zoo  # noqa: F401  (registers the commands)
from ._common import app
from ._main import main

__all__ = ["app", "main"]
