"""Reading the CSV files users hand in (image lists, records, metadata) with one-line errors for bad files."""

from __future__ import annotations

import lzma
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

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


def read_csv_file(path: str | Path, what: str = "CSV file", **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; a missing file, a folder, an empty file, one that does not parse as CSV
    (binary bytes, broken quoting) or whose header names a column twice is a ``ModelrankError`` naming ``what``
    and the path, never a traceback."""
    path = check_input_file(path, what)
    try:
        frame = pd.read_csv(path, **options)
        # pandas renames a repeated column "x" to "x.1": a second "LogME" would become a method of its own and a
        # second "accuracy" would be ignored without a word.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{what} {path} is empty") from None
    except UnicodeDecodeError as exc:  # Latin-1 from a spreadsheet, or binary bytes
        raise InvalidInputError(f"cannot parse {what} {path} as CSV: not UTF-8 text ({error_reason(exc)})") from None
    except pd.errors.ParserError as exc:
        raise InvalidInputError(f"cannot parse {what} {path} as CSV: {error_reason(exc)}") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:
        # pandas decompresses .gz/.bz2/.xz/.zip by suffix: a truncated one raises EOFError (which Typer would
        # report as an interruption), a damaged one an OSError without errno; other OSErrors are the path's.
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise InvalidInputError(f"cannot read {what} {path}: a damaged or truncated compressed file "
                                f"({error_reason(exc)})") from None
    repeated = list(dict.fromkeys(name for name in header[header.duplicated()] if name.strip()))
    if repeated:
        raise InvalidInputError(f"{what} {path} has the column {repeated[0]!r} more than once; "
                                "each column name must be unique")
    return frame
