"""Crash harness (issue 6 point 1): concurrent work, SIGKILL at a random moment, restart on the same data, invariants.

Importable (`run_crashloop(...)`, used by tests/test_crash.py and bench/soak.py) and a script:

    python tests/crashloop.py --kills 100 --backend sqlite-disk|pg-s3 [--seed N] [--workers 4] [--dir PARENT]

One round: worker threads run a random mix over real HTTP (create and delete items; update sessions adding 1-4 files
of 0 B, a few KiB, 1-8 MiB and now and then 16-40 MiB, PUT with declared SHA1/SHA256, re-adds, removes, PATCH
warning_behavior, keep-alive, list checks; then complete, cancel, fail or abandon; download sessions that read files
back and compare bytes), the server is killed with SIGKILL after a random delay, or just after a big upload or a
complete was sent, in one round out of five killed again during its restart (while it recovers), then restarted on
the same data dir / database / bucket prefix and checked. Each worker owns one library, so the items
of a library change one session at a time and the client-side ledger knows, for every item, the file set
(name -> SHA1, size) and content_version of its last ACKNOWLEDGED complete, plus the one complete in flight at the
kill (which may or may not have applied).

Invariants checked after each restart (through the API, and straight in the store only where the API cannot tell):
- the database passes its integrity checks: SQLite `PRAGMA integrity_check` and `foreign_key_check`; PostgreSQL the
  same relational consistency as queries, plus amcheck (`bt_index_check` on every index of the schema,
  `verify_heapam` on every table) when the server has the extension;
- every item's files (listed, then downloaded and hashed) are exactly the file set of ONE completed session of that
  item: its last acknowledged one, or the complete in flight at the kill; its content_version is exactly the one that
  session gives (so it never decreases and moves with every acknowledged complete that changed something), and the
  in-flight session is DONE exactly when its files are the item's (no half-completed session);
- the update sessions of the killed server are in a sane state: none DONE unless its complete applied, their files
  never TRANSFERRING (a transfer of the dead process is failed at restart, and says it was interrupted), every READY
  file holds bytes the client sent for that name; about half of the ACTIVE ones are resumed (files that are not
  READY removed, then completed, and the item read back), some canceled, the rest left to expire; an item whose
  delete was in flight is gone or intact;
- once every session of the killed server has ended (the sweeper expires the idle ones), the stored blobs are exactly
  the blobs the items' files point at: nothing staged by a dead session is left (on S3: no open multipart upload
  either), nothing published is lost.

Every violation raises CrashLoopFailure with the round, the details and the tail of the server log.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):  # run as a script: conftest sits beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import S3_BUCKET, S3_ENV, Api, ServerProcess, pg_run

BACKENDS = ("sqlite-disk", "pg-s3")
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"
S3_DEFAULT = "http://127.0.0.1:8333"
PG_HINT = "run `bash scripts/ensure-postgres.sh` (or scripts/with-services.sh for both services)"
S3_HINT = "run `bash scripts/ensure-seaweedfs.sh` (or scripts/with-services.sh for both services)"

SESSION_TIMEOUT = 3.0  # --update-session-timeout: dead sessions expire within a round
SWEEP_INTERVAL = 0.25
SERVER_ARGS = [
    "--update-session-timeout",
    str(SESSION_TIMEOUT),
    "--sweep-interval",
    str(SWEEP_INTERVAL),
    "--session-retention",
    "15",  # the sweeper deletes ended sessions too; the checks read the killed server's sessions well before
    "--workers",
    "2",  # several worker processes (issue 11): a kill takes them all, a restart recovers once for all of them
]

LIB = "/api/content/local-library"
ITEM = "/api/content/library/item"
US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"
KIB = 1024
MIB = 1024 * 1024
FILE_NAMES = ("a.bin", "b.img", "c.dat", "d.iso", "e.txt", "f")
WARNINGS = ("SELF_SIGNED_CERTIFICATE", "EXPIRED_CERTIFICATE", "NOT_YET_VALID_CERTIFICATE", "UNTRUSTED_CERTIFICATE")

Files = dict[str, tuple[str, int]]  # file name -> (SHA1, size)


class CrashLoopFailure(AssertionError):
    """An invariant violation (or a server that failed to restart)."""


class ServerGone(Exception):
    """A request failed because the server was killed (expected: the kill)."""


class SessionEnded(Exception):
    """The session a worker used ended on its own (expired: the workload is slower than the session timeout)."""


# -- the ledger --------------------------------------------------------------------------------------------------
@dataclass
class Item:
    id: str
    library: str
    files: Files  # what its last acknowledged complete left
    version: int  # its content_version after that
    pending: tuple[Files, int, str] | None = None  # the complete in flight: (files, version, session id)
    deleting: bool = False  # its delete was in flight at the kill


@dataclass
class SessionRecord:
    id: str
    item: str
    uploads: dict[str, set[str]] = field(default_factory=dict)  # name -> SHA1 of every body sent for it
    ended: bool = False  # acknowledged complete, cancel or fail, or seen expired


@dataclass
class Ledger:
    libraries: list[str] = field(default_factory=list)
    items: dict[str, Item] = field(default_factory=dict)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return self.counts[key]


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# -- backends ------------------------------------------------------------------------------------------------------
def check_services(pg: str, s3: str) -> None:
    """PostgreSQL and S3 answer, and the test bucket exists; CrashLoopFailure naming the script to run otherwise."""
    try:
        pg_run(f"{pg}/postgres", "SELECT 1")
    except Exception as e:
        raise CrashLoopFailure(f"PostgreSQL at {pg} is not reachable ({type(e).__name__}: {e}); {PG_HINT}") from e
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=s3,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 1}),
    )
    try:
        try:
            client.head_bucket(Bucket=S3_BUCKET)
        except Exception:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=S3_BUCKET)
    except Exception as e:
        raise CrashLoopFailure(
            f"S3 at {s3} (bucket {S3_BUCKET}) is not usable ({type(e).__name__}: {e}); {S3_HINT}"
        ) from e


class Backend:
    """The server under test and direct (read-only) access to its store, for what the API cannot tell."""

    def __init__(self, kind: str, data_dir: Path, pg: str, s3: str) -> None:
        if kind not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
        self.kind = kind
        if kind == "pg-s3":
            check_services(pg, s3)
            self.server = ServerProcess(data_dir, SERVER_ARGS, env=dict(S3_ENV), pg=pg, s3=s3)
        else:
            self.server = ServerProcess(data_dir, SERVER_ARGS, pg=None, s3=None)
        self.amcheck: bool | None = None  # whether PostgreSQL has amcheck (known after the first check)

    # -- store queries -------------------------------------------------------------------------------------------
    def query(self, sql: str) -> list[dict[str, Any]]:
        if self.server.database:
            return pg_run(self.server.database, sql)
        conn = sqlite3.connect(self.server.data_dir / "contentlib.sqlite3", timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    def integrity_problems(self) -> list[str]:
        """What the database's own checks and the relational consistency queries report (empty: all good)."""
        problems: list[str] = []
        if self.server.database is None:
            result = [r["integrity_check"] for r in self.query("PRAGMA integrity_check")]
            if result != ["ok"]:
                problems.append(f"PRAGMA integrity_check: {result}")
            fk = self.query("PRAGMA foreign_key_check")
            if fk:
                problems.append(f"PRAGMA foreign_key_check: {fk}")
        else:
            problems += self._amcheck()
        for what, sql in RELATIONAL_CHECKS:
            rows = self.query(sql)
            if rows:
                problems.append(f"{what}: {rows[:5]}")
        return problems

    def _amcheck(self) -> list[str]:
        assert self.server.database
        if self.amcheck is None:
            available = self.query("SELECT 1 FROM pg_available_extensions WHERE name='amcheck'")
            if available:
                self.query("CREATE EXTENSION IF NOT EXISTS amcheck")
            self.amcheck = bool(available)
        if not self.amcheck:
            return []
        problems: list[str] = []
        indexes = self.query(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid=i.indexrelid JOIN pg_am a ON a.oid=c.relam "
            "JOIN pg_namespace n ON n.oid=c.relnamespace WHERE a.amname='btree' AND n.nspname='public'"
        )
        for row in indexes:
            try:
                self.query(f"SELECT bt_index_check('public.\"{row['relname']}\"'::regclass, true)")
            except Exception as e:
                problems.append(f"bt_index_check({row['relname']}): {e}")
        has_heap = self.query("SELECT 1 FROM pg_proc WHERE proname='verify_heapam'")
        if has_heap:
            for row in self.query("SELECT tablename FROM pg_tables WHERE schemaname='public'"):
                bad = self.query(f"SELECT * FROM verify_heapam('public.\"{row['tablename']}\"'::regclass)")
                if bad:
                    problems.append(f"verify_heapam({row['tablename']}): {bad[:3]}")
        return problems

    def item_blobs(self) -> list[str]:
        return [r["blob_id"] for r in self.query("SELECT blob_id FROM item_files")]

    def active_sessions(self) -> list[str]:
        rows = self.query(
            "SELECT id FROM update_sessions WHERE state='ACTIVE' UNION ALL "
            "SELECT id FROM download_sessions WHERE state='ACTIVE'"
        )
        return [r["id"] for r in rows]

    def stored_blobs(self) -> list[str]:
        return self.server.blob_ids()

    def open_uploads(self) -> list[str]:
        """S3 multipart uploads left open under the server's prefix (staged bytes that are not objects yet)."""
        if not self.server.s3_prefix:
            return []
        client = self.server.s3_client()
        prefix = f"{self.server.s3_prefix}/blobs/"
        pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix)
        return [u["Key"][len(prefix) :] for page in pages for u in page.get("Uploads", [])]

    def destroy(self) -> None:
        self.server.destroy()
        if self.server.s3_prefix:
            client = self.server.s3_client()
            prefix = f"{self.server.s3_prefix}/"
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=S3_BUCKET, Delete={"Objects": keys, "Quiet": True})
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix):
                for u in page.get("Uploads", []):
                    client.abort_multipart_upload(Bucket=S3_BUCKET, Key=u["Key"], UploadId=u["UploadId"])


