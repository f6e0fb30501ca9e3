"""The queries of subscribed libraries' synchronization (services/subscriber.py) and of published libraries'
subscriptions (services/subscriptions.py), beside SqlStore's others.

`library_syncs` holds one row per subscribed library that was ever synchronized or asked to be: `requested` (when
a whole sync was asked for, until one starts), `items` (JSON: item ids asked for alone, each with whether its bytes
must come too), `running` (the process running its sync, which writes `heartbeat` while it does), and how the last
one ended (`last_sync`, `last_error`, the publisher's `feed_version` it mirrored). A sync is claimed with a
compare-and-set on `running`, so two processes, replicas or not, never synchronize one library at once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contentlib.storage.schema import Row


class SyncQueries:
    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        raise NotImplementedError

    async def _exec(self, sql: str, args: tuple[Any, ...] = (), may_conflict: bool = False) -> int:
        raise NotImplementedError

    def _locking(self, of: str = "") -> str:
        raise NotImplementedError

    async def request_sync(self, library_id: str, now: float, items: dict[str, bool] | None = None) -> None:
        """Ask for a sync of the whole library (`items` None) or of some of its items (item id → whether their bytes
        must come too); a request made while one runs is served by the next run."""
        await self._exec("INSERT INTO library_syncs (library_id) VALUES (?) ON CONFLICT DO NOTHING", (library_id,))
        if items is None:
            await self._exec(
                "UPDATE library_syncs SET requested = COALESCE(requested, ?) WHERE library_id=?", (now, library_id)
            )
            return
        row = await self._one(f"SELECT items FROM library_syncs WHERE library_id=?{self._locking()}", (library_id,))
        wanted: dict[str, bool] = msgspec.json.decode(row["items"]) if row and row["items"] else {}
        for item_id, content in items.items():
            wanted[item_id] = wanted.get(item_id, False) or content
        await self._exec(
            "UPDATE library_syncs SET items=? WHERE library_id=?", (msgspec.json.encode(wanted).decode(), library_id)
        )

    async def sync_state(self, library_id: str) -> Row | None:
        return await self._one("SELECT * FROM library_syncs WHERE library_id=?", (library_id,))

    async def sync_states(self) -> list[Row]:
        return await self._all("SELECT * FROM library_syncs ORDER BY library_id")

    async def claim_sync(self, library_id: str, owner: str, now: float, stale_before: float) -> Row | None:
        """Take the library's pending requests for `owner` to run, unless another process runs a sync of it that
        is alive (wrote its heartbeat since `stale_before`); the requests taken (None: nothing to run, or busy).
        Call inside a transaction."""
        row = await self._one(f"SELECT * FROM library_syncs WHERE library_id=?{self._locking()}", (library_id,))
        if row is None or (row["requested"] is None and row["items"] is None):
            return None
        if row["running"] is not None and row["running"] != owner and (row["heartbeat"] or 0) >= stale_before:
            return None
        await self._exec(
            "UPDATE library_syncs SET running=?, heartbeat=?, requested=NULL, items=NULL WHERE library_id=?",
            (owner, now, library_id),
        )
        return row

    async def sync_heartbeat(self, library_id: str, owner: str, now: float) -> bool:
        """Count the sync `owner` runs as alive; False if it is no longer its (it was taken over, or the library
        is gone)."""
        return (
            await self._exec(
                "UPDATE library_syncs SET heartbeat=? WHERE library_id=? AND running=?", (now, library_id, owner)
            )
            > 0
        )

    async def finish_sync(
        self, library_id: str, owner: str, last_sync: float | None, last_error: str | None, feed_version: str | None
    ) -> None:
        """The sync `owner` ran has ended: with success (`last_sync` set, `last_error` None) or not."""
        await self._exec(
            "UPDATE library_syncs SET running=NULL, last_sync=COALESCE(?, last_sync), last_error=?, "
            "feed_version=COALESCE(?, feed_version) WHERE library_id=? AND running=?",
            (last_sync, last_error, feed_version, library_id, owner),
        )

    async def requeue_syncs(self, owner_prefix: str) -> int:
        """At a start: the syncs a previous run of this replica was running (owners `owner_prefix`...) are asked
        for again, to run from the start (what they had finished of an item is in no item: see subscriber.py)."""
        return await self._exec(
            "UPDATE library_syncs SET running=NULL, requested=COALESCE(requested, heartbeat, 0) "
            "WHERE substr(running, 1, ?) = ?",
            (len(owner_prefix), owner_prefix),
        )

    async def delete_sync_state(self, library_id: str) -> None:
        await self._exec("DELETE FROM library_syncs WHERE library_id=?", (library_id,))

    async def evict_item(self, item_id: str) -> list[str]:
        """Drop the item's bytes but keep the item (its metadata, and what its publisher said of its files): it is
        no longer cached. The blob ids its files pointed at."""
        rows = await self._all("SELECT blob_id FROM item_files WHERE item_id=?", (item_id,))
        await self._exec("DELETE FROM item_files WHERE item_id=?", (item_id,))
        await self._exec("UPDATE items SET cached=0, synced_content=NULL WHERE id=?", (item_id,))
        return [r["blob_id"] for r in rows]

    # -- a published library's subscriptions (`library.subscriptions`) ----------------------------------------------
    async def insert_subscription(self, row: Row) -> bool:
        """False when the library already has a subscription of that subscribed library."""
        from contentlib.storage.sql import UniqueViolation  # sql.py builds on this module

        cols = ",".join(row)
        try:
            await self._exec(
                f"INSERT INTO subscriptions ({cols}) VALUES ({','.join('?' * len(row))})",
                tuple(row.values()),
                may_conflict=True,
            )
        except UniqueViolation:
            return False
        return True

    async def subscription_by_token(self, token: str) -> Row | None:
        return await self._one("SELECT * FROM subscriptions WHERE client_token=?", (token,))

    async def get_subscription(self, library_id: str, subscription_id: str) -> Row | None:
        return await self._one("SELECT * FROM subscriptions WHERE library_id=? AND id=?", (library_id, subscription_id))

    async def list_subscriptions(self, library_id: str) -> list[Row]:
        return await self._all("SELECT * FROM subscriptions WHERE library_id=? ORDER BY created, id", (library_id,))

    async def update_subscription(self, subscription_id: str, fields: Row) -> None:
        sets = ",".join(f"{k}=?" for k in fields)
        await self._exec(f"UPDATE subscriptions SET {sets} WHERE id=?", (*fields.values(), subscription_id))

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._exec("DELETE FROM subscriptions WHERE id=?", (subscription_id,))

    async def forget_subscriptions(self, library_id: str) -> None:
        """A library is deleted: the subscriptions it has as a publisher, and those it is the subscriber of."""
        await self._exec(
            "DELETE FROM subscriptions WHERE library_id=? OR subscribed_library_id=?", (library_id, library_id)
        )

    async def subscription_tokens(self, library_id: str) -> set[str]:
        """The SHA-256s of the credentials the library's subscriptions on this server read its feed with."""
        rows = await self._all(
            "SELECT token_sha256 FROM subscriptions WHERE library_id=? AND token_sha256 IS NOT NULL", (library_id,)
        )
        return {r["token_sha256"] for r in rows}
