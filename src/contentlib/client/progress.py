"""Transfer progress: a rich bar per file (rate, ETA) on a terminal, else one line per file as it finishes."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from contentlib.client.output import console, size, warn


class Transfers:
    """`with Transfers(to_stderr) as p: t = p.start(name, total); p.advance(t, n); p.done(t)`."""

    def __init__(self, to_stderr: bool = False, lines: bool = True) -> None:
        self.lines = lines  # off a terminal, a line per file done (else nothing)
        self.out = console(stderr=to_stderr)
        self.tty = (sys.stderr if to_stderr else sys.stdout).isatty()
        self.bars: Progress | None = None
        self.files: dict[int, tuple[str, float, int]] = {}  # key → name, start time, bytes
        self._next = 0

    def __enter__(self) -> Transfers:
        if self.tty:
            self.bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.out,
                transient=False,
            )
            self.bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()

    def percent(self, total: int) -> int:
        """How much of `total` bytes the transfers so far have moved, in percent."""
        return min(100, 100 * sum(n for _, _, n in self.files.values()) // total) if total else 0

    def start(self, name: str, total: int | None) -> int:
        key = self._next
        self._next += 1
        self.files[key] = (name, time.monotonic(), 0)
        if self.bars is not None:
            self.bars.add_task(name, total=total, key=key)
        return key

    def _task(self, key: int) -> TaskID:
        assert self.bars is not None
        return next(t.id for t in self.bars.tasks if t.fields.get("key") == key)

    def advance(self, key: int, n: int) -> None:
        name, started, done = self.files[key]
        self.files[key] = (name, started, done + n)
        if self.bars is not None:
            self.bars.advance(self._task(key), n)

    def restart(self, key: int, done: int = 0) -> None:
        """The transfer starts over (a retry) or goes on from `done` (a resumed download)."""
        name, started, _ = self.files[key]
        self.files[key] = (name, started, done)
        if self.bars is not None:
            self.bars.update(self._task(key), completed=done)

    def set(self, key: int, done: int, total: int | None = None) -> None:
        name, started, _ = self.files[key]
        self.files[key] = (name, started, done)
        if self.bars is not None:
            self.bars.update(self._task(key), completed=done, total=total)

    def note(self, text: str) -> None:
        """A line about a transfer (a retry, a resume): above the bars, or on stderr."""
        if self.bars is not None:
            self.bars.console.print(text, markup=False, highlight=False)
        else:
            warn(text)

    def done(self, key: int, what: str = "") -> None:
        name, started, n = self.files[key]
        if self.bars is not None:
            task = self._task(key)
            self.bars.update(task, total=n, completed=n)
            return
        if not self.lines:
            return
        seconds = max(time.monotonic() - started, 1e-6)
        rate = f"{size(int(n / seconds))}/s"
        self.out.print(f"{name}  {size(n)}  {seconds:.1f} s  {rate}{'  ' + what if what else ''}", markup=False)
