"""The data plane's inner loop: a body stream into a blob, hashed on the way, never held whole in memory.

The event loop only copies received chunks into a small ring of page-aligned batch buffers. Each full batch is
handed to worker threads: one stage per hash algorithm and one for the write (hashlib and os.write release the
GIL), while the loop fills the next buffer. At most RING batches are alive, so memory stays flat whatever the
size, and the loop stays free for API requests (research/stack.md §2: 4x faster than hashing and writing in the
loop, and API p99 during an upload halves). The worker threads run at a lower CPU priority than the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mmap
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contentlib.storage.blobs import Sink

BATCH = 8 * 1024 * 1024
RING = 3  # batch buffers per transfer: RING x BATCH of memory, flat whatever the size


def _lower_priority() -> None:
    """Worker threads yield the CPU to the event loop thread when both want it: on 2 cores an upload's hashing
    would otherwise push API latency up (Linux nice values are per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _new_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="transfer", initializer=_lower_priority)


_pool = _new_pool()


_free_buffers: list[mmap.mmap] = []
_MAX_FREE_BUFFERS = 4


def stop_threads() -> None:
    """Join the pool's threads (the next use starts new ones): a process about to fork must have no thread that
    could hold a lock its children would inherit held."""
    global _pool
    _pool.shutdown(wait=True)
    _pool = _new_pool()


def _after_fork() -> None:
    """A forked worker (`serve --workers`) has none of its parent's threads: it gets a pool of its own; and the
    batch buffers (shared anonymous maps) would be shared with its siblings: it forgets them."""
    global _pool
    _pool = _new_pool()
    _free_buffers.clear()


os.register_at_fork(after_in_child=_after_fork)


def _take_buffer() -> mmap.mmap:
    return _free_buffers.pop() if _free_buffers else mmap.mmap(-1, BATCH)


def _give_buffer(buf: mmap.mmap) -> None:
    if len(_free_buffers) < _MAX_FREE_BUFFERS:
        _free_buffers.append(buf)
    else:
        buf.close()


def _hash(h: Any, buf: mmap.mmap, n: int) -> None:
    with memoryview(buf) as whole, whole[:n] as view:
        h.update(view)


async def _write(previous: asyncio.Future[Any] | None, sink: Sink, buf: mmap.mmap, n: int, index: int) -> None:
    """The write stage of one batch: after the previous batch's write when the sink wants order."""
    if previous is not None:
        await previous
    with memoryview(buf) as whole:
        await sink.write(whole, n, index)


async def run_blocking(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


class Receiver:
    """Feed it chunks; `finish()` makes the blob durable and returns the size and the hex digests.

    A ring of RING batch buffers feeds a pipeline with one stage per hash algorithm and one for the write. Each
    stage handles the batches in order (a stage's work on batch i starts after its work on batch i-1), but the
    stages run side by side and the loop goes on receiving into the next free buffer, so a slow moment in one
    stage does not stall the socket.
    """

    def __init__(self, sink: Sink, algorithms: Iterable[str]) -> None:
        self.sink = sink
        self.hashers = {alg: hashlib.new(alg) for alg in dict.fromkeys(algorithms)}
        self.buffers = [_take_buffer() for _ in range(RING)]
        self.busy: list[asyncio.Future[Any] | None] = [None] * RING  # a buffer's batch, until every stage is done
        self.last: list[asyncio.Future[Any] | None] = [None] * (len(self.hashers) + 1)  # each stage's latest work
        self.current = 0
        self.fill = 0
        self.size = 0
        self.batches = 0
        self.closed = False

    async def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        data = memoryview(chunk)
        while data:
            if self.fill == 0 and self.busy[self.current] is not None:
                await self._wait(self.current)
            n = min(len(data), BATCH - self.fill)
            self.buffers[self.current][self.fill : self.fill + n] = data[:n]
            self.fill += n
            self.size += n
            data = data[n:]
            if self.fill == BATCH:
                self._dispatch()

    async def _wait(self, index: int) -> None:
        busy, self.busy[index] = self.busy[index], None
        if busy is not None:
            await busy

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        buf, n = self.buffers[self.current], self.fill
        stages = []
        for s, h in enumerate(self.hashers.values()):  # a hash must see the batches in order
            stage = loop.create_task(_after(self.last[s], _hash, h, buf, n))
            self.last[s] = stage
            stages.append(stage)
        write = len(self.hashers)
        after = self.last[write] if self.sink.ordered else None
        stage = loop.create_task(_write(after, self.sink, buf, n, self.batches))
        self.last[write] = stage
        stages.append(stage)
        self.batches += 1
        self.busy[self.current] = asyncio.gather(*stages)
        self.current = (self.current + 1) % RING
        self.fill = 0

    async def finish(self) -> tuple[int, dict[str, str]]:
        try:
            if self.fill:
                self._dispatch()
            for index in range(RING):
                await self._wait(index)
            await self.sink.commit(self.size)
        except BaseException:
            await self.abort()
            raise
        self._release()
        return self.size, {alg: h.hexdigest() for alg, h in self.hashers.items()}

    async def abort(self) -> None:
        if self.closed:
            return
        try:
            await asyncio.gather(*(b for b in self.busy if b is not None), return_exceptions=True)
        finally:
            self.busy = [None] * RING
            await self.sink.abort()
            self._release()

    def _release(self) -> None:
        if not self.closed:
            self.closed = True
            for buf in self.buffers:
                _give_buffer(buf)


async def _after(previous: asyncio.Future[Any] | None, fn: Any, *args: Any) -> None:
    """Run `fn(*args)` in a worker thread once the stage's previous batch is through it."""
    if previous is not None:
        await previous
    await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
