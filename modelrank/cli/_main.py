"""The entry point: runs the Typer app and maps every outcome to the exit-code contract.

* 0 — success.
* 2 — a usage or input error (a click usage error, a ``ModelrankError``, a path that is missing, unreadable
  or in the way, a full disk, a request too large for the memory): one line on stderr, no traceback.
* 130 — interrupted (Ctrl-C / SIGINT): one line saying what was kept; a rerun resumes.
* 141 — stdout (or stderr) closed by its reader (``modelrank ... | head``): quiet, like a process that SIGPIPE
  ends (128 + 13).
* 1 — anything else is a bug: the traceback is printed.

``MODELRANK_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Optional

from ..display import escape
from ..errors import ModelrankError
from ._common import app, err_console, interrupt_note

#: exit status of a run whose output pipe was closed by its reader: a shell's for a process SIGPIPE ended
_BROKEN_PIPE = 128 + 13

# OSErrors that mean "this path is wrong" (an input error) rather than "the machine is in trouble".
_INPUT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                 errno.ENAMETOOLONG, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> None:
    # one line, whatever the message quotes: a path or name holding a newline made it two
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(exc) -> None:
    """A click usage error as one line: the message and where to find help (the usage block is noise here)."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    if isinstance(exc, NoArgsIsHelpError):  # a group without its subcommand: the help is the answer
        exc.show()
        sys.exit(2)
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    _fail(message, exc.exit_code if exc.exit_code else 2)


#: typer prints an option's value type as ``<str>``; help shows click's conventional upper-case metavars instead.
_METAVARS = {"<str>": "TEXT", "<list[str]>": "TEXT", "<int>": "INTEGER", "<int range>": "INTEGER", "<float>": "FLOAT",
             "<path>": "PATH", "<list[Path]>": "PATH", "<dir>": "DIR", "<file>": "FILE"}


def _refusing_repeated_options(command) -> None:
    """Make ``command`` refuse a single-value option given twice: click keeps the last without a word, so
    ``score -d pets -d flowers`` scored flowers alone. Options that take several values are repeatable
    (``multiple``); flags are not values."""
    from typer._click.exceptions import UsageError

    make_parser = command.make_parser

    def make_checking_parser(ctx):
        parser = make_parser(ctx)
        parse_args = parser.parse_args

        def parse_checked(args):
            opts, arguments, order = parse_args(args=args)
            if not any(param.is_eager for param in order):  # --help answers whatever else is on the line
                options = [param for param in order if param.param_type_name == "option" and not param.multiple
                           and not param.is_flag and not param.count]
                twice = next((param for param in options if options.count(param) > 1), None)
                if twice is not None:
                    raise UsageError(f"{'/'.join(twice.opts)} was given {options.count(twice)} times; it takes one "
                                     "value", ctx)
            return opts, arguments, order

        parser.parse_args = parse_checked
        return parser

    command.make_parser = make_checking_parser


def _no_display_type(ctx=None) -> None:
    return None


def _command():
    """The click command of the app, with plain metavars (``--out PATH``, ``LEARNER_DIR``) on every parameter
    that has none of its own, and no single-value option taken twice."""
    from typer.main import get_command

    command = get_command(app)
    pending = [command]
    while pending:
        node = pending.pop()
        pending.extend(getattr(node, "commands", {}).values())
        _refusing_repeated_options(node)
        for param in node.params:
            if param.metavar is not None:
                continue
            if param.param_type_name == "argument":
                param.metavar = param.name.upper()
                # typer adds its value type to an argument's help entry ("LEARNER_DIR <path>"): the name alone
                param.display_type_rich = _no_display_type
            elif not (param.is_flag or param.count):
                param.metavar = _METAVARS.get(param.display_type(None))
    return command


def _interrupted() -> None:
    err_console.print(f"[bold red]interrupted:[/] {escape(interrupt_note())}", highlight=False, soft_wrap=True)
    sys.exit(130)


def _bug() -> None:
    import traceback

    traceback.print_exc()
    err_console.print("[bold red]internal error:[/] this is a bug in modelrank; please report it with the "
                      "traceback above", highlight=False, soft_wrap=True)
    sys.exit(1)


def main(argv: Optional[list[str]] = None) -> None:
    import warnings

    from typer._click.exceptions import ClickException
    from typer.exceptions import Abort

    warnings.showwarning = _show_warning
    if os.environ.get("MODELRANK_DEBUG"):
        # The same mapping of exit codes would hide where an error came from: let everything propagate.
        code = _command()(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
        return
    try:
        code = _command()(args=argv, standalone_mode=False, prog_name="modelrank")
    except ModelrankError as exc:
        _fail(str(exc), 2)
    except ClickException as exc:
        _usage_error(exc)
    except (Abort, KeyboardInterrupt) as exc:
        # Typer turns any EOFError escaping a command into Abort (meant for end of input at a prompt, which click's
        # prompt raises without a cause): one from the code is no interruption, but an unhandled error.
        if isinstance(exc.__cause__, EOFError):
            _bug()
        _interrupted()
    except MemoryError as exc:  # asked for more than the machine holds (e.g. --bootstrap 10**9): ask for less
        _fail(f"out of memory: {str(exc) or 'an allocation failed'}; ask for less (fewer samples, models or resamples)", 2)
    except OSError as exc:
        if exc.errno in _INPUT_ERRNOS or isinstance(exc, (FileNotFoundError, PermissionError)):
            _fail(str(exc), 2)
        _bug()
    except Exception:
        _bug()
    except SystemExit as exc:
        # Typer answers a broken pipe with exit 1 (its stdout is then silenced), which here would claim a bug.
        if isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE:
            sys.exit(_BROKEN_PIPE)
        raise
    # Typer answers Ctrl-C inside a command with Exit(130), which non-standalone mode returns as a value.
    if code == 130:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)
