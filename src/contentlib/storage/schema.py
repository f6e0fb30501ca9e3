"""The metadata schema, written once for SQLite and PostgreSQL: the newest whole (`SCHEMA`), what turns a database
of each older version into the next (`MIGRATIONS`), and the defaults of a session file's row beside the columns
they fill. A driver fills in its types for {real} (epoch seconds) and {int} (64-bit integers)."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]

SCHEMA_VERSION = 7
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created {real} NOT NULL,
    role TEXT NOT NULL
);
CREATE UNIQUE INDEX users_name ON users (lower(name));
CREATE TABLE login_failures (
    name TEXT PRIMARY KEY,
    count {int} NOT NULL,
    last {real} NOT NULL
);
CREATE TABLE api_sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created {real} NOT NULL,
    last_accessed {real} NOT NULL
);
CREATE TABLE libraries (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    type TEXT NOT NULL,
    storage_backings TEXT NOT NULL,
    extra TEXT NOT NULL,
    version {int} NOT NULL,
    created {real} NOT NULL,
    modified {real} NOT NULL,
    client_token TEXT UNIQUE,
    publish_version {int} NOT NULL DEFAULT 0,
    feed_removed {int} NOT NULL DEFAULT 0,
    publish_password TEXT,
    subscription_password TEXT
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    library_id TEXT NOT NULL REFERENCES libraries(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    type TEXT,
    source_id TEXT,
    version {int} NOT NULL,
    metadata_version {int} NOT NULL,
    content_version {int} NOT NULL,
    created {real} NOT NULL,
    modified {real} NOT NULL,
    client_token TEXT UNIQUE,
    publish_version {int} NOT NULL DEFAULT 0,
    cached {int} NOT NULL DEFAULT 1,
    remote TEXT,
    synced_content TEXT,
    last_sync {real}
);
CREATE UNIQUE INDEX items_name ON items (library_id, lower(name));
CREATE TABLE item_changes (
    item_id TEXT NOT NULL REFERENCES items(id),
    version {int} NOT NULL,
    changed {real} NOT NULL,
    user_name TEXT,
    message TEXT,
    PRIMARY KEY (item_id, version)
);
CREATE TABLE item_files (
    item_id TEXT NOT NULL REFERENCES items(id),
    name TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    size {int} NOT NULL,
    sha1 TEXT NOT NULL,
    version {int} NOT NULL,
    PRIMARY KEY (item_id, name)
);
CREATE INDEX item_files_blob ON item_files (blob_id);
CREATE TABLE update_sessions (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    content_version {int} NOT NULL,
    state TEXT NOT NULL,
    client_progress {int} NOT NULL,
    error_message TEXT,
    warning_behavior TEXT,
    has_package {int} NOT NULL DEFAULT 0,
    created {real} NOT NULL,
    last_activity {real} NOT NULL,
    ended {real},
    client_token TEXT UNIQUE,
    completing {real}
);
CREATE UNIQUE INDEX one_active_update_session ON update_sessions (item_id) WHERE state = 'ACTIVE';
CREATE INDEX update_sessions_owner ON update_sessions (owner);
CREATE INDEX update_sessions_completing ON update_sessions (id) WHERE state = 'ACTIVE' AND completing IS NOT NULL;
CREATE TABLE session_files (
    session_id TEXT NOT NULL REFERENCES update_sessions(id),
    name TEXT NOT NULL,
    op TEXT NOT NULL,
    seq {int} NOT NULL,
    source_type TEXT NOT NULL,
    source_endpoint TEXT,
    token TEXT UNIQUE,
    declared_size {int},
    checksum_algorithm TEXT,
    checksum TEXT,
    status TEXT NOT NULL,
    bytes_transferred {int} NOT NULL,
    size {int},
    sha1 TEXT,
    blob_id TEXT,
    pending_blob TEXT,
    error_message TEXT,
    keep_in_storage {int} NOT NULL,
    digests TEXT,
    meta TEXT,
    parent TEXT,
    progress_at {real},
    transfer_owner TEXT,
    PRIMARY KEY (session_id, name)
);
CREATE TABLE download_sessions (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    content_version {int} NOT NULL,
    state TEXT NOT NULL,
    client_progress {int} NOT NULL,
    error_message TEXT,
    created {real} NOT NULL,
    last_activity {real} NOT NULL,
    ended {real},
    client_token TEXT UNIQUE
);
CREATE TABLE download_files (
    session_id TEXT NOT NULL REFERENCES download_sessions(id),
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    blob_id TEXT NOT NULL,
    size {int} NOT NULL,
    sha1 TEXT NOT NULL,
    bytes_transferred {int} NOT NULL,
    PRIMARY KEY (session_id, name)
);
CREATE TABLE library_syncs (
    library_id TEXT PRIMARY KEY,
    requested {real},
    items TEXT,
    running TEXT,
    heartbeat {real},
    last_sync {real},
    last_error TEXT,
    feed_version TEXT
);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    library_id TEXT NOT NULL,
    subscribed_library_id TEXT NOT NULL,
    location TEXT NOT NULL,
    vcenter TEXT,
    placement TEXT NOT NULL,
    token_sha256 TEXT,
    created {real} NOT NULL,
    client_token TEXT UNIQUE
);
CREATE UNIQUE INDEX subscriptions_pair ON subscriptions (library_id, subscribed_library_id);
CREATE TABLE trusted_certificates (
    id TEXT PRIMARY KEY,
    cert_text TEXT NOT NULL,
    created {real} NOT NULL
);
"""


