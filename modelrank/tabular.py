"""Reading the CSV files users hand in (image lists, records, metadata) with one-line errors for bad files."""

from __future__ import annotations

import csv
import itertools
import lzma
import os
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterator

import pandas as pd
from pandas.io.common import get_handle

from .errors import InvalidInputError, MissingResourceError, error_reason

try:  # the words pandas reads as missing by default; private in pandas, so its documented list if it moves
    from pandas._libs.parsers import STR_NA_VALUES
except ImportError:  # pragma: no cover
    STR_NA_VALUES = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                     "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def check_input_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, after checking that it is a file: a folder or a missing path is a ``ModelrankError``
    naming ``what`` and the path."""
    if not isinstance(path, (str, os.PathLike)):  # Path() of a dict or an array raised a TypeError
        raise InvalidInputError(f"{what} must be a file path (str or Path), not {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise MissingResourceError(f"{what} {path} does not exist")
    return path


def column_any_case(columns: Collection[object], name: str, source: str) -> Any:
    """The column called ``name`` (lower case) in any letter case, None if there is none. Two of them (``accuracy``
    and ``Accuracy``) are an error naming both: one of them was taken without a word."""
    matches = [column for column in columns if str(column).lower() == name]
    if len(matches) > 1:
        raise InvalidInputError(f"{source}: columns {' and '.join(repr(str(c)) for c in matches)} differ only in "
                                "letter case; keep one (or rename the other)")
    return matches[0] if matches else None


@contextmanager
def _csv_rows(path: Path) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """The rows of a CSV file as the csv module reads them: (line where the row starts, its fields), blank lines
    left out as pandas skips them."""
    # pandas reads fields of any size; the csv module stops at 128 KiB unless told otherwise.
    limit = csv.field_size_limit(2**31 - 1)
    try:
        # get_handle decompresses by suffix exactly as read_csv does; pandas also drops a byte order mark.
        with get_handle(path, "r", encoding="utf-8-sig", compression="infer") as handles:
            reader = csv.reader(handles.handle)

            def rows() -> Iterator[tuple[int, list[str]]]:
                end = 0
                for fields in reader:
                    start, end = end + 1, reader.line_num  # a quoted field may hold line breaks: say where it starts
                    if fields and not (len(fields) == 1 and not fields[0].strip()):
                        yield start, fields

            yield rows()
    finally:
        csv.field_size_limit(limit)


def _ragged_line(path: Path) -> tuple[int, int, int, int] | None:
    """(line, its fields, the header's fields, how many such rows) for the first row whose number of fields
    differs from the header's, or None. Missing fields under blank header names at the end of the header do not
    count (pandas fills those "Unnamed" columns, which readers drop)."""
    first, count = None, 0
    with _csv_rows(path) as rows:
        _, header = next(rows)
        width = named = len(header)
        while named > 1 and not header[named - 1].strip():
            named -= 1
        for start, fields in rows:
            if not named <= len(fields) <= width:
                count += 1
                first = first or (start, len(fields))
    return None if first is None else (*first, width, count)


def _head(path: Path) -> list[list[str]]:
    """The fields of a CSV file's header and first row (fewer for a shorter file): a cheap read."""
    with _csv_rows(path) as rows:
        return [fields for _, fields in itertools.islice(rows, 2)]


def _may_be_ragged(frame: pd.DataFrame, head: list[list[str]]) -> bool:
    """Whether a row of the CSV file read as ``frame`` (``head``: its header and first row) may have more or fewer
    fields than the header, so that the file must be scanned (read_csv tells no row's length, and the scan takes
    longer than read_csv itself). pandas takes a first row longer than the header as an index column and refuses
    a longer row further down; it fills a shorter row's missing fields as blank cells, so such a row is blank in
    the last column (keep_default_na=False, text read as given, fills them with "" rather than NaN)."""
    if len(head) > 1 and len(head[1]) > len(head[0]):
        return True
    if frame.shape[1] == 0:  # the header's one column became the index (index_col=0)
        return True
    last = frame.iloc[:, -1]
    return bool(last.isna().any() or (not pd.api.types.is_numeric_dtype(last) and last.eq("").any()))


def _as_text(header: list[str], text_columns: Collection[str], index_col: object = None) -> dict[str, Any]:
    """read_csv options that read the columns named in ``text_columns`` (any letter case) and an ``index_col``
    given by position (it names the rows) as text, as given, a blank cell alone being missing: pandas'
    missing-value words ("NA", "None", "null", "nan", ...) are names a dataset or model may have. Every other
    column keeps pandas' missing values."""
    wanted = {name.lower() for name in text_columns}
    text = [i for i, name in enumerate(header) if name.strip().lower() in wanted or i == index_col]
    return {"dtype": dict.fromkeys(text, str), "keep_default_na": False,
            "na_values": {i: [""] if i in text else STR_NA_VALUES for i in range(len(header))}}


def read_csv_file(path: str | Path, what: str = "CSV file", allow_ragged: bool = False,
                  text_columns: Collection[str] = (), **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; a missing file, a folder, an empty file, one that does not parse as CSV
    (binary bytes, broken quoting), whose header names a column twice or (unless ``allow_ragged``) with a row of
    more or fewer fields than the header is a ``ModelrankError`` naming ``what`` and the path, never a traceback.
    ``text_columns``: names of columns (any letter case) read as text as given, a blank cell alone missing; so is
    an ``index_col`` given by position."""
    path = check_input_file(path, what)
    try:
        head = _head(path)
        if not head:  # blank lines only, as pandas says
            raise pd.errors.EmptyDataError
        index_col = options.get("index_col")
        names_as_text = text_columns or isinstance(index_col, int) and not isinstance(index_col, bool)
        frame = pd.read_csv(path, **options, **(_as_text(head[0], text_columns, index_col) if names_as_text else {}))
        # pandas fills a row's missing fields with blanks (a blank score is a skipped metric) and takes a first row
        # one field longer than the header (a trailing comma) as an index column, shifting every column by one.
        ragged = None if allow_ragged or not _may_be_ragged(frame, head) else _ragged_line(path)
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{what} {path} is empty") from None
    except UnicodeDecodeError as exc:  # Latin-1 from a spreadsheet, or binary bytes
        raise InvalidInputError(f"cannot parse {what} {path} as CSV: not UTF-8 text ({error_reason(exc)})") from None
    except (pd.errors.ParserError, csv.Error) as exc:
        raise InvalidInputError(f"cannot parse {what} {path} as CSV: {error_reason(exc)}") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:
        # pandas decompresses .gz/.bz2/.xz/.zip by suffix: a truncated one raises EOFError (which Typer would
        # report as an interruption), a damaged one an OSError without errno; other OSErrors are the path's.
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise InvalidInputError(f"cannot read {what} {path}: a damaged or truncated compressed file "
                                f"({error_reason(exc)})") from None
    except ValueError as exc:  # e.g. a .zip holding no file or several (pandas reads one)
        raise InvalidInputError(f"cannot read {what} {path}: {error_reason(exc)}") from None
    if ragged is not None:
        line, fields, width, count = ragged
        more = f" ({count} such rows)" if count > 1 else ""
        raise InvalidInputError(f"{what} {path}: line {line} has {fields} field(s) but the header has {width}{more}; "
                                "every row needs one field per column (an empty one, as in a,,b, is a blank cell)")
    # pandas renames a repeated column "x" to "x.1": a second "LogME" would become a method of its own and a
    # second "accuracy" would be ignored without a word.
    names = pd.Series(head[0]).str.strip()
    repeated = list(dict.fromkeys(name for name in names[names.duplicated()] if name))
    if repeated:
        raise InvalidInputError(f"{what} {path} has the column {repeated[0]!r} more than once; "
                                "each column name must be unique")
    # "dataset, model, accuracy", with a space after each comma as people type it, names the columns without it.
    return frame.rename(columns=lambda name: name.strip() if isinstance(name, str) else name)