# The relational consistency both databases must keep (SQLite's foreign_key_check covers the REFERENCES clauses;
# these also hold the rules no constraint states).
RELATIONAL_CHECKS = [
    (
        "items without their library",
        "SELECT i.id FROM items i LEFT JOIN libraries l ON l.id=i.library_id WHERE l.id IS NULL",
    ),
    (
        "item files without their item",
        "SELECT f.item_id, f.name FROM item_files f LEFT JOIN items i ON i.id=f.item_id WHERE i.id IS NULL",
    ),
    (
        "session files without their session",
        "SELECT f.session_id, f.name FROM session_files f LEFT JOIN "
        "update_sessions s ON s.id=f.session_id WHERE s.id IS NULL",
    ),
    (
        "download files without their session",
        "SELECT f.session_id, f.name FROM download_files f LEFT JOIN "
        "download_sessions s ON s.id=f.session_id WHERE s.id IS NULL",
    ),
    (
        "update sessions of no item",
        "SELECT s.id FROM update_sessions s LEFT JOIN items i ON i.id=s.item_id WHERE i.id IS NULL",
    ),
    (
        "items with two ACTIVE update sessions",
        "SELECT item_id FROM update_sessions WHERE state='ACTIVE' GROUP BY item_id HAVING COUNT(*) > 1",
    ),
    ("blobs shared by two item files", "SELECT blob_id FROM item_files GROUP BY blob_id HAVING COUNT(*) > 1"),
    (
        "DONE sessions with a file that was not READY",
        "SELECT f.session_id, f.name, f.status FROM session_files f "
        "JOIN update_sessions s ON s.id=f.session_id WHERE s.state='DONE' AND f.op='ADD' AND f.status!='READY'",
    ),
    (
        "DONE sessions whose kept file is neither the item's nor replaced by a later session",
        "SELECT f.session_id, f.name FROM session_files f JOIN update_sessions s ON s.id=f.session_id "
        "WHERE s.state='DONE' AND f.op='ADD' AND f.keep_in_storage=1 AND NOT EXISTS (SELECT 1 FROM item_files i "
        "WHERE i.item_id=s.item_id AND i.name=f.name AND i.blob_id=f.blob_id) AND NOT EXISTS (SELECT 1 FROM "
        "update_sessions t WHERE t.item_id=s.item_id AND t.state='DONE' AND t.ended >= s.ended AND t.id!=s.id)",
    ),
    (
        "item files with a negative size or a malformed SHA1",
        "SELECT item_id, name FROM item_files WHERE size < 0 OR length(sha1) != 40",
    ),
    ("items whose content_version is below 1", "SELECT id FROM items WHERE content_version < 1"),
]


