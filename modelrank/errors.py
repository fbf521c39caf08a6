"""Exceptions that mean "the user asked for something we cannot do".

The CLI prints these as one line and exits non-zero without a traceback;
any other exception is a bug and keeps its traceback.
"""


class ModelrankError(Exception):
    """Base class of every user-facing error."""


class UnknownNameError(ModelrankError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidInputError(ModelrankError, ValueError):
    """Arrays or tables that a computation cannot use (shape, NaN, too few classes, ...)."""


class MissingResourceError(ModelrankError, FileNotFoundError):
    """A dataset, weight file or cache entry that is not where it should be."""


#: Seeds go to numpy and scikit-learn RandomState, which take [0, 2**32).
MAX_SEED = 2**32


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in [0, 2**32), else an ``InvalidInputError`` naming ``what`` (numpy's own error for a
    negative seed, "expected non-negative integer", came from deep inside the sampling, naming no argument)."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < MAX_SEED:
        raise InvalidInputError(f"{what} must be an integer from 0 to 2**32 - 1, not {seed!r}")
    return int(seed)


def error_reason(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters) for a one-line error, or its type
    name when the message is empty (``str(EOFError())`` is "": indexing its lines raised inside the handler)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def short_list(names, shown: int = 6) -> str:
    """Names for a one-line message: all of them, or the first ``shown`` and how many there are in all."""
    names = [str(name) for name in names]
    listed = ", ".join(names[:shown])
    return f"[{listed}, ... {len(names)} in all]" if len(names) > shown else f"[{listed}]"
