"""Results on stdout for people and for programs: ``--format table|csv|json`` and ``--out FILE|-``.

The rule every command follows: data goes to stdout, everything else (progress, notes, "wrote FILE") to
stderr. A table is a rich table when stdout is a terminal wide enough for it, and plain, unwrapped text when it
is piped (or the terminal is too narrow), so a script never sees box characters or lines folded at 80 columns
and nobody sees names folded into one-character columns. The listings of `modelrank list` are prose for people:
their plain tables are cut into column blocks and their long cells wrapped to the width (``COLUMNS`` if set,
else the terminal's, or 80 columns when piped); programs read them with ``--format csv|json``. ``--out -``
writes the CSV to stdout instead of the table, for pipes; ``--out FILE`` is checked before any work starts and
written atomically.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ..display import escape, printable
from ..errors import ModelrankError
from ._common import console, err_console

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "json")


def format_option(default: str = "table") -> typer.models.OptionInfo:
    return typer.Option(default, "--format", help="How to print the result on stdout: table | csv | json.")


def out_option(what: str = "the result") -> typer.models.OptionInfo:
    return typer.Option(None, "--out", "-o", help=f"Write {what} as CSV to this file ('-' for stdout instead of the table).")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ModelrankError(f"--format takes {' | '.join(FORMATS)}, not {fmt!r}")
    return fmt


def check_out(out: Optional[Path], option: str = "--out", inputs: Iterable[tuple[str, object]] = ()) -> None:
    """Fail before any work if ``out`` cannot be written: its folder must exist and it must not be a folder, nor
    one of the command's ``inputs`` ((option, path) pairs; paths that are no files are skipped), which the result
    would replace."""
    if out is None or str(out) == "-":
        return
    if out.is_dir():
        raise ModelrankError(f"{option} {out} is a directory; give a file name")
    for flag, path in inputs:
        if out.is_file() and path is not None and Path(path).is_file() and os.path.samefile(out, path):
            raise ModelrankError(f"{option} {out} is also the {flag} file: the result would replace that input")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ModelrankError(f"{option} {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ModelrankError(f"{option} {out}: directory {parent} is not writable")


def data_inputs(dataset: Optional[str] = None, features: Optional[Iterable[Path]] = None) -> list[tuple[str, object]]:
    """The input files of a command that reads a dataset (``-d``: the file of a ``csv:`` dataset) or feature files
    (``--features``), as ``check_out``'s (option, path) pairs: ``-d csv:data.csv --out data.csv`` replaced the
    dataset's CSV with the results."""
    inputs: list[tuple[str, object]] = [("--features", f) for f in features or []]
    if dataset and dataset.startswith("csv:"):
        inputs.append(("-d csv:", Path(dataset[len("csv:"):]).expanduser()))
    return inputs


def check_output(fmt: str, out: Optional[Path], inputs: Iterable[tuple[str, object]] = ()) -> None:
    """``--format`` and ``--out`` of a command that prints a table, checked before any work (``inputs``: see
    ``check_out``). ``--out -`` puts CSV on stdout, so it cannot go with ``--format json``: a program asking for
    JSON would get CSV."""
    check_format(fmt)
    check_out(out, inputs=inputs)
    if fmt == "json" and out is not None and str(out) == "-":
        raise ModelrankError("--out - writes CSV to stdout and --format json asks for JSON there: give one of them")
    check_csv_name(out)


def check_csv_name(out: Optional[Path], option: str = "--out") -> None:
    """A CSV output named for another format (``r.json``, ``records.parquet``) is an error before any work."""
    kind = _file_kind(out) if out is not None else ""
    if kind in NOT_CSV:
        redirect = kind == ".json" and option == "--out"
        hint = "; for JSON, redirect the output of --format json (> FILE)" if redirect else ""
        raise ModelrankError(f"{option} {out}: {option} writes CSV, not {kind[1:]}; name the file .csv{hint}")
    if out is not None and out.suffix.lower() == ".zst":  # pandas compresses by it, with a package of its own
        import importlib.util

        if importlib.util.find_spec("zstandard") is None:
            raise ModelrankError(f"{option} {out}: writing .zst needs the zstandard package (pip install zstandard); "
                                 "or name the file .gz, .bz2, .xz or .zip")


#: File kinds --out is asked for by mistake: it writes CSV (pandas compresses it by a .gz/.bz2/.xz/.zip suffix).
NOT_CSV = {".json", ".jsonl", ".parquet", ".pq", ".feather", ".xlsx", ".xls", ".npz", ".npy", ".pkl", ".pickle"}
COMPRESSIONS = {".gz", ".bz2", ".xz", ".zip", ".zst", ".tar"}


