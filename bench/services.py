"""PostgreSQL and the S3 server for section 7: made sure of (scripts/ensure-*.sh), checked, stopped again,
and cleaned up after."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import DEFAULT_PG, DEFAULT_S3, REPO, BenchError, Config, KiB, pids_named

S3_BUCKET = "contentlib-bench"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "ci"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "cisecret"),
    "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}
SCRIPTS = REPO / "scripts"


@dataclass
class Services:
    """What section 7 started itself (and stops again afterwards), like scripts/with-services.sh."""

    started_pg: bool = False
    started_s3: bool = False
    pg_version: str = "?"
    s3_server: str = "?"


def run_script(*args: str) -> None:
    cmd = ["bash", str(SCRIPTS / args[0]), *args[1:]]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"scripts/{' '.join(args)} did not finish in {e.timeout:.0f} s") from e
    if r.returncode != 0:
        tail = (r.stderr + r.stdout).strip()[-2000:]
        raise BenchError(f"scripts/{' '.join(args)} failed with exit status {r.returncode}: {tail}")


def pg_isready() -> bool:
    cmd = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
    with contextlib.suppress(OSError):
        return subprocess.run(cmd, capture_output=True).returncode == 0
    return False


def s3_answers(endpoint: str) -> bool:
    try:
        requests.get(endpoint + "/", timeout=2)
        return True
    except requests.RequestException:
        return False


def pg_admin(server_url: str, sql: str) -> str:
    """Run one statement on the `postgres` database of the server; the first column of the first row, if any."""
    import asyncio

    import asyncpg

    async def run() -> str:
        conn = await asyncpg.connect(f"{server_url}/postgres", timeout=15)
        try:
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client with the stock configuration (path-style addressing: the endpoint is an IP address)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def s3_probe(s3: Any, endpoint: str) -> None:
    """The bucket exists (made if missing) and a small object can be written, read back and deleted."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"probe-{uuid.uuid4().hex[:12]}"
    data = os.urandom(4 * KiB)
    try:
        try:
            s3.head_bucket(Bucket=S3_BUCKET)
        except ClientError:
            s3.create_bucket(Bucket=S3_BUCKET)
        s3.put_object(Bucket=S3_BUCKET, Key=key, Body=data)
        back = s3.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
        s3.delete_object(Bucket=S3_BUCKET, Key=key)
    except (BotoCoreError, ClientError) as e:
        raise BenchError(f"the S3 server at {endpoint} answers but does not work: {type(e).__name__}: {e}") from e
    if back != data:
        raise BenchError(f"the S3 server at {endpoint} returned other bytes than were written")


def ensure_services(cfg: Config, svc: Services) -> Any:
    """PostgreSQL and the S3 server are up and work (the local ones are started with scripts/ensure-*.sh when
    they are not running); the S3 client. Raises BenchError when either cannot be had."""
    if cfg.pg_url == DEFAULT_PG:
        svc.started_pg = not pg_isready()
        run_script("ensure-postgres.sh")
    if cfg.s3_endpoint == DEFAULT_S3:
        svc.started_s3 = not s3_answers(cfg.s3_endpoint)
        run_script("ensure-seaweedfs.sh")
    try:
        svc.pg_version = pg_admin(cfg.pg_url, "SHOW server_version").split()[0]
    except Exception as e:
        raise BenchError(f"PostgreSQL at {cfg.pg_url} does not work: {type(e).__name__}: {e}") from e
    if not s3_answers(cfg.s3_endpoint):
        raise BenchError(f"nothing answers at the S3 endpoint {cfg.s3_endpoint}")
    weed = shutil.which("weed") or str(REPO / ".venv" / "bin" / "weed")
    if pids_named("weed") and os.access(weed, os.X_OK):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # "version 8000GB 4.48 pypi linux amd64"
            words = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=10).stdout.split()
            svc.s3_server = "SeaweedFS " + next((w for w in words if re.fullmatch(r"\d+(\.\d+)+", w)), "?")
    else:
        svc.s3_server = requests.get(cfg.s3_endpoint + "/", timeout=5).headers.get("Server", "S3 server")
    s3 = s3_client(cfg.s3_endpoint)
    s3_probe(s3, cfg.s3_endpoint)
    return s3


def stop_services(svc: Services) -> list[str]:
    notes = []
    if svc.started_s3:
        with contextlib.suppress(BenchError):
            run_script("ensure-seaweedfs.sh", "stop")
            notes.append("SeaweedFS stopped again (this run started it)")
    if svc.started_pg:
        stop = 'pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -1)" main stop'
        if subprocess.run(["bash", "-c", stop], capture_output=True).returncode == 0:
            notes.append("PostgreSQL stopped again (this run started it)")
    return notes


def empty_prefix(s3: Any, prefix: str) -> int:
    """Delete every object and abort every multipart upload under `prefix/` in the bench bucket; objects deleted.
    Raises BenchError when something is left."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=S3_BUCKET, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix + "/"):
        for up in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=S3_BUCKET, Key=up["Key"], UploadId=up["UploadId"])
    left = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix + "/").get("KeyCount", 0)
    if left:
        raise BenchError(f"{left} objects are left under s3://{S3_BUCKET}/{prefix}/")
    return deleted


def pg_backends(db_name: str) -> list[int]:
    """PostgreSQL backends serving `db_name` (their command line names the database)."""
    out = []
    for pid in pids_named("postgres"):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if f" {db_name} " in argv:
                out.append(pid)
    return out
