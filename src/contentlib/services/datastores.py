"""Datastores: this server's storage backing, as vSphere sees it.

The server keeps every file's bytes in one blob store (a local directory, or an S3 bucket shared by the replicas);
that store is its one datastore. The SOAP inventory (`protocols/vim_inventory.py`) shows it as a read-only
`Datastore` under the datacenter's datastore folder, and a library's `DATASTORE` storage backing must name it by its
managed-object id (`datastore_id`), which is what govc and the vSphere clients send after looking the datastore up.
Whichever backing a library names, its files go to the blob store.

Capacity and free space: a directory reports its filesystem's (statvfs: the size, and what an unprivileged writer may
still use). An S3 bucket has no capacity and S3 reports none, so its datastore reports a nominal `S3_NOMINAL_CAPACITY`
(1 PiB), all of it free: clients that check for free space before writing proceed, and nobody is told of space that
was measured. Its largest file is S3's largest object (5 TiB).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contentlib import errors
from contentlib.storage.blobs import BlobStore

log = logging.getLogger("contentlib.datastores")

DATASTORE_ID = "datastore-1"
S3_NOMINAL_CAPACITY = 2**50  # 1 PiB
S3_MAX_OBJECT = 5 * 2**40  # 5 TiB


@dataclass(frozen=True)
class Datastore:
    id: str  # the managed-object id (`datastore-1`): a DATASTORE storage backing's datastore_id
    name: str
    url: str  # where the bytes are: file:///dir/ or s3://bucket/prefix/
    type: str  # DatastoreSummary.type: OTHER (neither VMFS, NFS, vSAN nor vVols)
    shared: bool  # reachable from every replica (multipleHostAccess)


@dataclass(frozen=True)
class Space:
    capacity: int
    free_space: int
    max_file_size: int
    accessible: bool
    nominal: bool  # capacity and free space are not measured (S3)


class Datastores:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        url = blobs.location()
        s3 = url.startswith("s3://")
        self.datastore = Datastore(DATASTORE_ID, "contentlib-s3" if s3 else "contentlib-disk", url, "OTHER", s3)

    def all(self) -> list[Datastore]:
        return [self.datastore]

    def get(self, datastore_id: str) -> Datastore | None:
        return next((d for d in self.all() if d.id == datastore_id), None)

    def check(self, datastore_id: str | None, where: str) -> Datastore:
        """The datastore a storage backing names, or INVALID_ARGUMENT naming what it named."""
        if datastore_id is None:
            raise errors.invalid_argument(f"{where} is required when the type is DATASTORE.", where)
        found = self.get(datastore_id)
        if found is None:
            known = ", ".join(f"{d.id} ({d.name})" for d in self.all())
            raise errors.invalid_argument(
                f"The datastore '{datastore_id}' ({where}) does not exist: this server's datastore is {known}.",
                datastore_id,
                msg_id="com.vmware.content.library.datastore.not_found",
            )
        return found

    async def space(self, datastore: Datastore) -> Space:
        try:
            measured = await self.blobs.space()
        except OSError as e:  # the directory is gone or unreadable: report it, not a fault
            log.warning("cannot read the capacity of datastore %s (%s): %s", datastore.name, datastore.url, e)
            return Space(0, 0, 0, accessible=False, nominal=False)
        if measured is None:
            return Space(S3_NOMINAL_CAPACITY, S3_NOMINAL_CAPACITY, S3_MAX_OBJECT, accessible=True, nominal=True)
        capacity, free = measured
        return Space(capacity, free, capacity, accessible=True, nominal=False)