def _file_kind(path: Path) -> str:
    """The suffix that says what a file holds, below a compression suffix (``r.json.gz``: ``.json``)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def write_csv(frame: "pd.DataFrame", out: Path) -> None:
    """CSV to stdout for ``-``, else to a temporary file renamed into place (no half-written file under the name)."""
    if str(out) == "-":
        frame.to_csv(sys.stdout, index=False)
        return
    # The temporary ends in the name's own suffixes: pandas compresses by them (r.csv.gz), and a temporary ending in
    # .tmp-<uuid> made it write plain text under the .gz name, which every reader then found "damaged".
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex}-{out.name}")
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    err_console.print(f"wrote {escape(str(out))}", highlight=False, soft_wrap=True)


def frame_table(frame: "pd.DataFrame", title: str | None = None) -> Table:
    """A rich table of a frame: numbers right-aligned and never folded, text folded when it must."""
    import pandas as pd

    table = Table(title=Text(printable(title)) if title else None, header_style="bold")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(Text(printable(str(column))), justify="right" if numeric else "left", no_wrap=numeric,
                         overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[Text(_cell(v)) for v in row])
    return table


def fits_terminal(table: Table) -> bool:
    """Whether the terminal shows ``table`` at its natural width (no cell folded, no number split)."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    return natural <= console.width


def _cell(value: object) -> str:
    if value is None:  # as --set and --format json spell it
        return "null"
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return printable(str(value))  # a name's ESC sequence recoloured the terminal


def emit(frame: "pd.DataFrame", fmt: str = "table", out: Optional[Path] = None, title: str | None = None,
         table: Table | None = None, lead: int = 1) -> None:
    """Print ``frame`` on stdout in ``fmt`` (``table`` may be a custom rendering of it) and write ``--out``.

    With ``out`` = ``-`` the CSV is the only thing on stdout. ``lead``: how many first columns name a row (they
    lead every block of a plain table cut to the terminal's width).
    """
    if out is not None and str(out) == "-":
        write_csv(frame, out)
        return
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        sys.stdout.write(json.dumps(json_records(frame), separators=(",", ":")) + "\n")
    elif console.is_terminal and fits_terminal(table := table if table is not None else frame_table(frame, title)):
        console.print(table)
    elif not len(frame):  # its to_string is a description ("Empty DataFrame ..."), not the table's header
        _write_plain(["  ".join(map(str, frame.columns))], title)
    else:  # piped, or a table the terminal would fold into one-character columns: aligned plain text
        import pandas as pd

        shown = _printable_frame(frame)  # the CSV of --out keeps the names as they are
        # Wide (CJK) characters fill two cells: pandas pads by cells only when asked to, which costs 1.5 ms a row
        # (1.1 s of `records ls` on 750 records): asked only when some text is not ASCII.
        texts = shown.select_dtypes(exclude=["number", "bool", "datetime"]).to_numpy().ravel()
        wide = not all(str(text).isascii() for text in (*shown.columns, *texts))
        with pd.option_context("display.unicode.east_asian_width", wide):
            columns = [shown.iloc[:, [i]].to_string(index=False, na_rep="").splitlines() for i in range(shown.shape[1])]
            _write_plain([shown.iloc[:, block].to_string(index=False, na_rep="")
                          for block in _column_blocks([max(map(cell_len, c)) for c in columns], lead)], title)
    sys.stdout.flush()
    if out is not None:
        write_csv(frame, out)


