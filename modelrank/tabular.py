"""Reading the CSV files users hand in (image lists, records, metadata) with one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InvalidInputError, MissingResourceError, error_reason


def read_csv_file(path: str | Path, what: str = "CSV file", **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; a missing file, a folder, an empty file or one that does not parse as
    CSV (binary bytes, broken quoting) is a ``ModelrankError`` naming ``what`` and the path, never a traceback."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise MissingResourceError(f"{what} {path} does not exist")
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{what} {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot parse {what} {path} as CSV: {error_reason(exc)}") from None
