#!/usr/bin/env python3
"""contentlib soak run (issue 6): the crash harness at length, then the long fuzzing run.

1. tests/crashloop.py with `--kills` (default 100) SIGKILLs per backend pair: SQLite + disk, then PostgreSQL + S3
   (the servers at --pg / --s3; `make soak` starts the local ones with scripts/with-services.sh).
2. `pytest -n 2 --dist loadgroup tests/test_fuzz.py tests/test_fuzz_soap_*.py` (/api and /rest with schemathesis,
   /sdk with hypothesis) with CONTENTLIB_FUZZ_EXAMPLES=2000 (--fuzz-examples), once per backend pair (the
   PostgreSQL + S3 run with CONTENTLIB_TEST_PG/_S3 pointing at --pg/--s3); a missing fuzz file is a failure, said so.

Prints a line per kill, then one Markdown table per part. Exit status 1 when anything failed (an invariant
violation, a server that did not restart, unreachable PostgreSQL/S3, a fuzz failure).

    .venv/bin/python bench/soak.py [--kills N] [--backend sqlite-disk|pg-s3 ...] [--seed N] [--no-crash] [--no-fuzz]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from crashloop import BACKENDS, PG_DEFAULT, S3_DEFAULT, CrashLoopFailure, run_crashloop, table  # noqa: E402

# The SOAP fuzzer is one module per concern (tests/soapfuzz.py lists them); each is checked for, as test_fuzz.py is.
SOAP_FUZZ = ["methods", "sessions", "collector", "envelopes", "http"]
FUZZ = [ROOT / "tests" / "test_fuzz.py", *(ROOT / "tests" / f"test_fuzz_soap_{m}.py" for m in SOAP_FUZZ)]
PYTEST = ["-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"]


def crash(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for backend in args.backend or list(BACKENDS):
        started = time.monotonic()
        try:
            rows.append(run_crashloop(backend, args.kills, args.seed, args.workers, args.dir, args.pg, args.s3))
        except CrashLoopFailure as e:
            print(f"\nFAILED ({backend}): {e}\n", flush=True)
            failures.append(f"crash loop {backend}: {str(e).splitlines()[0]}")
            rows.append({"backend": backend, "result": "FAILED", "seconds": round(time.monotonic() - started, 1)})
    return rows, failures


def fuzz(args: argparse.Namespace, backend: str) -> tuple[dict[str, Any], list[str]]:
    row: dict[str, Any] = {"backend": backend, "examples": args.fuzz_examples}
    missing = [str(f.relative_to(ROOT)) for f in FUZZ if not f.exists()]
    if missing:
        print(f"FAILED: {', '.join(missing)} does not exist: a fuzzing suite is missing", flush=True)
        failures = [f"{m} does not exist" for m in missing]
        return {**row, "result": f"MISSING {', '.join(missing)}", "seconds": 0}, failures
    env = {k: v for k, v in os.environ.items() if k not in ("CONTENTLIB_TEST_PG", "CONTENTLIB_TEST_S3")}
    env["CONTENTLIB_FUZZ_EXAMPLES"] = str(args.fuzz_examples)
    if backend == "pg-s3":
        env.update(CONTENTLIB_TEST_PG=args.pg, CONTENTLIB_TEST_S3=args.s3)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *PYTEST, *map(str, FUZZ)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
    cases = next((line for line in proc.stdout.splitlines() if line.startswith("fuzz: ")), "fuzz: ? cases")
    row.update(result="passed" if proc.returncode == 0 else f"FAILED (pytest exit {proc.returncode})")
    row.update(cases=cases.removeprefix("fuzz: "), seconds=round(time.monotonic() - started, 1))
    return row, [] if proc.returncode == 0 else [f"fuzzing {backend}: pytest exit status {proc.returncode}"]


def main() -> int:
    parser = argparse.ArgumentParser(description="contentlib soak: crash harness x100 per backend pair, then fuzzing")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="repeat for both (default: both)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None, help="parent directory of the temporary data dirs")
    parser.add_argument("--pg", default=os.environ.get("CONTENTLIB_TEST_PG", PG_DEFAULT))
    parser.add_argument("--s3", default=os.environ.get("CONTENTLIB_TEST_S3", S3_DEFAULT))
    parser.add_argument("--fuzz-examples", type=int, default=2000)
    parser.add_argument("--no-crash", action="store_true", help="skip the crash loops")
    parser.add_argument("--no-fuzz", action="store_true", help="skip the fuzzing run")
    args = parser.parse_args()

    failures: list[str] = []
    crash_rows: list[dict[str, Any]] = []
    fuzz_rows: list[dict[str, Any]] = []
    if not args.no_crash:
        crash_rows, failed = crash(args)
        failures += failed
    if not args.no_fuzz:
        for backend in args.backend or list(BACKENDS):
            row, failed = fuzz(args, backend)
            fuzz_rows.append(row)
            failures += failed

    print("\n## Soak results\n")
    if crash_rows:
        complete = [r for r in crash_rows if "result" not in r]
        if complete:
            print(f"Crash loop, {args.kills} SIGKILLs per backend pair:\n")
            print(table(complete) + "\n")
        for r in crash_rows:
            if "result" in r:
                print(f"Crash loop {r['backend']}: FAILED after {r['seconds']} s\n")
    if fuzz_rows:
        print("Fuzzing (tests/test_fuzz.py, tests/test_fuzz_soap_*.py):\n")
        print(table(fuzz_rows) + "\n")
    if failures:
        print("FAILED:\n" + "\n".join(f"- {f}" for f in failures))
        return 1
    print("All soak runs passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