def _printable_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` with the control characters of its text cells and column names written as escapes (``printable``):
    the plain table is for people (programs read CSV or JSON, which keep the names as they are), and pandas writes
    an ESC as it is."""
    import pandas as pd

    shown = frame.set_axis([printable(str(column)) for column in frame.columns], axis=1)
    for i in range(frame.shape[1]):
        values = frame.iloc[:, i]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            shown.isetitem(i, values.map(lambda value: printable(value) if isinstance(value, str) else value))
    return shown


def json_records(frame: "pd.DataFrame") -> list[dict]:
    """``frame``'s rows as JSON-ready dicts, every float exact (NaN and inf as null). pandas' JSON writer keeps at
    most 15 decimal places, not digits: a score of 1.85e-15 came out as 0.000000000000002, the same number as
    another model's 1.78e-15 that the table and the CSV showed apart and ranked below it."""
    import pandas as pd

    records = json.loads(frame.to_json(orient="records"))  # every other type as pandas writes it
    for position, column in enumerate(frame.columns):
        values = frame.iloc[:, position]
        if pd.api.types.is_float_dtype(values):
            for record, value in zip(records, values.tolist()):
                record[str(column)] = value if math.isfinite(value) else None
    return records


def emit_rows(columns: list[str], rows: list[list[object]], fmt: str = "table", out: Optional[Path] = None,
              title: str | None = None, lead: int = 1) -> None:
    """``emit`` for a small listing given as rows: the plain table is drawn without pandas, so that `modelrank
    list` answers at once (pandas is imported only for CSV, JSON and ``--out``). ``lead`` as in ``emit``."""
    if fmt != "table" or out is not None:
        import pandas as pd

        emit(pd.DataFrame(rows, columns=columns), fmt, out, title)
        return
    cells = [[_cell(value) for value in row] for row in rows]
    columns = [printable(str(column)) for column in columns]
    table = Table(title=Text(printable(title)) if title else None, header_style="bold")
    for column in columns:
        table.add_column(Text(column), overflow="fold")
    for row in cells:
        table.add_row(*[Text(cell) for cell in row])
    if console.is_terminal and fits_terminal(table):
        console.print(table)
        return
    lines = [list(map(str, columns)), *cells]
    widths = [max(cell_len(line[i]) for line in lines) for i in range(len(columns))]
    # Descriptions ran to 350 columns: a listing is read by people (programs take --format csv|json), so it is cut
    # into blocks and its long cells wrapped to the width, piped too (80 columns there unless COLUMNS says otherwise).
    blocks = _column_blocks(widths, lead, wrap=WRAP_ROOM)
    _write_plain(["\n".join(_wrapped_rows([[line[i] for i in block] for line in lines],
                                           _fit_widths([widths[i] for i in block], lead, console.width)))
                  for block in blocks], title)
    sys.stdout.flush()


#: a listing's column wider than what is left of the width goes in the same block when it keeps this many columns
#: there (its cells wrapped), in a block of its own otherwise
WRAP_ROOM = 30
#: narrowest a wrapped column gets
MIN_WRAP = 12


def _fit_widths(widths: list[int], lead: int, limit: int) -> list[int]:
    """Column widths within ``limit`` (two spaces between columns): the widest columns after the ``lead`` (name)
    columns narrowed first, none below ``MIN_WRAP``; as close as those allow when nothing more can be narrowed."""
    fitted = list(widths)
    while sum(fitted) + 2 * (len(fitted) - 1) > limit:
        narrowable = [i for i in range(lead, len(fitted)) if fitted[i] > MIN_WRAP]
        if not narrowable:
            break
        fitted[max(narrowable, key=lambda i: fitted[i])] -= 1
    return fitted


def _wrapped_rows(lines: list[list[str]], widths: list[int]) -> list[str]:
    """Plain table lines of ``lines`` (the header first): each cell word-wrapped to its column's width (a longer
    word folded), its continuation lines under it, nothing cut."""
    out = []
    for line in lines:
        pieces = [[part.plain.rstrip() for part in Text(cell).wrap(console, max(width, 1), overflow="fold")] or [""]
                  for cell, width in zip(line, widths)]
        for k in range(max(map(len, pieces))):
            parts = [p[k] if k < len(p) else "" for p in pieces]
            out.append("  ".join(part + " " * (width - cell_len(part)) for part, width in zip(parts, widths)).rstrip())
    return out


def _column_blocks(widths: list[int], lead: int = 1, wrap: int = 0) -> list[list[int]]:
    """Column indices of a plain table, cut into blocks that fit the terminal, each led by the first ``lead`` (name)
    columns; one block when piped: a script reads whole lines, and a terminal would fold longer ones into a jumble.
    ``wrap``: the cells will be wrapped (a listing), piped too, and a column joins a block where at least ``wrap``
    columns are left for it."""
    if not (wrap or console.is_terminal) or len(widths) <= lead:
        return [list(range(len(widths)))]
    names = list(range(lead))
    named = sum(widths[:lead]) + 2 * (lead - 1)
    blocks: list[list[int]] = [names.copy()]
    used = named
    for i in range(lead, len(widths)):
        if len(blocks[-1]) > lead and used + 2 + (min(widths[i], wrap) if wrap else widths[i]) > console.width:
            blocks.append(names.copy())
            used = named
        blocks[-1].append(i)
        used += 2 + widths[i]
    return blocks


def _write_plain(blocks: list[str], title: str | None) -> None:
    """Plain table text on stdout: the title as a comment line, the column blocks separated by a blank line."""
    sys.stdout.write((f"# {printable(title)}\n" if title else "") + "\n\n".join(blocks) + "\n")

