"""User text on the terminal. Names, paths and messages come from the user, so they are shown with their control
characters as escapes (a newline in a path made a one-line error two lines, an ESC sequence in a model name
recoloured the terminal) and, inside rich markup, with their brackets escaped (``[bold]`` in a name is text)."""

from __future__ import annotations

import re

from rich.markup import escape as escape_markup

#: C0 and C1 control characters (newline, tab and ESC among them) and DEL
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def escape(text: str) -> str:
    """``text`` to embed in rich markup: ``printable``, with its markup escaped."""
    return escape_markup(printable(text))
