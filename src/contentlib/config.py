"""One Settings object: command-line flags > CONTENTLIB_* environment variables > these defaults (click does the
precedence; see cli.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("contentlib-data")
    host: str = "127.0.0.1"
    port: int = 8443
    http: bool = False
    update_session_timeout: float = 300.0  # idle seconds before an ACTIVE update/download session expires
    api_session_timeout: float = 1800.0  # idle seconds before an API session expires
    sweep_interval: float = 10.0
    session_retention: float = 3600.0  # seconds a finished session stays readable
    # seconds without progress after which a transfer is failed: an upload whose body stops arriving (its
    # connection is closed), or one whose replica died
    transfer_stall_timeout: float = 60.0
    header_timeout: float = 60.0  # seconds a connection may go without sending a complete request head
    max_api_body: int = 1024 * 1024
    database: str | None = None  # postgresql://... (several replicas); None: SQLite in the data dir
    blobs: str | None = None  # file:///dir or s3://bucket/prefix?endpoint=...; None: <data dir>/blobs
    public_url: str | None = None  # the address clients reach (behind a load balancer); endpoint URIs use it
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-Proto/-Host headers are believed
    workers: int = 1  # server processes on the port (`serve` defaults to one per CPU)
    tls_cert: Path | None = None  # the certificate served over https (None: plain http)
    log_format: str = "text"  # or "json": one object per line, with the request id (contentlib.logs)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "contentlib.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
