"""One small generic registry, used for models, datasets and metrics.

A registry maps a name to an object plus free-form metadata; ``register`` is a
decorator so that a module declares what it provides where it defines it
(the ``timm.register_model`` pattern).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")

#: a comma that no later "]" closes a bracket around
_NAME_SEPARATOR = re.compile(r",(?![^\[]*\])")
#: what an error about names that ``split_names`` cut says
COMMA_HINT = "a comma outside [...] separates two names"
#: A name holding one of these is a glob (``fnmatch``: ``*``, ``?``, ``[...]``) wherever commands take globs.
GLOB_CHARACTERS = frozenset("*?[")


def split_names(value: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']: models, datasets, metrics and methods are given comma-separated. A comma inside
    brackets is part of its name: ``score --set`` names a column ``knn[k=3,metric=euclidean]``, which `evaluate
    --compare` and ``--lower-is-better`` took for the two names ``knn[k=3`` and ``metric=euclidean]``."""
    return [name.strip() for name in _NAME_SEPARATOR.split(value) if name.strip()]


def names_of(values: Iterable[str] | None) -> list[str]:
    """The names of a repeatable comma-separated option (``-m a,b -m c`` -> ['a', 'b', 'c']), each value cut by
    ``split_names``."""
    return [name for value in values or () for name in split_names(value)]


def repeated(items: list) -> list:
    """The items that occur more than once in ``items``, in the order of their first occurrence."""
    return [item for item in dict.fromkeys(items) if items.count(item) > 1]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> (object, metadata). ``kind`` is used in error messages ("model", "metric")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        key = name.lower()
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = Entry(name, obj, dict(meta))

    def remove(self, name: str) -> None:
        """Forget ``name`` (entries read from files, such as a built zoo, are re-registered when the file changes)."""
        self._entries.pop(name.lower(), None)

    def entry(self, name: str) -> Entry[T]:
        if not isinstance(name, str):  # None or a function object: AttributeError on .lower()
            raise UnknownNameError(f"a {self.kind} name is text, not {name!r}; see `modelrank list {self.kind}s`")
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name.lower(), list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see `modelrank list {self.kind}s`"
        return f"unknown {self.kind} {name!r}{hint}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return [e.name for e in self]
