"""Reading the CSV files users hand in (image lists, records, metadata) with one-line errors for bad files."""

from __future__ import annotations

import csv
import lzma
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.io.common import get_handle

from .errors import InvalidInputError, MissingResourceError, error_reason


def check_input_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, after checking that it is a file: a folder or a missing path is a ``ModelrankError``
    naming ``what`` and the path."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise MissingResourceError(f"{what} {path} does not exist")
    return path


def _ragged_line(path: Path) -> tuple[int, int, int, int] | None:
    """(line, its fields, the header's fields, how many such rows) for the first row whose number of fields
    differs from the header's, or None. Blank lines do not count (pandas skips them), nor missing fields under
    blank header names at the end of the header (pandas fills those "Unnamed" columns, which readers drop)."""
    first, count, width, named, end = None, 0, 0, 0, 0
    # pandas reads fields of any size; the csv module stops at 128 KiB unless told otherwise.
    limit = csv.field_size_limit(2**31 - 1)
    try:
        # get_handle decompresses by suffix exactly as read_csv does.
        with get_handle(path, "r", encoding="utf-8", compression="infer") as handles:
            reader = csv.reader(handles.handle)
            for fields in reader:
                start, end = end + 1, reader.line_num  # a quoted field may hold line breaks: say where the row starts
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if not width:
                    width = named = len(fields)
                    while named > 1 and not fields[named - 1].strip():
                        named -= 1
                elif not named <= len(fields) <= width:
                    count += 1
                    first = first or (start, len(fields))
    finally:
        csv.field_size_limit(limit)
    return None if first is None else (*first, width, count)


def read_csv_file(path: str | Path, what: str = "CSV file", allow_ragged: bool = False, **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; a missing file, a folder, an empty file, one that does not parse as CSV
    (binary bytes, broken quoting), whose header names a column twice or (unless ``allow_ragged``) with a row of
    more or fewer fields than the header is a ``ModelrankError`` naming ``what`` and the path, never a traceback."""
    path = check_input_file(path, what)
    try:
        frame = pd.read_csv(path, **options)
        # pandas renames a repeated column "x" to "x.1": a second "LogME" would become a method of its own and a
        # second "accuracy" would be ignored without a word.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
        # pandas fills a row's missing fields with blanks (a blank score is a skipped metric) and takes rows one
        # field longer than the header (a trailing comma) as an index column, shifting every column by one.
        ragged = None if allow_ragged else _ragged_line(path)
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
    repeated = list(dict.fromkeys(name for name in header[header.duplicated()] if name.strip()))
    if repeated:
        raise InvalidInputError(f"{what} {path} has the column {repeated[0]!r} more than once; "
                                "each column name must be unique")
    return frame
