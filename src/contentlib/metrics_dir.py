"""Where the processes of one server start keep their metrics' totals (`contentlib.metrics`): a directory each
start creates empty (the totals of a previous run are not this one's), that the workers inherit through the
environment, and that is removed when the supervisor exits. A SIGKILL leaves it behind in the temporary directory,
where nothing reads it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

ENV = "CONTENTLIB_METRICS_DIR"


@contextlib.contextmanager
def fresh() -> Iterator[str]:
    """A new, empty metrics directory for this process and those it forks inside the block."""
    path = tempfile.mkdtemp(prefix="contentlib-metrics-")
    previous = os.environ.get(ENV)
    os.environ[ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
