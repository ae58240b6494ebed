"""Progress of long work, shown one way by every command: a bar on a terminal, plain periodic
lines when stderr is not a terminal (a log file, a pipe, a batch job).

Any layer may use it (standard library only at import; ``rich`` is loaded for the bar)::

    from matgen._progress import Progress

    with Progress("relax", total=len(structures), unit="structures", enabled=show) as bar:
        for s in structures:
            ...
            bar.advance()

Plain mode prints a line when the work starts, when its description changes, every
:func:`plain_interval` seconds while it runs (also when nothing advanced: a log shows the job
is alive) and when it ends, e.g. ``relax: 12/64 structures (19%), 1m02s elapsed, ETA 4m28s``.
The interval is ``$MATGEN_PROGRESS_SECONDS`` (default 20 s). ``enabled=False`` prints nothing
(``--no-progress``). Progress is written to stderr so that stdout keeps the command's result.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Self, TextIO

#: Seconds between plain progress lines when ``$MATGEN_PROGRESS_SECONDS`` is unset.
DEFAULT_INTERVAL = 20.0


def plain_interval() -> float:
    """Seconds between plain progress lines (``$MATGEN_PROGRESS_SECONDS``, default 20)."""
    try:
        v = float(os.environ.get("MATGEN_PROGRESS_SECONDS", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return v if v > 0 else DEFAULT_INTERVAL


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal that can redraw a bar."""
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


def format_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = max(0, round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Progress of one piece of long work (thread-safe).

    Args:
        desc: what is being done (``"relax"``, ``"round 1: scoring"``).
        total: units of work, or None when unknown.
        enabled: False shows nothing.
        unit: the unit's name in plain lines (``"structures"``, ``"steps"``).
        stream: where to write (default ``sys.stderr`` at start).
        bar: force the terminal bar (True) or plain lines (False); default: the bar when
            ``stream`` is a terminal.
        interval: seconds between plain lines (default :func:`plain_interval`).
    """

    def __init__(
        self,
        desc: str,
        total: float | None = None,
        *,
        enabled: bool = True,
        unit: str = "",
        stream: TextIO | None = None,
        bar: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.desc = desc
        self.total = total
        self.done = 0.0
        self.enabled = enabled
        self.unit = unit
        self._stream = stream
        self._bar_wanted = bar
        self._interval = interval
        self._lock = threading.RLock()
        self._t0 = 0.0
        self._done0 = 0.0  # done when started: a resumed run's earlier work is not this run's rate
        self._rich: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._started = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Self:
        """Start showing progress (called by ``with``)."""
        if self._started:
            return self
        self._started = True
        self._t0 = time.monotonic()
        self._done0 = self.done
        if not self.enabled:
            return self
        stream = self._stream or sys.stderr
        self._stream = stream
        use_bar = self._bar_wanted if self._bar_wanted is not None else is_terminal(stream)
        if use_bar:
            self._start_bar(stream)
        else:
            self._line()
            self._ticker = threading.Thread(target=self._tick, name="matgen-progress",
                                            daemon=True)
            self._ticker.start()
        return self

    def close(self, ok: bool = True) -> None:
        """Stop; plain mode prints a last line (``done`` or ``stopped``)."""
        if not self._started or not self.enabled:
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
            self._line(end="done" if ok else "stopped")
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        self.enabled = False  # closed: later calls print nothing

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    # ------------------------------------------------------------------ updates
    def advance(self, n: float = 1) -> None:
        """``n`` more units done."""
        with self._lock:
            self.done += n
            if self._rich is not None:
                self._rich.update(self._task, completed=self.done)

    def update(self, done: float | None = None, total: float | None = None,
               desc: str | None = None, announce: bool = True) -> None:
        """Set the units done, the total and/or the description (plain mode prints a line
        when the description changes, unless ``announce`` is False)."""
        with self._lock:
            changed = announce and desc is not None and desc != self.desc
            if done is not None:
                self.done = done
            if total is not None:
                self.total = total
            if desc is not None:
                self.desc = desc
            if self._rich is not None:
                self._rich.update(self._task, completed=self.done, total=self.total,
                                  description=self.desc)
            elif changed and self._ticker is not None:
                self._line()

    def write(self, message: str) -> None:
        """Print a message line (above the bar on a terminal)."""
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            stream = self._stream or sys.stderr
            with self._lock:
                print(message, file=stream, flush=True)

    def line(self, end: str | None = None) -> str:
        """The plain progress line as it reads now."""
        with self._lock:
            el = time.monotonic() - self._t0 if self._started else 0.0
            unit = f" {self.unit}" if self.unit else ""
            done = _num(self.done)
            if self.total:
                frac = min(1.0, self.done / self.total)
                text = f"{self.desc}: {done}/{_num(self.total)}{unit} ({frac:.0%})"
            else:
                text = f"{self.desc}: {done}{unit}"
            if end is not None:
                return f"{text}, {end} in {format_seconds(el)}"
            text += f", {format_seconds(el)} elapsed"
            ran = self.done - self._done0
            if self.total and ran > 0 and self.done < self.total and el > 0:
                text += f", ETA {format_seconds(el * (self.total - self.done) / ran)}"
            return text

    # ------------------------------------------------------------------ internals
    def _line(self, end: str | None = None) -> None:
        with self._lock:
            print(self.line(end), file=self._stream, flush=True)

    def _tick(self) -> None:
        every = self._interval if self._interval is not None else plain_interval()
        while not self._stop.wait(every):
            self._line()

    def _start_bar(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=stream, highlight=False)
        self._rich = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, refresh_per_second=4,
        )
        self._rich.start()
        self._task = self._rich.add_task(self.desc, total=self.total, completed=self.done)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"
