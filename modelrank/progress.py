"""Progress of long work: a plain callable for the library, one rich display for the command line.

The library reports progress through a ``ProgressFn`` and knows nothing about how it is shown:
``progress(row, text, done, total)`` says that on the display line ``row`` ("extract", "grid", "epoch" ...)
the work ``text`` has ``done`` of ``total`` units finished (``total`` None while the amount is not known yet,
e.g. while a model loads). A call with ``done == 0`` starts the row afresh (a new model, a new grid point), so
its speed and ETA are not mixed with the previous work's. Library code calls ``report(progress, ...)``, which
does nothing when nobody listens; only ``ProgressDisplay`` imports rich.

The command line's ``ProgressDisplay`` draws one bar per row (description, bar, done/total, speed, elapsed,
ETA) on a stderr console, and draws nothing when disabled (``--quiet``, or stderr is not a terminal).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

#: progress(row, text, done, total): see the module docstring.
ProgressFn = Callable[[str, str, int, Optional[int]], None]


def report(progress: ProgressFn | None, row: str, text: str, done: int = 0, total: int | None = None) -> None:
    """Call ``progress`` when there is one: the library's single way of reporting progress."""
    if progress is not None:
        progress(row, text, done, total)


class ProgressDisplay:
    """A ``ProgressFn`` drawn as rich progress bars (with totals and ETA) on ``console``; a context manager.

    ``enabled=False`` makes every call a no-op, so callers pass the display along unconditionally. Rows appear
    in the order they are first reported, outer work first (the benchmark stage, then the model, the grid point,
    the epoch); when a row moves on to new work (its text changes), the rows below it, which described the
    previous work, are removed. Everything disappears when the display closes.
    """

    def __init__(self, console: Any, enabled: bool = True):
        self.enabled = enabled
        self._rows: dict[str, Any] = {}  # in the order they appeared: outer work first
        self._texts: dict[str, str] = {}
        self._bar = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.table import Column

            # On a narrow terminal the description gives way (ellipsis), never the counts and times.
            description = Column(ratio=1, no_wrap=True, overflow="ellipsis")
            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}", table_column=description), BarColumn(bar_width=20),
                MofNCompleteColumn(), TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=console, transient=True, expand=True,
            )

    def __enter__(self) -> "ProgressDisplay":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, row: str, text: str, done: int, total: int | None) -> None:
        if self._bar is None:
            return
        from .display import escape

        description = escape(text)
        task = self._rows.get(row)
        if task is None:  # a new row or a new piece of work is drawn at once, not at the next tick
            self._rows[row] = self._bar.add_task(description, total=total, completed=done, speed="")
            self._texts[row] = text
            self._bar.refresh()
            return
        if text != self._texts[row]:  # new work on this row: the rows below it described the previous work
            self._texts[row] = text
            for below in list(self._rows)[list(self._rows).index(row) + 1:]:
                self.remove(below)
        if done == 0:
            self._bar.reset(task, total=total, completed=0, description=description, speed="")
            self._bar.refresh()
            return
        self._bar.update(task, total=total, completed=done, description=description)
        speed = self._bar.tasks[self._bar.task_ids.index(task)].speed
        if speed:
            self._bar.update(task, speed=f"{speed:.3g}/s")

    def remove(self, row: str) -> None:
        """Take a finished row off the display (e.g. a loading step once the real work has a bar)."""
        task = self._rows.pop(row, None)
        self._texts.pop(row, None)
        if task is not None and self._bar is not None:
            self._bar.remove_task(task)


def epoch_reporter(progress: ProgressFn | None, text: str, epochs: int,
                   then: Callable[[dict], None] | None = None) -> Callable[[dict], None] | None:
    """The per-epoch callback of ``finetune_full`` for a training run: row "epoch" shows ``text`` at epoch
    k/``epochs`` (starting at 0 now), then ``then(info)`` runs (a caller's own per-epoch hook)."""
    if progress is None:
        return then
    report(progress, "epoch", text, 0, epochs)

    def on_epoch(info: dict) -> None:
        report(progress, "epoch", text, info["epoch"] + 1, info["epochs"])
        if then is not None:
            then(info)

    return on_epoch