def session_file_row(session_id: str, name: str, **fields: Any) -> Row:
    """A session_files row (every column but `seq`, which put_session_file assigns): a file the session adds
    unless `fields` say otherwise."""
    row: Row = {
        "session_id": session_id,
        "name": name,
        "op": "ADD",
        "source_type": "PUSH",
        "source_endpoint": None,
        "token": None,
        "declared_size": None,
        "checksum_algorithm": None,
        "checksum": None,
        "status": "WAITING_FOR_TRANSFER",
        "bytes_transferred": 0,
        "size": None,
        "sha1": None,
        "blob_id": None,
        "pending_blob": None,
        "error_message": None,
        "keep_in_storage": 1,
        "digests": None,
        "meta": None,
        "parent": None,
        "progress_at": None,
        "transfer_owner": None,
    }
    row.update(fields)
    return row


# What turns a database of version N-1 into version N (SCHEMA is always the newest whole).
MIGRATIONS: dict[int, str] = {
    # Users get roles; those of version 1 could do everything, so they stay Administrators.
    2: "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'Administrator'",
    # Publish counters (bumped by publish, read by the subscription feed) and the items' content change history,
    # which starts empty: what changed before the upgrade was not recorded.
    3: ";".join(
        [
            "ALTER TABLE libraries ADD COLUMN publish_version {int} NOT NULL DEFAULT 0",
            "ALTER TABLE items ADD COLUMN publish_version {int} NOT NULL DEFAULT 0",
            "CREATE TABLE item_changes (item_id TEXT NOT NULL REFERENCES items(id), version {int} NOT NULL, "
            "changed {real} NOT NULL, user_name TEXT, message TEXT, PRIMARY KEY (item_id, version))",
        ]
    ),
    # A complete while PULL files are still arriving is recorded (when), and the session completes when they have.
    4: ";".join(
        [
            "ALTER TABLE update_sessions ADD COLUMN completing {real}",
            "CREATE INDEX update_sessions_completing ON update_sessions (id) "
            "WHERE state = 'ACTIVE' AND completing IS NOT NULL",
        ]
    ),
    # Failed logins in a row per user name (the SHA-256 of its lower case), shared by every worker and replica.
    5: "CREATE TABLE login_failures (name TEXT PRIMARY KEY, count {int} NOT NULL, last {real} NOT NULL)",
    # The VCSP feed of a published library: what removed items counted towards its version (which must never go
    # down), and the argon2 hash of its publish password (none was kept before: a BASIC library needs one set).
    6: ";".join(
        [
            "ALTER TABLE libraries ADD COLUMN feed_removed {int} NOT NULL DEFAULT 0",
            "ALTER TABLE libraries ADD COLUMN publish_password TEXT",
        ]
    ),
    # Subscribed libraries: the password a subscription sends its publisher (which needs it in clear), each item's
    # state against its publisher (whether its bytes are here, what the publisher said of it, which content version
    # of the publisher's it holds), each library's synchronization (asked for, running where, how it ended), and
    # the subscriptions a published library knows of (library.subscriptions).
    7: ";".join(
        [
            "ALTER TABLE libraries ADD COLUMN subscription_password TEXT",
            "ALTER TABLE items ADD COLUMN cached {int} NOT NULL DEFAULT 1",
            "ALTER TABLE items ADD COLUMN remote TEXT",
            "ALTER TABLE items ADD COLUMN synced_content TEXT",
            "ALTER TABLE items ADD COLUMN last_sync {real}",
            "CREATE TABLE library_syncs (library_id TEXT PRIMARY KEY, requested {real}, items TEXT, running TEXT, "
            "heartbeat {real}, last_sync {real}, last_error TEXT, feed_version TEXT)",
            "CREATE TABLE subscriptions (id TEXT PRIMARY KEY, library_id TEXT NOT NULL, subscribed_library_id TEXT "
            "NOT NULL, location TEXT NOT NULL, vcenter TEXT, placement TEXT NOT NULL, token_sha256 TEXT, "
            "created {real} NOT NULL, client_token TEXT UNIQUE)",
            "CREATE UNIQUE INDEX subscriptions_pair ON subscriptions (library_id, subscribed_library_id)",
        ]
    ),
}


def schema_statements(real: str, integer: str, current: int = 0) -> list[str]:
    """The statements that bring a database of schema version `current` (0: empty) to SCHEMA_VERSION."""
    text = SCHEMA if current == 0 else ";".join(MIGRATIONS[v] for v in range(current + 1, SCHEMA_VERSION + 1))
    return [s.strip() for s in text.format(real=real, int=integer).split(";") if s.strip()]
