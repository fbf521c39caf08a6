"""The `cache` commands: inspect and clear the feature cache."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Optional

import typer

from ..display import escape
from ..errors import ModelrankError
from ..registry import GLOB_CHARACTERS
from ._common import app, console, err_console, ExistingCacheDirOption, confirmed, set_interrupt_note
from ._output import check_output, emit, format_option, out_option, write_csv


cache_app = typer.Typer(help="Inspect or clear the feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")



@cache_app.command("ls")
def cache_ls(
    fmt: str = format_option(),
    out: Optional[Path] = out_option("the listing"),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """List cached feature entries."""
    import pandas as pd

    from ..cache import FeatureStore, entry_key

    check_output(fmt, out)
    store = FeatureStore(cache_dir)
    rows = [store.describe(folder, manifest) for folder, manifest in store.entries()]
    columns = ["entry", "model", "dataset", "split", "samples", "done", "size_mb", "precision"]
    frame = pd.DataFrame(rows, columns=columns).rename(columns={"size_mb": "MB"})
    title = f"feature cache {store.root}"
    if fmt != "table" or (out is not None and str(out) == "-"):
        emit(frame, fmt, out, title=title)
        return
    # An entry's name is its model, dataset and split plus a key: as a table's first column it took 60-90 of 80
    # columns (e.g. zoo_demo_lite0-animals-a__task_mnist-rotate3__all__b00e643060f7), so the table shows the key
    # (which `cache info` and `cache rm` take too); CSV and JSON keep the whole name.
    emit(frame.drop(columns="entry").assign(key=frame["entry"].map(entry_key)), fmt, title=title)
    if out is not None:
        write_csv(frame, out)


@cache_app.command("info")
def cache_info(
    entry: str = typer.Argument(..., help="Entry name (or a unique part of it), as shown by `cache ls`."),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """Show one entry's key, provenance and progress: one JSON object (the `cache ls` row and its manifest)."""
    import json

    from ..cache import FeatureStore

    if not entry.strip():  # "" is part of every name: an unset shell variable showed the only entry, exit 0
        raise ModelrankError("cache info needs an entry name (or a unique part of it); see `modelrank cache ls`")
    store = FeatureStore(cache_dir)
    matches = [(f, m) for f, m in store.entries() if entry in f.name]
    if len(matches) != 1:
        raise ModelrankError(f"{len(matches)} cache entries match {entry!r}; give a unique part of the name")
    folder, manifest = matches[0]
    # One document a program can read (the summary was a Python dict's repr, folded at 80 columns when piped).
    info = store.describe(folder, manifest)
    if manifest:
        info["manifest"] = {k: v for k, v in manifest.items() if k != "sample_ids"}
    console.print_json(json.dumps(info))


def select_entries(names: list[str], patterns: list[str]) -> list[str]:
    """The entry names that ``patterns`` select: each pattern is an exact name, an entry's key (its last part, as
    the `cache ls` table shows it) or a glob (``*``, ``?``, ``[...]``).

    A name that is no entry is an error that lists the entries containing it, so a partial name never removes
    anything by itself; a glob that matches nothing selects nothing.
    """
    from ..cache import entry_key

    selected: dict[str, None] = {}
    for pattern in patterns:
        if GLOB_CHARACTERS & set(pattern):
            selected.update(dict.fromkeys(fnmatch.filter(names, pattern)))
        elif pattern in names:
            selected[pattern] = None
        elif keyed := [name for name in names if entry_key(name) == pattern]:
            selected.update(dict.fromkeys(keyed))
        else:
            near = [name for name in names if pattern in name]
            if near:
                listed = ", ".join(near[:10]) + (f" and {len(near) - 10} more" if len(near) > 10 else "")
                raise ModelrankError(f"no cache entry is named {pattern!r}; {len(near)} contain it: {listed} "
                                     f"(give full names, or a glob such as '*{pattern}*')")
            raise ModelrankError(f"no cache entry is named {pattern!r} (see `modelrank cache ls`)")
    return list(selected)


@cache_app.command("rm")
def cache_rm(
    patterns: list[str] = typer.Argument(..., help="Entry names or keys as shown by `cache ls`, or quoted globs "
                                         "such as '*digits*' ('*' for everything)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove without asking (needed when there is no terminal)."),
    cache_dir: Optional[Path] = ExistingCacheDirOption,
) -> None:
    """Remove cached feature entries: exact names or explicit globs, listed and confirmed first."""
    from ..cache import FeatureStore

    store = FeatureStore(cache_dir)
    selected = select_entries([folder.name for folder, _ in store.entries()], patterns)
    if not selected:
        err_console.print("no cache entry matches; nothing removed", highlight=False, soft_wrap=True)
        return
    for name in selected:
        err_console.print(f"  {escape(name)}", highlight=False, soft_wrap=True)
    count = f"{len(selected)} entr{'y' if len(selected) == 1 else 'ies'}"
    if dry_run:
        err_console.print(f"would remove {count} (dry run)", highlight=False, soft_wrap=True)
        return
    if not yes and not confirmed(f"remove {count}?", "refusing to remove cache entries without confirmation: no "
                                 "terminal to ask on; rerun with --yes (or --dry-run to see what would go)"):
        err_console.print("nothing removed", highlight=False, soft_wrap=True)
        return
    set_interrupt_note("entries removed before the interruption are gone, the others kept (an entry may be half "
                       "removed); `modelrank cache ls` shows what is left; rerun to remove the rest")
    removed = store.remove(selected)
    err_console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}", highlight=False,
                      soft_wrap=True)