# -- the workload ------------------------------------------------------------------------------------------------
class Round:
    """What a round's workers and its killer share."""

    def __init__(self, base: str, ledger: Ledger, stats: Stats, rng: random.Random) -> None:
        self.base = base
        self.ledger = ledger
        self.stats = stats
        self.killed = threading.Event()
        self.moment = threading.Event()
        self.want = rng.choice(["time", "time", "upload", "complete"])  # what the killer waits for
        self.errors: list[str] = []

    def at(self, kind: str) -> None:
        """A worker reached a moment the killer may be waiting for."""
        if kind == self.want:
            self.moment.set()


class Worker(threading.Thread):
    def __init__(self, rnd: Round, library: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.rnd = rnd
        self.library = library
        self.rng = random.Random(seed)
        self.api: Api | None = None
        self.skip: set[str] = set()  # items this worker leaves alone this round (an abandoned session holds them)

    # -- requests --------------------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        assert self.api is not None
        try:
            r = self.api.request(method, path, **kw)
        except requests.RequestException as e:
            if self.rnd.killed.is_set():
                raise ServerGone() from e
            raise CrashLoopFailure(f"{method} {path}: the server did not answer while it was up: {e!r}") from e
        return r

    def expect(self, r: requests.Response, status: int, what: str, session: SessionRecord | None = None) -> None:
        if r.status_code == status:
            self.rnd.stats.add("acknowledged")
            return
        if session is not None and r.status_code in (400, 404) and self.session_ended(session):
            raise SessionEnded()
        raise CrashLoopFailure(f"{what}: expected {status}, got {r.status_code} {r.text[:500]}")

    def session_ended(self, rec: SessionRecord) -> bool:
        """Whether the session expired (the only way a session of this worker ends without it asking)."""
        kind = US if rec.item else DS
        r = self.call("GET", f"{kind}/{rec.id}")
        if r.status_code == 200 and r.json()["state"] == "ERROR" and "expired" in r.text:
            rec.ended = True
            self.rnd.stats.add("expired")
            return True
        return False

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.api = Api(self.rnd.base)
            while not self.rnd.killed.is_set():
                self.step()
        except ServerGone:
            pass
        except requests.RequestException as e:  # the login, before any call()
            if not self.rnd.killed.is_set():
                self.rnd.errors.append(f"the server did not answer while it was up: {e!r}")
        except CrashLoopFailure as e:
            self.rnd.errors.append(str(e))
        except Exception as e:  # a response that is not what the API promises (a body without a field, ...)
            self.rnd.errors.append(f"worker crashed: {e!r}")

    def my_items(self) -> list[Item]:
        with self.rnd.ledger.lock:
            return [i for i in self.rnd.ledger.items.values() if i.library == self.library and i.id not in self.skip]

    def step(self) -> None:
        items = self.my_items()
        roll = self.rng.random()
        try:
            if not items or (roll < 0.08 and len(items) < 6):
                self.create_item()
            elif roll < 0.11 and len(items) > 3:
                self.delete_item(self.rng.choice(items))
            elif roll < 0.25:
                self.download(self.rng.choice(items))
            else:
                self.update(self.rng.choice(items))
        except SessionEnded:
            pass

    def create_item(self) -> None:
        name = f"item-{uuid.uuid4().hex[:10]}"
        r = self.call("POST", ITEM, json={"library_id": self.library, "name": name})
        self.expect(r, 201, "create item")
        item_id = r.json()
        r = self.call("GET", f"{ITEM}/{item_id}")
        self.expect(r, 200, "get item")
        with self.rnd.ledger.lock:
            self.rnd.ledger.items[item_id] = Item(item_id, self.library, {}, int(r.json()["content_version"]))
        self.rnd.stats.add("items")

    def delete_item(self, item: Item) -> None:
        item.deleting = True
        self.expect(self.call("DELETE", f"{ITEM}/{item.id}"), 204, f"delete item {item.id}")
        with self.rnd.ledger.lock:
            del self.rnd.ledger.items[item.id]
        self.rnd.stats.add("items_deleted")

    def download(self, item: Item) -> None:
        """Read an item's files back through a download session and compare them with the ledger."""
        r = self.call("POST", DS, json={"library_item_id": item.id})
        self.expect(r, 201, "create download session")
        rec = SessionRecord(r.json(), "")
        r = self.call("GET", f"{DS}/{rec.id}/file")
        self.expect(r, 200, "list download files", rec)
        listed = {f["name"]: f["size"] for f in r.json()}
        want = {n: s for n, (_, s) in item.files.items()}
        if listed != want:
            raise CrashLoopFailure(f"download session of {item.id} lists {listed}, the ledger has {want}")
        for name, (digest, size) in sorted(item.files.items()):
            if self.rng.random() < 0.3:
                continue
            r = self.call("POST", f"{DS}/{rec.id}/file?action=prepare", json={"file_name": name})
            self.expect(r, 200, f"prepare {name}", rec)
            info = r.json()
            r = self.call("GET", info["download_endpoint"]["uri"])
            if r.status_code in (400, 404) and self.session_ended(rec):
                raise SessionEnded()
            self.expect(r, 200, f"download {name} of {item.id}")
            if len(r.content) != size or sha1(r.content) != digest:
                raise CrashLoopFailure(
                    f"{name} of item {item.id} read back {len(r.content)} bytes SHA1 {sha1(r.content)}; "
                    f"the acknowledged complete wrote {size} bytes SHA1 {digest}"
                )
            self.rnd.stats.add("downloads")
        if self.rng.random() < 0.8:
            self.expect(self.call("DELETE", f"{DS}/{rec.id}"), 204, "delete download session")

    def payload(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            size = 0
        elif roll < 0.5:
            size = self.rng.randint(1, 8 * KIB)
        elif roll < 0.95:
            size = self.rng.randint(1 * MIB, 8 * MIB)
        else:
            size = self.rng.randint(16 * MIB, 40 * MIB)
        return self.rng.randbytes(size)

    def update(self, item: Item) -> None:
        """One update session on the item: a few file operations, then complete, cancel, fail or abandon."""
        body: dict[str, Any] = {"library_item_id": item.id}
        if self.rng.random() < 0.3:
            body["warning_behavior"] = [{"type": self.rng.choice(WARNINGS), "ignored": self.rng.random() < 0.5}]
        r = self.call("POST", US, json=body)  # the item is free: the checks waited for every older session to end
        self.expect(r, 201, f"create update session on {item.id}")
        rec = SessionRecord(r.json(), item.id)
        with self.rnd.ledger.lock:
            self.rnd.ledger.sessions[rec.id] = rec
        view: dict[str, tuple[str, str, int]] = {n: ("item", d, s) for n, (d, s) in item.files.items()}
        try:
            self.session_ops(rec, item, view)
            self.finish(rec, item, view)
        except SessionEnded:
            pass

    def session_ops(self, rec: SessionRecord, item: Item, view: dict[str, tuple[str, str, int]]) -> None:
        uploads = 0
        progress = 0
        for _ in range(self.rng.randint(1, 7)):
            roll = self.rng.random()
            if roll < 0.55 or (uploads == 0 and roll < 0.8):
                name = self.rng.choice(FILE_NAMES[: self.rng.randint(1, 4)])
                self.upload(rec, name, self.payload(), view)
                uploads += 1
            elif roll < 0.7 and view:
                name = self.rng.choice(sorted(view))
                r = self.call("DELETE", f"{US}/{rec.id}/file/{name}")
                self.expect(r, 204, f"remove {name}", rec)
                del view[name]
            elif roll < 0.8:
                body = {"warning_behavior": [{"type": w, "ignored": True} for w in WARNINGS]}
                self.expect(self.call("PATCH", f"{US}/{rec.id}", json=body), 204, "patch warning_behavior", rec)
            elif roll < 0.9:
                progress = min(100, progress + self.rng.randint(0, 30))
                r = self.call("POST", f"{US}/{rec.id}?action=keep-alive", json={"client_progress": progress})
                self.expect(r, 204, "keep-alive", rec)
            else:
                self.check_view(rec, view)

    def upload(self, rec: SessionRecord, name: str, data: bytes, view: dict[str, tuple[str, str, int]]) -> None:
        digest = sha1(data)
        algorithm = self.rng.choice(["SHA1", "SHA1", "SHA256"])
        spec = {
            "name": name,
            "source_type": "PUSH",
            "size": len(data),
            "checksum_info": {"algorithm": algorithm, "checksum": hashlib.new(algorithm, data).hexdigest()},
        }
        r = self.call("POST", f"{US}/{rec.id}/file", json=spec)
        self.expect(r, 201, f"add {name}", rec)
        view.pop(name, None)  # re-adding replaces what the session had under the name
        rec.uploads.setdefault(name, set()).add(digest)
        uri = r.json()["upload_endpoint"]["uri"]
        if len(data) >= 4 * MIB:
            self.rnd.at("upload")
        r = self.call("PUT", uri, data=data)
        self.expect(r, 200, f"upload {name} ({len(data)} bytes)", rec)
        view[name] = ("staged", digest, len(data))
        self.rnd.stats.add("uploads")
        self.rnd.stats.add("upload_bytes", len(data))

    def check_view(self, rec: SessionRecord, view: dict[str, tuple[str, str, int]]) -> None:
        r = self.call("GET", f"{US}/{rec.id}/file")
        self.expect(r, 200, "list session files", rec)
        got = {f["name"]: (f["status"], f.get("size")) for f in r.json()}
        want = {n: ("READY", s) for n, (_, _, s) in view.items()}
        if got != want:
            raise CrashLoopFailure(f"update session {rec.id} lists {got}; the client made it {want}")

    def finish(self, rec: SessionRecord, item: Item, view: dict[str, tuple[str, str, int]]) -> None:
        roll = self.rng.random()
        if roll < 0.7:
            files = {n: (d, s) for n, (_, d, s) in view.items()}
            changed = any(k == "staged" for k, _, _ in view.values()) or any(n not in view for n in item.files)
            version = item.version + (1 if changed else 0)
            item.pending = (files, version, rec.id)
            self.rnd.at("complete")
            r = self.call("POST", f"{US}/{rec.id}?action=complete")
            try:
                self.expect(r, 204, f"complete {rec.id}", rec)
            except SessionEnded:
                item.pending = None
                raise
            item.files, item.version, item.pending = files, version, None
            rec.ended = True
            self.rnd.stats.add("completes")
            if self.rng.random() < 0.3:
                r = self.call("GET", f"{ITEM}/{item.id}/file")
                self.expect(r, 200, "list item files")
                got = {f["name"]: (f["checksum_info"]["checksum"], f["size"]) for f in r.json()}
                if got != files:
                    raise CrashLoopFailure(f"item {item.id} has {got} right after complete {rec.id}, not {files}")
        elif roll < 0.82:
            self.expect(self.call("POST", f"{US}/{rec.id}?action=cancel"), 204, "cancel", rec)
            rec.ended = True
            self.rnd.stats.add("cancels")
        elif roll < 0.92:
            r = self.call("POST", f"{US}/{rec.id}?action=fail", json={"client_error_message": "crashloop gives up"})
            self.expect(r, 204, "fail", rec)
            rec.ended = True
            self.rnd.stats.add("fails")
        else:
            self.skip.add(item.id)  # abandoned: it expires
            self.rnd.stats.add("abandoned")


# -- the loop --------------------------------------------------------------------------------------------------------
@dataclass
class CrashLoop:
    backend: Backend
    seed: int
    workers: int = 4
    log: Callable[[str], None] = print
    ledger: Ledger = field(default_factory=Ledger)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.round = 0

    @property
    def server(self) -> ServerProcess:
        return self.backend.server

    def fail(self, text: str) -> CrashLoopFailure:
        return CrashLoopFailure(
            f"[{self.backend.kind} seed {self.seed} round {self.round}] {text}\n--- server log (tail) ---\n"
            f"{self.server.log()[-3000:]}"
        )

    def setup(self) -> None:
        self.server.start()
        api = Api(self.server.base)
        for _ in range(self.workers):
            lib = api.create_library(f"crash-{uuid.uuid4().hex[:8]}")
            self.ledger.libraries.append(lib)

    def run(self, kills: int) -> None:
        try:
            self._run(kills)
        except requests.Timeout as e:  # a request the server never answered: what each of its processes does
            raise self.fail(f"a request timed out: {e}\n{self.hang_report()}") from None

    def hang_report(self) -> str:
        """The server's processes (stacks), who listens on its port, and what its database connections wait for."""
        listeners = subprocess.run(["ss", "-ltnp", f"sport = :{self.server.port}"], capture_output=True, text=True)
        report = [f"--- listening ---\n{listeners.stdout}{listeners.stderr}", f"--- stacks ---\n{self.server.stacks()}"]
        if self.server.database:
            with contextlib.suppress(Exception):
                rows = self.backend.query(
                    "SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS xact_age, "
                    "left(query, 100) AS query FROM pg_stat_activity WHERE datname = current_database()"
                )
                report.append("--- pg_stat_activity ---\n" + "\n".join(map(str, rows)))
        return "\n".join(report)

    def _run(self, kills: int) -> None:
        self.setup()
        for self.round in range(1, kills + 1):
            started = time.monotonic()
            before = Counter(self.stats.counts)
            mode, at = self.work_and_kill()
            if self.rng.random() < 0.2:  # and once more while it recovers (start-up: failing stalled transfers, GC)
                self.server.launch()
                time.sleep(self.rng.uniform(0.05, 1.0))
                assert self.server.proc is not None
                if self.server.proc.poll() is not None:
                    raise self.fail(f"the server exited with {self.server.proc.returncode} while starting")
                self.server.kill()
                mode += "+start"
                self.stats.add("startup_kills")
            try:
                self.server.start()
            except RuntimeError as e:
                raise self.fail(f"the server did not restart after the kill: {e}") from None
            self.stats.add("kills")
            outcome = self.check()
            delta = self.stats.counts - before
            self.log(
                f"kill {self.round:3}/{kills} {mode:14} at {at:5.2f}s: ops {delta['acknowledged']:4} "
                f"uploads {delta['uploads']:3} completes {delta['completes']:3} downloads {delta['downloads']:3} "
                f"| {outcome} | {time.monotonic() - started:5.1f}s"
            )

    def work_and_kill(self) -> tuple[str, float]:
        rnd = Round(self.server.base, self.ledger, self.stats, self.rng)
        threads = [Worker(rnd, lib, self.rng.getrandbits(64)) for lib in self.ledger.libraries[: self.workers]]
        start = time.monotonic()
        for t in threads:
            t.start()
        if rnd.want == "time":
            time.sleep(self.rng.uniform(0.3, 3.0))
        else:
            hit = rnd.moment.wait(timeout=6.0)
            time.sleep(self.rng.uniform(0, 0.3 if rnd.want == "upload" else 0.008))
            if not hit:
                rnd.want = f"{rnd.want}?"  # the moment did not come: killed at the timeout
        at = time.monotonic() - start
        rnd.killed.set()
        self.server.kill()
        for t in threads:
            t.join(timeout=120)
            if t.is_alive():
                raise self.fail("a worker did not stop after the kill")
        if rnd.errors:
            raise self.fail("violations while the server was up:\n" + "\n".join(rnd.errors))
        return rnd.want, at

    # -- the checks -----------------------------------------------------------------------------------------------
    def check(self) -> str:
        """Every invariant, in the order the session timeout asks for: what the killed server's sessions look like
        is read before they expire."""
        api = Api(self.server.base)
        resolved = self.check_items(api)
        dead = self.check_dead_sessions(api)
        problems = self.backend.integrity_problems()
        self.stats.add("invariant_checks")
        if problems:
            raise self.fail("the database fails its integrity checks:\n" + "\n".join(problems))
        for item in self.ledger.items.values():
            self.verify_bytes(api, item.id, item.files)
        self.check_sweeper()
        self.check_items(api, final=True)  # the sweeper left every item as it was (its bytes: check_sweeper)
        return f"in-flight completes {resolved} | dead sessions {dead}"

    def list_items(self, api: Api) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for lib in self.ledger.libraries:
            r = api.get(f"{ITEM}?library_id={lib}")
            if r.status_code != 200:
                raise self.fail(f"listing the items of {lib}: {r.status_code} {r.text}")
            for item_id in r.json():
                r = api.get(f"{ITEM}/{item_id}")
                if r.status_code != 200:
                    raise self.fail(f"get item {item_id}: {r.status_code} {r.text}")
                found[item_id] = {"library": lib, **r.json()}
        return found

    def item_files(self, api: Api, item_id: str) -> Files:
        r = api.get(f"{ITEM}/{item_id}/file")
        if r.status_code != 200:
            raise self.fail(f"list files of item {item_id}: {r.status_code} {r.text}")
        return {f["name"]: (f["checksum_info"]["checksum"], f["size"]) for f in r.json()}

    def check_items(self, api: Api, final: bool = False) -> str:
        """Every item holds exactly the files (and content_version) of one completed session (its bytes are read
        back by `verify_bytes`). Resolves the complete in flight at the kill; says how those resolved."""
        found = self.list_items(api)
        for item_id in set(self.ledger.items) - set(found):
            if not self.ledger.items[item_id].deleting:
                raise self.fail(f"item {item_id} vanished")
            del self.ledger.items[item_id]  # its delete in flight at the kill applied
            self.stats.add("items_deleted")
        outcome: Counter[str] = Counter()
        for item_id, model in found.items():
            version = int(model["content_version"])
            files = self.item_files(api, item_id)
            item = self.ledger.items.get(item_id)
            if item is None:  # created by a request in flight at the kill: no session ever completed on it
                if files:
                    raise self.fail(f"item {item_id} (its create was in flight) has files {files}")
                self.ledger.items[item_id] = Item(item_id, model["library"], {}, version)
                outcome["unknown item adopted"] += 1
                continue
            item.deleting = False  # a delete in flight at the kill did not apply
            candidates = [(item.files, item.version, "acknowledged")]
            if item.pending is not None:
                candidates.append((item.pending[0], item.pending[1], "in-flight"))
            matching = [c for c in candidates if c[0] == files and c[1] == version]
            if not matching:
                raise self.fail(
                    f"item {item_id} has content_version {version} and files {files}; it must be those of one "
                    f"completed session: " + "; ".join(f"{c[2]}: version {c[1]} files {c[0]}" for c in candidates)
                )
            if version < item.version:
                raise self.fail(f"item {item_id}: content_version went down from {item.version} to {version}")
            if item.pending is not None:
                sid = item.pending[2]
                r = api.get(f"{US}/{sid}")
                state = r.json().get("state") if r.status_code == 200 else r.status_code
                # Both match when the session changed nothing; then the session's state alone tells.
                applied = matching[-1][2] == "in-flight" and (len(matching) == 1 or state == "DONE")
                if applied != (state == "DONE"):
                    raise self.fail(
                        f"the complete of {sid} in flight at the kill: item {item_id} holds the "
                        f"{'new' if applied else 'old'} files but the session is {state} (half-completed)"
                    )
                if applied:
                    item.files, item.version = item.pending[0], item.pending[1]
                    self.ledger.sessions[sid].ended = True
                    outcome["applied"] += 1
                else:
                    outcome["not applied"] += 1
                item.pending = None
            self.stats.add("invariant_checks")
        if not final:
            self.stats.add("completes_in_flight_applied", outcome["applied"])
            self.stats.add("completes_in_flight_lost", outcome["not applied"])
        return ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())) or "none"

    def verify_bytes(self, api: Api, item_id: str, files: Files) -> None:
        if not files:
            return
        r = api.post(DS, json={"library_item_id": item_id})
        if r.status_code != 201:
            raise self.fail(f"create download session on {item_id}: {r.status_code} {r.text}")
        ds = r.json()
        for name, (digest, size) in sorted(files.items()):
            r = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": name})
            if r.status_code != 200:
                raise self.fail(f"prepare {name} of {item_id}: {r.status_code} {r.text}")
            r = api.get(r.json()["download_endpoint"]["uri"])
            if r.status_code != 200 or len(r.content) != size or sha1(r.content) != digest:
                raise self.fail(
                    f"{name} of item {item_id}: read back {r.status_code}, {len(r.content)} bytes SHA1 "
                    f"{sha1(r.content)}; the item says {size} bytes SHA1 {digest} (lost or torn bytes)"
                )
            self.stats.add("bytes_verified", size)
        r = api.delete(f"{DS}/{ds}")
        if r.status_code != 204:
            raise self.fail(f"delete download session {ds}: {r.status_code} {r.text}")
        self.stats.add("files_verified", len(files))

    def dead_sessions(self, api: Api) -> dict[str, SessionRecord]:
        """Update sessions of the killed server the client did not see end, including ones whose create was in
        flight (found through the item's session list)."""
        dead = {sid: rec for sid, rec in self.ledger.sessions.items() if not rec.ended}
        for item_id in self.ledger.items:
            r = api.get(f"{US}?library_item_id={item_id}")
            if r.status_code != 200:
                raise self.fail(f"list update sessions of {item_id}: {r.status_code} {r.text}")
            for sid in r.json():
                if sid not in self.ledger.sessions:
                    rec = self.ledger.sessions[sid] = SessionRecord(sid, item_id)
                    dead[sid] = rec
        return dead

    def check_dead_sessions(self, api: Api) -> str:
        """The sessions of the killed server are sane; resume about half of the ACTIVE ones, cancel some."""
        outcome: Counter[str] = Counter()
        for sid, rec in self.dead_sessions(api).items():
            r = api.get(f"{US}/{sid}")
            if r.status_code != 200:
                raise self.fail(f"get update session {sid} of the killed server: {r.status_code} {r.text}")
            state = r.json()["state"]
            if state == "DONE":  # only a complete in flight may have applied, and check_items resolved those
                raise self.fail(f"update session {sid} is DONE but its item does not hold its files")
            if state != "ACTIVE":
                rec.ended = True
                outcome[state.lower()] += 1
                continue
            r = api.get(f"{US}/{sid}/file")
            if r.status_code != 200:  # it may have expired since
                if self.ended_since(api, rec):
                    outcome["expired"] += 1
                    continue
                raise self.fail(f"list files of {sid}: {r.status_code} {r.text}")
            listing = r.json()
            item = self.ledger.items[rec.item]
            view: Files = {}
            not_ready: list[str] = []
            for f in listing:
                if f["status"] in ("TRANSFERRING", "VALIDATING"):
                    raise self.fail(f"file {f['name']} of {sid} is {f['status']} after the restart: {f}")
                if f["source_type"] == "NONE":
                    if item.files.get(f["name"]) != (f["checksum_info"]["checksum"], f["size"]):
                        raise self.fail(f"{sid} shows {f} unchanged, but the item has {item.files.get(f['name'])}")
                    view[f["name"]] = item.files[f["name"]]
                elif f["status"] == "READY":
                    # The listing shows the declared checksum; a SHA256 one is checked by reading the file back.
                    view[f["name"]] = ("?", f["size"])
                    if f["checksum_info"]["algorithm"] == "SHA1":
                        digest = f["checksum_info"]["checksum"]
                        if digest not in rec.uploads.get(f["name"], set()):
                            raise self.fail(f"{f['name']} of {sid} is READY with SHA1 {digest}, never sent for it")
                        view[f["name"]] = (digest, f["size"])
                else:
                    if f["status"] == "ERROR" and "interrupted" not in str(f.get("error_message")):
                        raise self.fail(f"file {f['name']} of {sid} failed, but not by the kill: {f}")
                    not_ready.append(f["name"])
            self.stats.add("invariant_checks")
            roll = self.rng.random()
            if roll < 0.5:
                outcome[self.resume(api, rec, item, view, not_ready)] += 1
            elif roll < 0.7:
                r = api.post(f"{US}/{sid}?action=cancel")
                if r.status_code == 204:
                    rec.ended = True
                    outcome["canceled"] += 1
                elif self.ended_since(api, rec):
                    outcome["expired"] += 1
                else:
                    raise self.fail(f"cancel {sid} after the restart: {r.status_code} {r.text}")
            else:
                outcome["left to expire"] += 1
        return ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())) or "none"

    def ended_since(self, api: Api, rec: SessionRecord) -> bool:
        r = api.get(f"{US}/{rec.id}")
        if r.status_code == 200 and r.json()["state"] == "ERROR" and "expired" in r.text:
            rec.ended = True
            return True
        return False

    def resume(self, api: Api, rec: SessionRecord, item: Item, view: Files, not_ready: list[str]) -> str:
        """Complete a session of the killed server after removing its files that are not READY; the item must then
        hold exactly the session's view (bytes read back)."""
        for name in not_ready:
            r = api.delete(f"{US}/{rec.id}/file/{name}")
            if r.status_code != 204:
                if self.ended_since(api, rec):
                    return "expired"
                raise self.fail(f"remove {name} from {rec.id} after the restart: {r.status_code} {r.text}")
        r = api.post(f"{US}/{rec.id}?action=complete")
        if r.status_code != 204:
            if self.ended_since(api, rec):
                return "expired"
            raise self.fail(f"complete {rec.id} after the restart: {r.status_code} {r.text}")
        rec.ended = True
        self.stats.add("resumed")
        files = self.item_files(api, item.id)
        r = api.get(f"{ITEM}/{item.id}")
        version = int(r.json()["content_version"])
        unknown = {n for n, (d, _) in view.items() if d == "?"}
        sizes = {n: s for n, (_, s) in view.items()}
        if {n: s for n, (_, s) in files.items()} != sizes or any(files[n] != view[n] for n in view if n not in unknown):
            raise self.fail(f"after completing {rec.id} the item {item.id} has {files}, not the session's view {view}")
        for n in unknown:
            if files[n][0] not in rec.uploads.get(n, set()):
                raise self.fail(f"{n} of item {item.id} has SHA1 {files[n][0]}, which no upload sent")
        if version < item.version:
            raise self.fail(f"item {item.id}: content_version went down from {item.version} to {version}")
        item.files, item.version = files, version
        return "resumed"

    def check_sweeper(self) -> None:
        """Once the sweeper has ended every session of the killed server, the stored blobs are exactly the ones the
        items' files point at."""
        deadline = time.monotonic() + 3 * SESSION_TIMEOUT + 20 * SWEEP_INTERVAL + 10
        while True:
            active = self.backend.active_sessions()
            referenced = self.backend.item_blobs()
            stored = set(self.backend.stored_blobs())
            uploads = self.backend.open_uploads()
            if not active and stored == set(referenced) and not uploads:
                break
            if time.monotonic() > deadline:
                raise self.fail(
                    "after the sweeper ran: "
                    + (f"sessions still ACTIVE {active}; " if active else "")
                    + (f"leftover blobs {sorted(stored - set(referenced))}; " if stored - set(referenced) else "")
                    + (f"lost blobs {sorted(set(referenced) - stored)}; " if set(referenced) - stored else "")
                    + (f"open multipart uploads {uploads}" if uploads else "")
                )
            time.sleep(SWEEP_INTERVAL)
        for rec in self.ledger.sessions.values():
            rec.ended = True
        self.stats.add("invariant_checks")


