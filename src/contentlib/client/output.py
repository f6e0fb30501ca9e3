"""What the client prints: rich tables for people, the raw API values with `--json`, errors on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def console(stderr: bool = False) -> Console:
    """A console; off a terminal wide enough that ids and URLs are never cut, and without colors."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, stderr=stderr)
    return Console(file=stream, width=400, no_color=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("-" if v is None or v == "" else str(v) for v in r))
    console().print(t)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """`Name:  value` lines, as govc's info commands print them."""
    width = max((len(k) for k, _ in pairs), default=0) + 1
    out = console()
    for k, v in pairs:
        out.print(f"{k + ':':<{width}} {'-' if v is None or v == '' else v}", markup=False, highlight=False)


def say(text: str) -> None:
    console().print(text, markup=False, highlight=False)


def warn(text: str) -> None:
    console(stderr=True).print(text, markup=False, highlight=False)
