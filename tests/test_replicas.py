"""Several replicas sharing one PostgreSQL database and one S3 prefix: the scale-out guarantees of issue 5.

Contract: issue 5 point 3 (one ACTIVE update session per item across replicas; a session created on replica A can
receive its upload on replica B and be completed on replica C; expiry sweeping on exactly one replica at a time,
surviving that replica's death), point 5 and its Tests section (three server processes on different ports sharing
PostgreSQL + S3: 100 concurrent clients, exactly one ACTIVE session per item at any time, every item's bytes and
checksums right afterwards, no orphaned objects after the sweeper runs, one replica killed with SIGKILL mid-upload
and the rest go on), point 6 (endpoint URIs from `--public-url`, or X-Forwarded-Proto/-Host from trusted proxies);
issue 10 point 3 (one configuration for every replica; a copy shares its source's S3 objects).
Lead's conventions (common.md): ResourceBusy → 500 RESOURCE_BUSY, complete → 204, item files carry a SHA1 computed
by the server, expiry → ERROR with a message containing "expired", uploads answer 200.

Real components: PostgreSQL on CONTENTLIB_TEST_PG (default postgresql://postgres@127.0.0.1:5432) and an S3 server
on CONTENTLIB_TEST_S3 (default http://127.0.0.1:8333, SeaweedFS with ci/cisecret). When either cannot be reached
every test here FAILS (never skips) and names the script that starts it: scripts/ensure-postgres.sh,
scripts/ensure-seaweedfs.sh (or scripts/with-services.sh for both).

The cluster is module-scoped; the tests are grouped with `xdist_group("replicas")` (one worker under
`--dist loadgroup`; under plain `-n` each worker that receives some of them builds its own cluster, which is
still correct). A killed replica is restarted with the same data dir, so later tests see three replicas again.
The module's replicas run with `--sweep-interval 0.5 --session-retention 2`: a canceled session's file rows (and
so every trace of its blobs in PostgreSQL) go when the sweeper deletes the session after the retention period.
The sweeper test builds a cluster of its own (`--update-session-timeout 1` would expire the other tests' sessions).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import S3_BUCKET, S3_ENV, Api, ServerProcess, assert_error, pg_run, s3_client

pytestmark = [pytest.mark.xdist_group("replicas")]

PG_SERVER = os.environ.get("CONTENTLIB_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
S3_ENDPOINT = os.environ.get("CONTENTLIB_TEST_S3", "http://127.0.0.1:8333").rstrip("/")
PG_HINT = "run `bash scripts/ensure-postgres.sh` (or scripts/with-services.sh for both services)"
S3_HINT = "run `bash scripts/ensure-seaweedfs.sh` (or scripts/with-services.sh for both services)"

LIB = "/api/content/local-library"
ITEM = "/api/content/library/item"
US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"
KIB = 1024
MIB = 1024 * 1024
SWEEP = 0.5
RETENTION = 2.0  # finished sessions (and their file rows) are deleted this long after they end
SWEEPER_LOCK = 0x636C7377  # PostgresStore's advisory lock key ("clsw"); fits in pg_locks.objid (classid 0)


# -- PostgreSQL and S3 -----------------------------------------------------------------------------------------------
def services_problem() -> str | None:
    """Why PostgreSQL or S3 cannot be used (with the script to run), or None."""
    try:
        pg_run(f"{PG_SERVER}/postgres", "SELECT 1")
    except Exception as e:
        return f"PostgreSQL at {PG_SERVER} is not reachable ({type(e).__name__}: {e}); {PG_HINT}"
    try:
        s3 = s3_client(S3_ENDPOINT)
        try:
            s3.head_bucket(Bucket=S3_BUCKET)
        except Exception:
            try:
                s3.create_bucket(Bucket=S3_BUCKET)
            except s3.exceptions.ClientError as e:  # another worker or server created it meanwhile
                if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
    except Exception as e:
        return f"S3 at {S3_ENDPOINT} (bucket {S3_BUCKET}) is not usable ({type(e).__name__}: {e}); {S3_HINT}"
    return None


@dataclass
class Cluster:
    """Replicas sharing one database and one S3 prefix."""

    database: str
    prefix: str
    replicas: list[ServerProcess] = field(default_factory=list)

    @property
    def blobs_url(self) -> str:
        return f"s3://{S3_BUCKET}/{self.prefix}?endpoint={S3_ENDPOINT}"

    def server_args(self, extra: list[str] | None = None) -> list[str]:
        """Explicit --database/--blobs, so conftest's CONTENTLIB_TEST_PG/_S3 switches add nothing."""
        return [
            *("--database", self.database, "--blobs", self.blobs_url, "--sweep-interval", str(SWEEP)),
            *("--workers", "2"),  # each replica is two worker processes: six processes share the database and prefix
            *(extra or []),
        ]

    def new_replica(self, data_dir: Path, extra: list[str] | None = None) -> ServerProcess:
        srv = ServerProcess(data_dir, self.server_args(extra), env=dict(S3_ENV))
        assert srv.database is None and srv.s3_prefix is None  # conftest added nothing of its own
        self.replicas.append(srv)
        return srv

    def pg(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return pg_run(self.database, sql, *args)

    def s3_keys(self) -> set[str]:
        """Every object under the cluster's blob prefix (blob ids)."""
        prefix = f"{self.prefix}/blobs/"
        pages = s3_client(S3_ENDPOINT).get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
        return {o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])}

    def destroy(self) -> None:
        for srv in self.replicas:
            srv.stop()
        pg_run(f"{PG_SERVER}/postgres", f'DROP DATABASE IF EXISTS "{self.database.rsplit("/", 1)[1]}" WITH (FORCE)')
        s3 = s3_client(S3_ENDPOINT)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=f"{self.prefix}/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=S3_BUCKET, Delete={"Objects": keys, "Quiet": True})
        # A killed replica leaves its multipart upload open (the server aborts such uploads after an hour).
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=f"{self.prefix}/"):
            for up in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=S3_BUCKET, Key=up["Key"], UploadId=up["UploadId"])


