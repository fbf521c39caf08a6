"""Shared plumbing of the reproduction scripts: where the anchors are, and printing ours next to published.

The anchors are public tables kept OUTSIDE this repository (../shared/anchors by default); the scripts read
them by path and never copy them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

DEFAULT_ANCHORS = REPO_ROOT.parent / "shared" / "anchors"
TOLERANCE = 0.002  # published tables print 3 decimals: a cell within this is reproduced

console = Console()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "anchors", nargs="?", type=Path, default=DEFAULT_ANCHORS, help=f"anchors folder [default: {DEFAULT_ANCHORS}]"
    )
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest |ours - published| that counts as equal")
    return p


def require(path: Path) -> Path:
    if not path.exists():
        console.print(f"[bold red]missing anchor file:[/] {path}")
        raise SystemExit(3)
    return path


def side_by_side(title: str, ours: pd.DataFrame, published: pd.DataFrame, status: pd.DataFrame) -> Table:
    """Methods x datasets, each cell 'ours / published', coloured by status ('ok', 'explained', 'UNEXPLAINED')."""
    colours = {"ok": "green", "explained": "yellow", "UNEXPLAINED": "bold red"}
    table = Table(title=title, header_style="bold")
    table.add_column("method")
    for column in ours.columns:
        table.add_column(str(column), justify="right")
    for method in ours.index:
        cells = []
        for column in ours.columns:
            mine, theirs, state = ours.loc[method, column], published.loc[method, column], status.loc[method, column]
            if not np.isfinite(theirs):
                cells.append(f"{mine:.3f} / —")
                continue
            colour = colours.get(state, "white")
            cells.append(f"[{colour}]{mine:.3f} / {theirs:.3f}[/{colour}]")
        table.add_row(str(method), *cells)
    return table
