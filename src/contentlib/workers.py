"""`serve --workers N`: N server processes on one port, so that every core serves requests.

The supervisor (the process `contentlib serve` started) binds one listening socket per worker on the same address
with SO_REUSEPORT, so the kernel spreads new connections over the workers evenly (one shared socket would let the
first worker to wake up take a burst of connections alone). It then recovers once what the previous run left —
transfers that were running when it stopped, orphaned blobs — while no worker runs yet, and forks the workers.

Each worker is a replica of its own on the shared database and blob store, exactly as several servers of a cluster
are: a connection stays in the worker that accepted it (uploads and downloads stream there), the sweeper and the
garbage collector run in one process at a time (the Store's sweeper lock), and every worker sees the others' writes
through the database. A worker that dies is replaced, on the same socket, so connections waiting in its accept queue
are served by its successor. Workers die with the supervisor, even when it is killed with SIGKILL (PR_SET_PDEATHSIG):
a crash of the server is a crash of all of it, and a restart finds no worker of the previous run alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("contentlib.workers")

_PR_SET_PDEATHSIG = 1
_START_GRACE = 10.0  # a worker that exits (not killed) this soon after its start failed to start: the server stops
_STOP_TIMEOUT = 30.0  # seconds workers have to finish their requests after SIGTERM before they are killed
_BIND_RETRY = 5.0  # seconds to retry a SO_REUSEPORT bind that finds the address in use
_FREE_WAIT = 30.0  # seconds to wait for the sockets of a previous run (its workers still exiting) to close
_THREADS_WAIT = 10.0  # seconds to wait, before a fork, for the threads of this process to be gone


def os_threads() -> int:
    """How many threads this process has, as the kernel counts them (threading counts only Python's)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - /proc is there on Linux
        return 1


def wait_single_threaded(timeout: float = _THREADS_WAIT) -> int:
    """Wait until this process has no thread but the calling one; return how many it has then.

    A fork copies every lock as it is, held or not, into a child that has none of the threads that held them. A
    joined thread is not gone yet: `Thread.join` returns once its Python part is over, while the thread still runs
    its thread-local destructors, and OpenSSL 3's holds its thread-event lock there. A child forked in that window
    waits for that lock forever in its first `SSLContext()` (the S3 client builds one as a worker starts)."""
    deadline = time.monotonic() + timeout
    while (n := os_threads()) > 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    return n


def _wait_until_free(host: str, port: int, family: socket.AddressFamily) -> None:
    """Wait until no other socket listens on host:port. A worker of a killed run that is still exiting holds its
    SO_REUSEPORT socket open: a new socket bound beside it would join its group, and the kernel would hand that dying
    socket new connections that nobody answers. A bind without SO_REUSEPORT succeeds only once it is gone."""
    deadline = time.monotonic() + _FREE_WAIT
    waited = False
    while True:
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        try:
            probe.bind((host, port))
            return
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            if not waited:
                log.warning("%s:%d is still in use (a previous run exiting?): waiting for it", host, port)
                waited = True
            time.sleep(0.05)
        finally:
            probe.close()


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on host:port with SO_REUSEPORT, once no other socket listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        _wait_until_free(host, port, family)
    deadline = time.monotonic() + _BIND_RETRY
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((host, port))
            except OSError as e:
                sock.close()
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            sock.listen(1024)
            sock.set_inheritable(True)
            sockets.append(sock)
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return sockets


def _die_with_parent(parent: int) -> None:
    """In a worker: be killed when the supervisor dies (Linux), and make sure it has not died already."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class Supervisor:
    """Forks the workers, replaces those that die, and stops them all on SIGTERM or SIGINT."""

    def __init__(self, sockets: list[socket.socket], serve: Callable[[int, socket.socket], None]) -> None:
        self.sockets = sockets
        self.serve = serve  # runs worker n on its socket until it is told to stop
        self.pids: dict[int, tuple[int, float]] = {}  # pid -> (worker number, when it started)
        self.stopping = False

    def _spawn(self, n: int) -> None:
        parent = os.getpid()
        if (threads := wait_single_threaded()) > 1:
            log.warning("forking worker %d with %d threads running: it may hang on a lock one holds", n, threads)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                _die_with_parent(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for i, s in enumerate(self.sockets):
                    if i != n:
                        s.close()
                self.serve(n, self.sockets[n])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", n)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pids[pid] = (n, time.monotonic())

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (exit status 0), or until a worker fails to start (1)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for n in range(len(self.sockets)):
            self._spawn(n)
        status = 0
        stop_deadline: float | None = None
        while self.pids:
            if self.stopping and stop_deadline is None:
                stop_deadline = time.monotonic() + _STOP_TIMEOUT
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for left in self.pids:  # still busy after the grace period
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(left, signal.SIGKILL)
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            n, started = self.pids.pop(pid)
            if self.stopping:
                continue
            how = _describe(wait_status)
            if not os.WIFSIGNALED(wait_status) and time.monotonic() - started < _START_GRACE:
                log.error("worker %d (pid %d) %s during its start: stopping the server", n, pid, how)
                status = 1
                self._stop(signal.SIGTERM, None)
                continue
            log.error("worker %d (pid %d) %s: starting a new one", n, pid, how)
            self._spawn(n)
        for s in self.sockets:
            s.close()
        return status


def _describe(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        return f"was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