def start_all(servers: list[ServerProcess]) -> None:
    """Start the servers at once (their migrations race, which issue 5 point 4 says is safe)."""
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        list(pool.map(lambda s: s.start(timeout=60), servers))


def make_cluster(root: Path, name: str, extra: list[list[str]]) -> Cluster:
    """A fresh database and S3 prefix, and one started replica per entry of `extra` (its additional flags)."""
    problem = services_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    db = f"cl_replicas_{uuid.uuid4().hex[:12]}"
    pg_run(f"{PG_SERVER}/postgres", f'CREATE DATABASE "{db}"')
    cluster = Cluster(f"{PG_SERVER}/{db}", f"replicas-{uuid.uuid4()}")
    for i, flags in enumerate(extra):
        cluster.new_replica(root / f"{name}-{i}", flags)
    try:
        start_all(cluster.replicas)
    except Exception:
        cluster.destroy()
        raise
    return cluster


@dataclass
class ClusterFixture:
    cluster: Cluster | None
    problem: str = ""

    def require(self) -> Cluster:
        """The cluster; fails the calling test (never skips it) when it could not be built."""
        if self.cluster is None:
            pytest.fail(self.problem, pytrace=False)
        return self.cluster


@pytest.fixture(scope="module")
def cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFixture]:
    root = tmp_path_factory.mktemp("replicas")
    try:
        cluster = make_cluster(root, "r", [["--session-retention", str(RETENTION)]] * 3)
    except BaseException as e:
        yield ClusterFixture(None, str(e))
        return
    yield ClusterFixture(cluster)
    cluster.destroy()


def use_cluster(cluster_fixture: ClusterFixture) -> Cluster:
    """The module's cluster with its three replicas running; called in each test's body, so that a missing
    PostgreSQL or S3 FAILS the test (a failing fixture would only report an error)."""
    c = cluster_fixture.require()
    for srv in c.replicas[:3]:  # a test that killed one restarts it; make sure the next test has all three
        if srv.proc is None or srv.proc.poll() is not None:
            srv.stop()
            srv.start()
    return c


