"""The ``modelrank`` command's entry point: the command line (``modelrank.cli``) imported inside a handler.

Importing the command line loads numpy, typer and rich (~0.3 s). A Ctrl-C in that time used to end with a
traceback, before ``cli.main`` and its exit-code contract were running; here it exits 130 with one line.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("modelrank: interrupted while starting; nothing was done\n")
        sys.exit(130)
    try:
        run()
    finally:
        # The command has printed its result and settled its exit status. A Ctrl-C from here on would land in the
        # interpreter's exit (torch's atexit finalizers take a few hundred ms): "Exception ignored in atexit
        # callback ... KeyboardInterrupt", a traceback after a finished run that still exited 0.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
