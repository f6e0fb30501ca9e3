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
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServerProcess
from crashloop import PG_DEFAULT, S3_DEFAULT, run_crashloop

pytestmark = [pytest.mark.xdist_group("crash")]

PG = os.environ.get("CONTENTLIB_TEST_PG")
S3 = os.environ.get("CONTENTLIB_TEST_S3")
BACKEND = "pg-s3" if PG or S3 else "sqlite-disk"
KILLS = int(os.environ.get("CONTENTLIB_CRASH_KILLS", "10"))


@pytest.mark.slow
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


def test_an_empty_replica_identity_left_by_a_crash_at_first_start_is_replaced(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A kill between creating data/replica-id and writing it left an empty identity, which every replica that
    crashed so would share (and fail each other's transfers at restart as their own); the next start writes a new
    one, whole, and keeps it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "replica-id").write_text("")
    srv = make_server(data_dir=data)
    rid = (data / "replica-id").read_text().strip()
    assert str(uuid.UUID(rid)) == rid
    srv.restart(signal.SIGKILL)
    assert (data / "replica-id").read_text().strip() == rid
    assert sorted(p.name for p in data.glob("replica-id*")) == ["replica-id"]