# -- API helpers ------------------------------------------------------------------------------------------------------
def sha(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def create_library(api: Api, srv: ServerProcess) -> str:
    spec = {
        "name": f"lib-{uuid.uuid4().hex[:8]}",
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-test"}],
    }
    r = api.post(srv.base + LIB, json=spec)
    assert r.status_code == 201, r.text
    return str(r.json())


def create_item(api: Api, srv: ServerProcess, library_id: str) -> str:
    r = api.post(srv.base + ITEM, json={"library_id": library_id, "name": f"item-{uuid.uuid4().hex[:12]}"})
    assert r.status_code == 201, r.text
    return str(r.json())


def create_session(api: Api, srv: ServerProcess, item_id: str) -> str:
    r = api.post(srv.base + US, json={"library_item_id": item_id})
    assert r.status_code == 201, f"create on {srv.base}: {r.status_code} {r.text}"
    return str(r.json())


def session_state(api: Api, srv: ServerProcess, sid: str) -> dict[str, Any]:
    r = api.get(f"{srv.base}{US}/{sid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def add_file(
    api: Api, srv: ServerProcess, sid: str, name: str, data: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Add a PUSH file declaring its size and SHA256; its File.Info."""
    spec = {
        "name": name,
        "source_type": "PUSH",
        "size": len(data),
        "checksum_info": {"algorithm": "SHA256", "checksum": sha(data, "sha256")},
    }
    r = api.post(f"{srv.base}{US}/{sid}/file", json=spec, headers=headers)
    assert r.status_code == 201, f"add on {srv.base}: {r.status_code} {r.text}"
    return dict(r.json())


def session_file(api: Api, srv: ServerProcess, sid: str, name: str) -> dict[str, Any]:
    r = api.get(f"{srv.base}{US}/{sid}/file/{quote(name, safe='')}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def on_replica(uri: str, src: ServerProcess, dst: ServerProcess) -> str:
    """The same endpoint path on another replica's address (any replica serves any upload)."""
    assert uri.startswith(src.base + "/"), (uri, src.base)
    return dst.base + uri[len(src.base) :]


def upload(api: Api, uri: str, data: bytes) -> None:
    r = api.http.put(uri, data=data, timeout=120)
    assert r.status_code == 200, f"upload to {uri}: {r.status_code} {r.text}"


def complete(api: Api, srv: ServerProcess, sid: str) -> None:
    r = api.post(f"{srv.base}{US}/{sid}?action=complete")
    assert r.status_code == 204, f"complete on {srv.base}: {r.status_code} {r.text}"


def cancel(api: Api, srv: ServerProcess, sid: str) -> None:
    r = api.post(f"{srv.base}{US}/{sid}?action=cancel")
    assert r.status_code == 204, f"cancel on {srv.base}: {r.status_code} {r.text}"


def item_files(api: Api, srv: ServerProcess, item_id: str) -> dict[str, dict[str, Any]]:
    r = api.get(f"{srv.base}{ITEM}/{item_id}/file")
    assert r.status_code == 200, r.text
    return {f["name"]: f for f in r.json()}


def download(api: Api, srv: ServerProcess, item_id: str, name: str) -> bytes:
    """The file's bytes through a download session created, prepared and served on `srv`."""
    r = api.post(srv.base + DS, json={"library_item_id": item_id})
    assert r.status_code == 201, r.text
    ds = r.json()
    r = api.post(f"{srv.base}{DS}/{ds}/file?action=prepare", json={"file_name": name})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["status"] == "PREPARED", info
    uri = info["download_endpoint"]["uri"]
    assert uri.startswith(srv.base + "/cls/download/"), (uri, srv.base)
    r = api.http.get(uri, timeout=120)
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    assert api.delete(f"{srv.base}{DS}/{ds}").status_code == 204
    return r.content


def assert_item_holds(api: Api, srv: ServerProcess, item_id: str, files: dict[str, bytes]) -> None:
    """The item's files are exactly `files`: names, sizes, server SHA1s, and the bytes served back on `srv`."""
    listed = item_files(api, srv, item_id)
    assert sorted(listed) == sorted(files), (item_id, sorted(listed))
    for name, data in files.items():
        f = listed[name]
        assert f["size"] == len(data), (item_id, f)
        assert f["checksum_info"] == {"algorithm": "SHA1", "checksum": sha(data, "sha1")}, (item_id, f)
        got = download(api, srv, item_id, name)
        assert len(got) == len(data) and got == data, f"{item_id}/{name}: bytes differ (got {len(got)})"


def put_file(api: Api, replicas: list[ServerProcess], item_id: str, name: str, data: bytes) -> None:
    """A whole update session spread over the replicas: create on [0], add on [1], upload to [2], complete on [0]."""
    a, b, c = replicas[0], replicas[1 % len(replicas)], replicas[2 % len(replicas)]
    sid = create_session(api, a, item_id)
    info = add_file(api, b, sid, name, data)
    upload(api, on_replica(info["upload_endpoint"]["uri"], b, c), data)
    complete(api, a, sid)


def doubled_active_items(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.pg(
        "SELECT item_id, count(*) AS n FROM update_sessions WHERE state='ACTIVE' GROUP BY item_id HAVING count(*) > 1"
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (and the last value) after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})", pytrace=False)


# -- 1. 100 concurrent clients ------------------------------------------------------------------------------------
CLIENTS = 100
BUSY_ITEMS = 10
BUSY_CREATES = 5


def test_concurrent_clients_across_replicas(cluster_fixture: ClusterFixture) -> None:
    cluster = use_cluster(cluster_fixture)
    reps = cluster.replicas[:3]
    admin = Api(reps[0].base)
    lib = create_library(admin, reps[1])
    items: dict[int, tuple[str, str, bytes]] = {}
    busy_results: list[tuple[int, int, dict[str, Any]]] = []
    samples: list[str] = []
    violations: list[str] = []
    done = threading.Event()
    start = threading.Barrier(CLIENTS, timeout=120)

    def sampler() -> None:
        """While the clients run: no item ever shows two ACTIVE sessions, in PostgreSQL or through the API."""
        api = Api(reps[2].base)
        rng = random.Random(7)
        while not done.is_set():
            for row in doubled_active_items(cluster):
                violations.append(f"PostgreSQL: item {row['item_id']} has {row['n']} ACTIVE sessions")
            known = [v[0] for v in list(items.values())]
            for item_id in rng.sample(known, min(5, len(known))):
                srv = rng.choice(reps)
                r = api.get(srv.base + US, params={"library_item_id": item_id})
                if r.status_code != 200:
                    violations.append(f"list on {srv.base}: {r.status_code} {r.text}")
                    continue
                active = []
                for sid in r.json():
                    s = api.get(f"{srv.base}{US}/{sid}")
                    if s.status_code == 200 and s.json()["state"] == "ACTIVE":
                        active.append(sid)
                if len(active) > 1:
                    violations.append(f"API on {srv.base}: item {item_id} has ACTIVE sessions {active}")
            samples.append("x")
            time.sleep(0.05)

    def client(i: int) -> None:
        rng = random.Random(1000 + i)
        api = Api(rng.choice(reps).base)  # each client logs in on a random replica
        a, b, c = rng.sample(reps, 3)
        start.wait()
        item_id = create_item(api, rng.choice(reps), lib)
        sid = create_session(api, a, item_id)
        name = f"file-{i}.bin"
        data = rng.randbytes(rng.randint(KIB, 2 * MIB))
        items[i] = (item_id, name, data)
        if i < BUSY_ITEMS:
            # Concurrent creates spread over the replicas while `sid` is ACTIVE: every one is RESOURCE_BUSY.
            go = threading.Barrier(BUSY_CREATES, timeout=60)

            def extra(k: int) -> tuple[int, int, dict[str, Any]]:
                srv = reps[k % 3]
                go.wait()
                r = api.http.post(srv.base + US, json={"library_item_id": item_id}, timeout=60)
                is_json = r.headers.get("Content-Type", "").startswith("application/json")
                return k, r.status_code, r.json() if is_json else {}

            with ThreadPoolExecutor(max_workers=BUSY_CREATES) as pool:
                busy_results.extend(pool.map(extra, range(BUSY_CREATES)))
            assert session_state(api, rng.choice(reps), sid)["state"] == "ACTIVE"
            r = api.get(rng.choice(reps).base + US, params={"library_item_id": item_id})
            assert r.status_code == 200 and r.json() == [sid], r.text
        info = add_file(api, b, sid, name, data)
        uri = info["upload_endpoint"]["uri"]
        assert uri.startswith(f"{b.base}/cls/data/"), (uri, b.base)  # names the replica that added the file
        upload(api, uri if rng.random() < 0.5 else on_replica(uri, b, c), data)
        complete(api, c, sid)

    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            errors = [f.exception() for f in futures]
    finally:
        done.set()
        sampling.join(timeout=60)
    failed = [f"client {i}: {type(e).__name__}: {e}" for i, e in enumerate(errors) if e is not None]
    assert not failed, f"{len(failed)} of {CLIENTS} clients failed:\n" + "\n".join(failed[:10])
    assert not violations, violations[:10]
    assert samples, "the sampler took no sample"

    assert len(busy_results) == BUSY_ITEMS * BUSY_CREATES
    for k, status, body in busy_results:
        assert status == 500 and body.get("error_type") == "RESOURCE_BUSY", (k, status, body)

    def verify(i: int) -> None:
        item_id, name, data = items[i]
        rng = random.Random(5000 + i)
        api = Api(rng.choice(reps).base)
        srv = rng.choice(reps)
        assert_item_holds(api, srv, item_id, {name: data})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(verify, range(CLIENTS)))
    assert not doubled_active_items(cluster)
    ours = [v[0] for v in items.values()]
    active = cluster.pg("SELECT item_id FROM update_sessions WHERE state='ACTIVE' AND item_id = ANY($1)", ours)
    assert active == [], active


# -- 2. no orphans --------------------------------------------------------------------------------------------------
def test_no_orphaned_blobs_after_cancel_and_sweep(cluster_fixture: ClusterFixture) -> None:
    cluster = use_cluster(cluster_fixture)
    reps = cluster.replicas[:3]
    api = Api(reps[0].base)
    lib = create_library(api, reps[0])
    rng = random.Random(2)
    kept: dict[str, dict[str, bytes]] = {}
    for k in range(4):  # published content stays
        item_id = create_item(api, reps[k % 3], lib)
        files = {f"keep-{n}.bin": rng.randbytes(rng.randint(KIB, 300 * KIB)) for n in range(2)}
        for name, data in files.items():
            put_file(api, [reps[(k + j) % 3] for j in range(3)], item_id, name, data)
        kept[item_id] = files

    canceled: list[str] = []
    for k in range(6):
        a, b, c = reps[k % 3], reps[(k + 1) % 3], reps[(k + 2) % 3]
        item_id = list(kept)[k // 2] if k % 2 else create_item(api, a, lib)
        sid = create_session(api, a, item_id)
        for n in range(2):
            data = rng.randbytes(rng.randint(KIB, 300 * KIB))
            info = add_file(api, b, sid, f"tmp-{n}.bin", data)
            upload(api, on_replica(info["upload_endpoint"]["uri"], b, c), data)
        if k == 0:  # a file uploaded, then added again and uploaded again: the first blob was replaced
            data = rng.randbytes(50 * KIB)
            info = add_file(api, c, sid, "tmp-0.bin", data)
            upload(api, on_replica(info["upload_endpoint"]["uri"], c, a), data)
        if k == 1:  # a file uploaded, then removed from the session
            r = api.delete(f"{c.base}{US}/{sid}/file/tmp-1.bin")
            assert r.status_code == 204, r.text
        canceled.append(sid)
        staged = session_file(api, a, sid, "tmp-0.bin")
        assert staged["status"] == "READY", staged

    rows = cluster.pg("SELECT blob_id, pending_blob FROM session_files WHERE session_id = ANY($1)", canceled)
    staged_blobs = {b for r in rows for b in (r["blob_id"], r["pending_blob"]) if b}
    assert len(staged_blobs) == 11, rows  # 6 sessions x 2 files, one removed
    assert staged_blobs <= cluster.s3_keys(), "the staged uploads are not in S3"

    for k, sid in enumerate(canceled):
        cancel(api, reps[(k + 2) % 3], sid)  # on another replica than the one that received the upload
        assert session_state(api, reps[k % 3], sid)["state"] == "CANCELED"

    def settled() -> bool:
        gone = not cluster.pg("SELECT 1 FROM session_files WHERE session_id = ANY($1)", canceled)
        return gone and not (staged_blobs & cluster.s3_keys())

    time.sleep(3 * SWEEP)  # let the sweeper run a few times
    wait_for("canceled sessions' blobs and rows gone", settled, timeout=RETENTION + 8 * SWEEP)

    keys = cluster.s3_keys()
    referenced = {r["blob_id"] for r in cluster.pg("SELECT blob_id FROM item_files")}
    staged_active = cluster.pg(
        "SELECT f.blob_id, f.pending_blob FROM session_files f JOIN update_sessions s ON s.id=f.session_id "
        "WHERE s.state='ACTIVE' AND (f.blob_id IS NOT NULL OR f.pending_blob IS NOT NULL)"
    )
    assert staged_active == [], staged_active  # nothing else is in flight in this cluster now
    assert keys == referenced, f"orphans: {sorted(keys - referenced)[:5]}, missing: {sorted(referenced - keys)[:5]}"

    # The same count through the API: every item file of every library in the cluster is exactly one object.
    r = api.get(reps[1].base + "/api/content/library")
    assert r.status_code == 200, r.text
    count = 0
    for library_id in r.json():
        ri = api.get(reps[2].base + ITEM, params={"library_id": library_id})
        assert ri.status_code == 200, ri.text
        for item_id in ri.json():
            count += len(item_files(api, reps[0], item_id))
    assert count == len(keys), (count, len(keys))

    assert not cluster.pg("SELECT 1 FROM session_files WHERE blob_id = ANY($1)", list(staged_blobs))
    assert not cluster.pg("SELECT 1 FROM session_files WHERE pending_blob = ANY($1)", list(staged_blobs))
    assert not cluster.pg("SELECT 1 FROM item_files WHERE blob_id = ANY($1)", list(staged_blobs))
    for item_id, files in kept.items():
        assert_item_holds(api, rng.choice(reps), item_id, files)


# -- 3. SIGKILL mid-upload --------------------------------------------------------------------------------------------
BIG = 24 * MIB
CHUNK = 256 * KIB


def test_replica_killed_mid_upload(cluster_fixture: ClusterFixture) -> None:
    cluster = use_cluster(cluster_fixture)
    s0, s1, victim = cluster.replicas[:3]
    survivors = [s0, s1]
    api = Api(s0.base)
    lib = create_library(api, s1)
    item_id = create_item(api, s0, lib)
    sid = create_session(api, s0, item_id)
    data = random.Random(3).randbytes(BIG)
    info = add_file(api, s1, sid, "big.bin", data)
    target = on_replica(info["upload_endpoint"]["uri"], s1, victim)

    halfway = threading.Event()
    resume = threading.Event()
    outcome: list[BaseException | int] = []

    def body() -> Iterator[bytes]:
        for off in range(0, BIG, CHUNK):
            if off == BIG // 2:
                halfway.set()
                resume.wait(60)
            yield data[off : off + CHUNK]

    def uploader() -> None:
        try:
            with requests.Session() as http:
                http.trust_env = False
                outcome.append(http.put(target, data=body(), timeout=60).status_code)
        except requests.RequestException as e:
            outcome.append(e)

    t = threading.Thread(target=uploader, daemon=True)
    t.start()
    try:
        assert halfway.wait(30), "the upload did not reach its half"
        wait_for(
            "the victim receiving the upload",
            lambda: (
                (f := session_file(api, victim, sid, "big.bin"))["status"] == "TRANSFERRING"
                and f["bytes_transferred"] > 0
            ),
            timeout=15,
        )
        victim.kill()
    finally:
        resume.set()
        t.join(30)
    assert outcome and not isinstance(outcome[0], int), f"the upload to the killed replica answered {outcome}"

    # The two others go on serving: logins, creates, uploads (to either), completes.
    for k in range(2):
        a, b = survivors[k], survivors[1 - k]
        other = Api(a.base)
        other_item = create_item(other, b, lib)
        payload = os.urandom(300 * KIB + k)
        put_file(other, [a, b, a], other_item, f"during-{k}.bin", payload)
        assert_item_holds(other, b, other_item, {f"during-{k}.bin": payload})
    assert session_state(api, s0, sid)["state"] == "ACTIVE"

    # The killed transfer cannot finish. Restarted with the same data dir, the replica fails its own transfers at
    # start-up, so the survivors show the file in ERROR within a bounded time. (The sweeper's own path for a replica
    # that never comes back, no progress for 60 s, is longer than this module's time budget.)
    victim.start()

    def errored(srv: ServerProcess) -> dict[str, Any] | None:
        f = session_file(api, srv, sid, "big.bin")
        return f if f["status"] == "ERROR" else None

    for srv in survivors:
        f = wait_for(f"big.bin in ERROR on {srv.base}", functools.partial(errored, srv), timeout=15)
        assert f.get("error_message"), f
    assert session_state(api, s1, sid)["state"] == "ACTIVE"
    r = api.post(f"{s0.base}{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "big.bin")

    # The client adds the file again (new endpoint) and completes.
    info2 = add_file(api, s0, sid, "big.bin", data)
    assert info2["upload_endpoint"]["uri"] != info["upload_endpoint"]["uri"]
    assert info2["status"] == "WAITING_FOR_TRANSFER", info2
    upload(api, on_replica(info2["upload_endpoint"]["uri"], s0, s1), data)
    complete(api, s1, sid)
    assert_item_holds(api, random.choice(cluster.replicas[:3]), item_id, {"big.bin": data})
    assert Api(victim.base).session_id  # the restarted replica serves again


# -- 4. exactly one sweeper ------------------------------------------------------------------------------------------
def sweeper_holders(cluster: Cluster) -> list[dict[str, Any]]:
    """The backends holding the sweeper's advisory lock in the cluster's database, with their client ports."""
    return cluster.pg(
        "SELECT l.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        SWEEPER_LOCK,
    )


def replica_with_port(replicas: list[ServerProcess], local_port: int) -> ServerProcess | None:
    """The replica process owning the TCP socket whose local port is `local_port` (its PostgreSQL connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(cols[9])
    for srv in replicas:
        if srv.proc is None or srv.proc.poll() is not None:
            continue
        for pid in [srv.proc.pid, *_workers_of(srv.proc.pid)]:  # the supervisor and its worker processes
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return srv
    return None


def _workers_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def expired(api: Api, srv: ServerProcess, sid: str) -> dict[str, Any] | None:
    s = session_state(api, srv, sid)
    return s if s["state"] == "ERROR" else None


def test_exactly_one_sweeper_and_takeover(tmp_path: Path, cluster_fixture: ClusterFixture) -> None:
    cluster_fixture.require()  # the services are there (else this fails with the hint)
    c = make_cluster(tmp_path, "sw", [["--update-session-timeout", "1"]] * 3)
    try:
        reps = c.replicas
        holders = wait_for("a sweeper", lambda: sweeper_holders(c), timeout=10)
        assert len(holders) == 1, holders
        leader = replica_with_port(reps, holders[0]["client_port"])
        assert leader is not None, f"the sweeper lock is held by {holders}, no replica's connection"

        api = Api(reps[0].base)
        lib = create_library(api, reps[1])
        item_id = create_item(api, reps[2], lib)
        created = time.monotonic()
        sid = create_session(api, reps[0], item_id)
        assert session_state(api, reps[2], sid)["state"] == "ACTIVE"
        counts = []
        deadline = time.monotonic() + 10
        state: dict[str, Any] | None = None
        while time.monotonic() < deadline and state is None:
            counts.append(len(sweeper_holders(c)))
            state = expired(api, reps[1], sid)
            time.sleep(0.1)
        assert state is not None, "the idle session did not expire"
        assert time.monotonic() - created >= 1.0, "expired before --update-session-timeout 1"
        assert set(counts) == {1}, f"sweeper lock holders seen: {counts}"
        msg = state["error_message"]
        assert isinstance(msg, dict) and "expired" in msg["default_message"].lower(), state  # one message
        for srv in reps:  # the same single outcome everywhere
            assert session_state(api, srv, sid)["error_message"] == msg
        assert session_state(api, reps[2], sid)["state"] == "ERROR"

        # Kill the replica holding the lock: PostgreSQL releases it with the connection, another replica takes it.
        leader.kill()
        survivors = [s for s in reps if s is not leader]

        def survivor_holders() -> list[ServerProcess]:
            return [r for h in sweeper_holders(c) if (r := replica_with_port(survivors, h["client_port"]))]

        wait_for("a surviving replica taking the sweeper lock", survivor_holders, timeout=15)
        new_holders = sweeper_holders(c)
        assert len(new_holders) == 1, new_holders

        api2 = Api(survivors[0].base)
        sid2 = create_session(api2, survivors[1], item_id)
        state2 = wait_for("expiry after the sweeper's replica died", lambda: expired(api2, survivors[0], sid2), 10)
        assert "expired" in state2["error_message"]["default_message"].lower(), state2
        assert len(sweeper_holders(c)) == 1
    finally:
        c.destroy()


# -- 5. public URL and trusted proxies --------------------------------------------------------------------------------
PUBLIC = "https://cl.example.test:9443"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "lb.example.test:8443"}


def endpoints(api: Api, srv: ServerProcess, item_id: str, headers: dict[str, str] | None) -> tuple[str, str, str]:
    """The upload URI from add, the same from get-file, and a download URI: all asked of `srv` with `headers`."""
    r = api.post(srv.base + US, json={"library_item_id": item_id}, headers=headers)
    assert r.status_code == 201, r.text
    sid = r.json()
    data = b"x" * 100
    up = add_file(api, srv, sid, "new.bin", data, headers=headers)["upload_endpoint"]["uri"]
    r = api.get(f"{srv.base}{US}/{sid}/file/new.bin", headers=headers)
    assert r.status_code == 200, r.text
    up_again = r.json()["upload_endpoint"]["uri"]
    cancel(api, srv, sid)
    r = api.post(srv.base + DS, json={"library_item_id": item_id}, headers=headers)
    assert r.status_code == 201, r.text
    ds = r.json()
    r = api.post(f"{srv.base}{DS}/{ds}/file?action=prepare", json={"file_name": "old.bin"}, headers=headers)
    assert r.status_code == 200, r.text
    down = r.json()["download_endpoint"]["uri"]
    assert api.delete(f"{srv.base}{DS}/{ds}").status_code == 204
    return up, up_again, down


def test_public_url_and_trusted_proxies(cluster_fixture: ClusterFixture, tmp_path: Path) -> None:
    cluster = use_cluster(cluster_fixture)
    extra = [
        cluster.new_replica(tmp_path / "public", ["--public-url", PUBLIC]),
        cluster.new_replica(tmp_path / "proxied", ["--trusted-proxies", "127.0.0.1/32"]),
        cluster.new_replica(tmp_path / "elsewhere", ["--trusted-proxies", "10.0.0.0/8,192.168.0.0/16"]),
    ]
    try:
        start_all(extra)
        check_endpoint_addresses(cluster, *extra)
    finally:
        for srv in extra:
            srv.stop()
            cluster.replicas.remove(srv)


def check_endpoint_addresses(
    cluster: Cluster, public: ServerProcess, proxied: ServerProcess, elsewhere: ServerProcess
) -> None:
    plain = cluster.replicas[0]
    api = Api(plain.base)
    lib = create_library(api, plain)
    item_id = create_item(api, plain, lib)
    old = os.urandom(2 * KIB)
    put_file(api, cluster.replicas[:3], item_id, "old.bin", old)

    def starts(uris: tuple[str, str, str], prefix: str) -> None:
        kinds = ("/cls/data/", "/cls/data/", "/cls/download/")
        for uri, kind in zip(uris, kinds, strict=True):
            assert uri.startswith(prefix + kind), (uri, prefix + kind)

    starts(endpoints(api, public, item_id, None), PUBLIC)
    starts(endpoints(api, public, item_id, FORWARDED), PUBLIC)  # the configured public URL wins
    starts(endpoints(api, proxied, item_id, FORWARDED), "https://lb.example.test:8443")
    starts(endpoints(api, proxied, item_id, None), proxied.base)  # nothing forwarded: the request's own address
    starts(endpoints(api, plain, item_id, FORWARDED), plain.base)  # no --trusted-proxies: headers ignored
    starts(endpoints(api, elsewhere, item_id, FORWARDED), elsewhere.base)  # 127.0.0.1 is not a trusted proxy

    # The forwarded URI's path works at the replica behind the "proxy": upload there and complete.
    sid = create_session(api, proxied, item_id)
    data = os.urandom(10 * KIB)
    uri = add_file(api, proxied, sid, "new.bin", data, headers=FORWARDED)["upload_endpoint"]["uri"]
    assert uri.startswith("https://lb.example.test:8443/cls/data/"), uri
    upload(api, plain.base + uri[len("https://lb.example.test:8443") :], data)
    complete(api, public, sid)
    assert_item_holds(api, elsewhere, item_id, {"old.bin": old, "new.bin": data})


# -- 5. the service's configuration and shared blobs across replicas ---------------------------------------------------
CONFIG = "/api/content/configuration"


def test_configuration_copies_and_changes_across_replicas(cluster_fixture: ClusterFixture) -> None:
    """The configuration is one value for every replica (issue 10 point 3); a copy made on one replica shares its
    source's S3 objects (no byte is copied), is read and recorded alike on the others, and keeps the objects when
    the source is deleted on a third; deleting the copy too frees them."""
    cluster = use_cluster(cluster_fixture)
    a, b, c = cluster.replicas[:3]
    api = Api(a.base)
    before = api.get(a.base + CONFIG).json()
    change = {"automatic_sync_start_hour": 1, "transfer_threads_pool_size": 33}
    try:
        assert api.patch(a.base + CONFIG, json=change).status_code == 204
        for srv in (b, c):
            got = api.get(srv.base + CONFIG).json()
            assert {k: got[k] for k in change} == change, srv.base
    finally:
        assert api.patch(b.base + CONFIG, json={k: before[k] for k in change}).status_code == 204
    assert api.get(c.base + CONFIG).json() == before

    lib = create_library(api, a)
    source = create_item(api, b, lib)
    data = os.urandom(64 * KIB)
    put_file(api, [a, b, c], source, "disk.bin", data)
    objects = cluster.s3_keys()
    r = api.post(f"{b.base}{ITEM}/{source}?action=copy", json={"name": "copy"})
    assert r.status_code == 200, r.text
    new = r.json()
    assert cluster.s3_keys() == objects  # nothing was copied
    r = api.get(f"{c.base}{ITEM}/{new}/changes")
    assert r.status_code == 200 and [ch["version"] for ch in r.json()] == ["1"], r.text
    r = api.get(f"{a.base}{ITEM}/{new}/storage", params={"file_name": "disk.bin"})
    assert r.status_code == 200, r.text
    uri = r.json()[0]["storage_uris"][0]
    assert uri.startswith(f"s3://{S3_BUCKET}/{cluster.prefix}/blobs/"), uri
    blob = uri[len(f"s3://{S3_BUCKET}/{cluster.prefix}/blobs/") :]
    assert blob in objects

    assert api.delete(f"{c.base}{ITEM}/{source}").status_code == 204
    assert blob in cluster.s3_keys()
    assert_item_holds(api, a, new, {"disk.bin": data})
    assert api.delete(f"{b.base}{ITEM}/{new}").status_code == 204
    assert blob not in cluster.s3_keys()