# -- entry points -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def workdir(parent: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="crashloop-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_crashloop(
    backend: str,
    kills: int,
    seed: int | None = None,
    workers: int = 4,
    parent: Path | None = None,
    pg: str = PG_DEFAULT,
    s3: str = S3_DEFAULT,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run `kills` rounds on a fresh server of the backend pair; the totals. Raises CrashLoopFailure."""
    seed = random.randrange(2**32) if seed is None else seed
    started = time.monotonic()
    with workdir(parent) as root:
        log(f"crashloop: backend {backend}, {kills} kills, seed {seed}, {workers} workers, data under {root}")
        b = Backend(backend, root / "data", pg.rstrip("/"), s3.rstrip("/"))
        loop = CrashLoop(b, seed, workers, log)
        try:
            loop.run(kills)
        finally:
            b.destroy()
    counts = loop.stats.counts
    return {
        "backend": backend,
        "seed": seed,
        "kills survived": counts["kills"],
        "extra kills during start-up": counts["startup_kills"],
        "operations acknowledged": counts["acknowledged"],
        "uploads": counts["uploads"],
        "upload MiB": round(counts["upload_bytes"] / MIB, 1),
        "completes": counts["completes"],
        "in-flight completes applied/lost": f"{counts['completes_in_flight_applied']}/"
        f"{counts['completes_in_flight_lost']}",
        "resumed after restart": counts["resumed"],
        "cancels/fails/abandoned": f"{counts['cancels']}/{counts['fails']}/{counts['abandoned']}",
        "items created/deleted": f"{counts['items']}/{counts['items_deleted']}",
        "downloads checked": counts["downloads"],
        "files verified after restarts": counts["files_verified"],
        "invariant checks run": counts["invariant_checks"],
        "database checks": "integrity_check + foreign_key_check"
        if b.amcheck is None
        else f"relational + {'amcheck (bt_index_check, verify_heapam)' if b.amcheck else 'no amcheck available'}",
        "seconds": round(time.monotonic() - started, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, one column per run."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(["", *(str(r["backend"]) for r in rows)]) + " |"]
    lines.append("|" + "---|" * (len(rows) + 1))
    lines += ["| " + " | ".join([k, *(str(r.get(k, "")) for r in rows)]) + " |" for k in keys if k != "backend"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="repeat for both (default: both)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None, help="parent directory of the temporary data dir")
    parser.add_argument("--pg", default=PG_DEFAULT)
    parser.add_argument("--s3", default=S3_DEFAULT)
    args = parser.parse_args(argv)
    rows = []
    for backend in args.backend or list(BACKENDS):
        try:
            rows.append(run_crashloop(backend, args.kills, args.seed, args.workers, args.dir, args.pg, args.s3))
        except CrashLoopFailure as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
