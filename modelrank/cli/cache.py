"""The `cache` commands: inspect and clear the feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelrankError
from ._common import app, console, CacheDirOption, print_table


cache_app = typer.Typer(help="Inspect or clear the feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(cache_dir: Optional[Path] = CacheDirOption) -> None:
    """List cached feature entries."""
    from ..cache import FeatureStore

    store = FeatureStore(cache_dir)
    rows = [list(store.describe(folder, manifest).values()) for folder, manifest in store.entries()]
    print_table(f"feature cache {store.root}", ["entry", "model", "dataset", "split", "samples", "done", "MB"], rows)


@cache_app.command("info")
def cache_info(
    entry: str = typer.Argument(..., help="Entry name (or a unique part of it), as shown by `cache ls`."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Show one entry's key, provenance and progress."""
    import json

    from ..cache import FeatureStore

    store = FeatureStore(cache_dir)
    matches = [(f, m) for f, m in store.entries() if entry in f.name]
    if len(matches) != 1:
        raise ModelrankError(f"{len(matches)} cache entries match {entry!r}; give a unique part of the name")
    folder, manifest = matches[0]
    console.print(store.describe(folder, manifest))
    if manifest:
        console.print_json(json.dumps({k: v for k, v in manifest.items() if k != "sample_ids"}))


@cache_app.command("rm")
def cache_rm(
    pattern: str = typer.Argument(..., help="Remove entries whose name contains this ('all' for everything)."),
    cache_dir: Optional[Path] = CacheDirOption,
) -> None:
    """Remove cached feature entries."""
    from ..cache import FeatureStore

    removed = FeatureStore(cache_dir).remove(pattern)
    console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")
