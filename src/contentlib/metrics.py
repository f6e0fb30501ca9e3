"""The server's Prometheus metrics (`GET /metrics`): the totals of every process of this server start.

A request only adds to plain numbers in its own process (a dictionary update: the GET hot path stays within a few
microseconds, bench/ops_overhead.py). Each process writes its totals, whole, into a file of its own in the start's
metrics directory (`metrics_dir.fresh`, inherited by the workers) four times a second while they change, before it
forks and when it stops; a scrape, whichever worker takes it, adds its own live numbers to those of every other
file: the other workers' (at most a flush interval old), those of workers that died and were replaced, and the
supervisor's (the start's orphan scan). Without a directory (the server built inside another program) the numbers
are this process's alone.

Labels are bounded: `operation` is an operation-table id (`com.vmware.content.library.get`) or one of a fixed few
(`data.upload`, `data.download`, `vcsp`, `soap`, `ops.healthz`, `ops.readyz`, `ops.metrics`, `ops.openapi`,
`unmatched`), never a path. The live update and download sessions are counted in the database at scrape time
(`render`), so they are exact across workers and replicas.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from contentlib.metrics_dir import ENV

log = logging.getLogger("contentlib.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_EVERY = 0.25  # seconds between writes of this process's totals, while they change
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SWEEPS = "sweeper_runs"
GC_RUNS = "gc_runs"
GC_REMOVED = "gc_removed_blobs"
_EVENTS = {
    SWEEPS: "Sweeps run (session expiry and retention, sync schedules).",
    GC_RUNS: "Scans for orphaned blobs run.",
    GC_REMOVED: "Orphaned blobs the garbage collector deleted.",
}


class Totals(msgspec.Struct):
    """One process's numbers since it started (what its file holds)."""

    requests: dict[str, dict[str, int]] = {}  # operation -> status -> count
    buckets: dict[str, list[int]] = {}  # operation -> count per bucket (not cumulative; the last is +Inf)
    seconds: dict[str, float] = {}  # operation -> sum of durations
    received: dict[str, int] = {}  # operation -> request body bytes
    sent: dict[str, int] = {}  # operation -> response body bytes
    events: dict[str, int] = {}  # SWEEPS, GC_RUNS, GC_REMOVED

    def add(self, other: Totals) -> None:
        for op, statuses in other.requests.items():
            mine = self.requests.setdefault(op, {})
            for status, n in statuses.items():
                mine[status] = mine.get(status, 0) + n
        for op, counts in other.buckets.items():
            into = self.buckets.setdefault(op, [0] * (len(BUCKETS) + 1))
            for i, n in enumerate(counts[: len(into)]):
                into[i] += n
        for op, seconds in other.seconds.items():
            self.seconds[op] = self.seconds.get(op, 0.0) + seconds
        for mine, theirs in ((self.received, other.received), (self.sent, other.sent)):
            for op, n in theirs.items():
                mine[op] = mine.get(op, 0) + n
        for name, n in other.events.items():
            self.events[name] = self.events.get(name, 0) + n


