"""The crash harness in CI (issue 6 point 1): SIGKILL the server at random moments of concurrent work, restart it on
the same data, check the invariants (tests/crashloop.py says which).

Each backend pair runs once per `make test`: SQLite + disk in the first pass (no CONTENTLIB_TEST_* switches), and
PostgreSQL + S3 in the second (CONTENTLIB_TEST_PG / CONTENTLIB_TEST_S3 name the servers; an unreachable one fails the
test, naming the script that starts it). `make soak` runs 100 kills of each.

CONTENTLIB_CRASH_KILLS (default 10) and CONTENTLIB_CRASH_SEED (default: random, printed and named in any failure)
reproduce a run. CI cost: about a minute per pass on two shared cores.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from crashloop import PG_DEFAULT, S3_DEFAULT, run_crashloop

pytestmark = [pytest.mark.xdist_group("crash"), pytest.mark.slow]

PG = os.environ.get("CONTENTLIB_TEST_PG")
S3 = os.environ.get("CONTENTLIB_TEST_S3")
BACKEND = "pg-s3" if PG or S3 else "sqlite-disk"
KILLS = int(os.environ.get("CONTENTLIB_CRASH_KILLS", "10"))


@pytest.mark.parametrize("backend", [BACKEND])
def test_crash_loop_survives_sigkill(backend: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("CONTENTLIB_CRASH_SEED") or random.randrange(2**32))
    lines: list[str] = []
    summary = run_crashloop(
        backend,
        KILLS,
        seed=seed,
        workers=4,
        parent=tmp_path,
        pg=PG or PG_DEFAULT,
        s3=S3 or S3_DEFAULT,
        log=lines.append,
    )
    print("\n".join(lines))
    print(summary)
    assert summary["kills survived"] == KILLS
    # The rounds did real work: uploads, acknowledged completes, and checks after every restart.
    assert summary["uploads"] > 0, summary
    assert summary["completes"] + summary["resumed after restart"] > 0, summary
    assert summary["files verified after restarts"] > 0, summary
    assert summary["invariant checks run"] >= 3 * KILLS, summary
