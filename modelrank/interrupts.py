"""Ctrl-C held back while a few lines of work that must not be cut short run (``interrupts_held``)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back while the block runs and deliver it after, to the handler it was meant for: a
    records table rewritten without some records must not stay beside the run files that hold them (an interrupted
    deletion brought removed records back, some of them), and data-loading workers stopping after a first Ctrl-C must
    not take a second one as a traceback. Python's handlers run only in the main thread: elsewhere, as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if held:  # not after an error: that error is what stopped the block
        signal.raise_signal(signal.SIGINT)