class _Op:
    """One operation's numbers in this process."""

    __slots__ = ("buckets", "received", "seconds", "sent", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0
        self.received = 0
        self.sent = 0


class _Live:
    """This process's numbers, shaped for a cheap update per request (`totals()` makes them Totals)."""

    def __init__(self) -> None:
        self.ops: dict[str, _Op] = {}
        self.events: dict[str, int] = {}

    def totals(self) -> Totals:
        ops = self.ops.items()
        return Totals(
            {name: {str(status): n for status, n in o.statuses.items()} for name, o in ops},
            {name: list(o.buckets) for name, o in ops},
            {name: o.seconds for name, o in ops},
            {name: o.received for name, o in ops if o.received},
            {name: o.sent for name, o in ops if o.sent},
            dict(self.events),
        )


_live = _Live()
_dirty = False
_file: str | None = None  # this process's file name in the directory (pid and a random part: pids are reused)
_decoder = msgspec.json.Decoder(Totals)


def record(operation: str, status: int, seconds: float, received: int, sent: int) -> None:
    """One request's numbers."""
    global _dirty
    o = _live.ops.get(operation)
    if o is None:
        o = _live.ops[operation] = _Op()
    statuses = o.statuses
    statuses[status] = statuses.get(status, 0) + 1
    o.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
    o.seconds += seconds
    o.received += received
    o.sent += sent
    _dirty = True


def count(event: str, n: int = 1) -> None:
    """A sweep, an orphan scan, deleted blobs."""
    global _dirty
    _live.events[event] = _live.events.get(event, 0) + n
    _dirty = True


def _directory() -> Path | None:
    path = os.environ.get(ENV)
    return Path(path) if path else None


def _name() -> str:
    global _file
    if _file is None:
        _file = f"{os.getpid()}-{os.urandom(4).hex()}.json"
    return _file


def flush() -> None:
    """Write this process's totals into its file (whole: a reader never sees half of it)."""
    global _dirty
    directory = _directory()
    if directory is None or not _dirty:
        return
    _dirty = False
    target = directory / _name()
    tmp = target.with_suffix(".tmp")
    try:
        tmp.write_bytes(msgspec.json.encode(_live.totals()))
        tmp.replace(target)
    except OSError as e:  # the directory went away (the supervisor stopped): nothing will read it
        log.debug("writing the metrics failed: %s", e)


async def flush_forever() -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        flush()


def _forked() -> None:
    """In a new worker: none of the supervisor's numbers (its file has them), a file of its own."""
    global _live, _dirty, _file
    _live, _dirty, _file = _Live(), False, None


os.register_at_fork(before=flush, after_in_child=_forked)


def collected() -> Totals:
    """Every process's totals: this one's live, the others' from their files."""
    total = Totals()
    directory = _directory()
    if directory is not None:
        mine = _name()
        with contextlib.suppress(OSError):
            for path in directory.glob("*.json"):
                if path.name == mine:
                    continue
                try:
                    total.add(_decoder.decode(path.read_bytes()))
                except (OSError, msgspec.DecodeError):  # removed meanwhile, or being replaced
                    continue
    total.add(_live.totals())
    return total


class _Collector(Collector):
    def __init__(self, totals: Totals, sessions: tuple[int, int]) -> None:
        self.totals = totals
        self.sessions = sessions

    def collect(self) -> Iterable[Metric]:
        t = self.totals
        requests = CounterMetricFamily(
            "contentlib_requests", "HTTP requests served, by operation and status.", labels=["operation", "status"]
        )
        for op, statuses in sorted(t.requests.items()):
            for status, n in sorted(statuses.items()):
                requests.add_metric([op, status], n)
        yield requests
        latency = HistogramMetricFamily(
            "contentlib_request_duration_seconds",
            "Time from a request's dispatch to the end of its response, by operation.",
            labels=["operation"],
        )
        for op, counts in sorted(t.buckets.items()):
            cumulative, running = [], 0
            for bound, n in zip((*(str(b) for b in BUCKETS), "+Inf"), counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            latency.add_metric([op], cumulative, t.seconds.get(op, 0.0))
        yield latency
        for name, values, text in (
            ("contentlib_received_bytes", t.received, "Request body bytes received, by operation."),
            ("contentlib_sent_bytes", t.sent, "Response body bytes sent, by operation."),
        ):
            family = CounterMetricFamily(name, text, labels=["operation"])
            for op, n in sorted(values.items()):
                family.add_metric([op], n)
            yield family
        for event, text in _EVENTS.items():
            yield CounterMetricFamily(f"contentlib_{event}", text, value=t.events.get(event, 0))
        update, download = self.sessions
        yield GaugeMetricFamily("contentlib_active_update_sessions", "Update sessions in state ACTIVE.", update)
        yield GaugeMetricFamily("contentlib_active_download_sessions", "Download sessions in state ACTIVE.", download)


def render(active_update_sessions: int, active_download_sessions: int) -> bytes:
    """The exposition text: every process's totals, and the session gauges given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collected(), (active_update_sessions, active_download_sessions)))
    return generate_latest(registry)
