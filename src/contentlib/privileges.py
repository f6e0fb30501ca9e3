"""What each operation of the table requires of the caller (operations.py binds it to the rows)."""

from __future__ import annotations

US = "com.vmware.content.library.item.update_session"
USF = "com.vmware.content.library.item.updatesession.file"
DS = "com.vmware.content.library.item.download_session"
DSF = "com.vmware.content.library.item.downloadsession.file"
ITEM = "com.vmware.content.library.item"
LIB = "com.vmware.content.library"
LOCAL = "com.vmware.content.local_library"
SESSION = "com.vmware.cis.session"
TRUST = "com.vmware.content.trusted_certificates"
STORAGE = "com.vmware.content.library.item.storage"
CHANGES = "com.vmware.content.library.item.changes"
CONFIG = "com.vmware.content.configuration"
POLICIES = "com.vmware.content.security_policies"
TYPE = "com.vmware.content.type"
SUB = "com.vmware.content.subscribed_library"
SUB_ITEM = "com.vmware.content.library.subscribed_item"
SUBS = "com.vmware.content.library.subscriptions"

# What each operation requires of the caller, as operations.json's "privileges" (and the swagger file) name it. The
# vendor checks most of them on the library or item a parameter names; roles here hold everywhere, so the privilege
# is what counts. System.Anonymous: "possession of the session id is enough" (REFERENCE.md). Conditional ones (a
# PULL from file:// needs ContentLibrary.ReadStorage) are checked by the service that knows the condition.
_READ = ("System.Read",)
_ANONYMOUS = ("System.Anonymous",)
PRIVILEGES: dict[tuple[str, str], tuple[str, ...]] = {
    (SESSION, "get"): (),
    (SESSION, "delete"): (),
    (LOCAL, "create"): ("ContentLibrary.CreateLocalLibrary",),
    (LOCAL, "get"): _READ,
    (LOCAL, "list"): _READ,
    (LOCAL, "update"): ("ContentLibrary.UpdateLocalLibrary",),
    (LOCAL, "delete"): ("ContentLibrary.DeleteLocalLibrary",),
    (LIB, "get"): _READ,
    (LIB, "list"): _READ,
    (LIB, "find"): _READ,
    (LIB, "update"): ("ContentLibrary.UpdateLibrary",),
    (ITEM, "create"): ("ContentLibrary.AddLibraryItem",),
    (ITEM, "get"): _READ,
    (ITEM, "list"): _READ,
    (ITEM, "find"): _READ,
    (ITEM, "update"): ("ContentLibrary.UpdateLibraryItem",),
    (ITEM, "delete"): ("ContentLibrary.DeleteLibraryItem",),
    (f"{ITEM}.file", "list"): _READ,
    (f"{ITEM}.file", "get"): _READ,
    (US, "create"): ("ContentLibrary.UpdateSession",),
    (US, "list"): ("ContentLibrary.UpdateSession",),
    **{(US, name): _ANONYMOUS for name in ("get", "update", "delete", "complete", "cancel", "fail", "keep_alive")},
    **{(USF, name): _ANONYMOUS for name in ("add", "list", "get", "remove", "validate")},
    (DS, "create"): ("ContentLibrary.DownloadSession",),
    (DS, "list"): ("ContentLibrary.DownloadSession",),
    **{(DS, name): _ANONYMOUS for name in ("get", "delete", "keep_alive", "cancel", "fail")},
    **{(DSF, name): _ANONYMOUS for name in ("list", "get", "prepare")},
    (TRUST, "create"): ("ContentLibrary.AddCertToTrustStore",),
    (TRUST, "list"): _READ,
    (TRUST, "get"): _READ,
    (TRUST, "delete"): ("ContentLibrary.DeleteCertFromTrustStore",),
    (LOCAL, "publish"): ("ContentLibrary.PublishLibrary",),
    (ITEM, "copy"): ("System.Read", "ContentLibrary.AddLibraryItem"),
    (ITEM, "publish"): ("ContentLibrary.PublishLibraryItem",),
    (STORAGE, "list"): ("ContentLibrary.ReadStorage",),
    (STORAGE, "get"): ("ContentLibrary.ReadStorage",),
    (CHANGES, "list"): _READ,
    (CHANGES, "get"): _READ,
    (CONFIG, "get"): ("ContentLibrary.GetConfiguration",),
    (CONFIG, "update"): ("ContentLibrary.UpdateConfiguration",),
    (POLICIES, "list"): _READ,
    (TYPE, "list"): ("ContentLibrary.TypeIntrospection",),
    (SUB, "create"): ("ContentLibrary.CreateSubscribedLibrary",),
    (SUB, "get"): _READ,
    (SUB, "list"): _READ,
    (SUB, "update"): ("ContentLibrary.UpdateSubscribedLibrary",),
    (SUB, "delete"): ("ContentLibrary.DeleteSubscribedLibrary",),
    (SUB, "sync"): ("ContentLibrary.SyncLibrary",),
    (SUB, "evict"): ("ContentLibrary.EvictSubscribedLibrary",),
    (SUB, "probe"): ("ContentLibrary.ProbeSubscription",),
    (SUB_ITEM, "sync"): ("ContentLibrary.SyncLibraryItem",),
    (SUB_ITEM, "evict"): ("ContentLibrary.EvictLibraryItem",),
    (SUBS, "create"): ("ContentLibrary.AddSubscription",),
    (SUBS, "get"): _READ,
    (SUBS, "list"): _READ,
    (SUBS, "update"): ("ContentLibrary.UpdateSubscription",),
    (SUBS, "delete"): ("ContentLibrary.DeleteSubscription",),
}
