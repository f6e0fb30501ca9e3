"""Roles: what each user may do, as sets of the vendor's privileges.

Every user has one role, which holds everywhere (there are no per-library permissions). The privileges are those the
vendor's contract names for each operation (`privileges.PRIVILEGES`); the roles mirror vCenter's:

- Administrator: every privilege.
- ContentLibraryAdministrator (vCenter's "Content library administrator" sample role): every content-library
  privilege but two groups left to Administrators. The trust store's: trusting a signing certificate changes what
  every user's signed OVF imports accept. The server's storage (ReadStorage, ImportStorage): a PULL from a `file://`
  or `ds://` source reads files of the server's machine, and item storage (`Storage.Info`) shows where the bytes lie
  on it (vCenter, too, leaves ImportStorage out of that role).
- ReadOnly: System.Anonymous, System.View and System.Read: browse libraries, items and files, and use an update or
  download session whose id it was given ("possession of the session id is enough", REFERENCE.md), but create
  nothing, change nothing and download nothing.
"""

from __future__ import annotations

ANONYMOUS = "System.Anonymous"
VIEW = "System.View"
READ = "System.Read"
READ_STORAGE = "ContentLibrary.ReadStorage"
TRUST_STORE = frozenset({"ContentLibrary.AddCertToTrustStore", "ContentLibrary.DeleteCertFromTrustStore"})
SERVER_STORAGE = frozenset({READ_STORAGE, "ContentLibrary.ImportStorage"})

# vSphere's content-library privileges (the ContentLibrary.* names of the 8.0.2 contract).
CONTENT_LIBRARY = frozenset(
    {
        "ContentLibrary.AddLibraryItem",
        "ContentLibrary.AddSubscription",
        "ContentLibrary.CreateLocalLibrary",
        "ContentLibrary.CreateSubscribedLibrary",
        "ContentLibrary.DeleteLibraryItem",
        "ContentLibrary.DeleteLocalLibrary",
        "ContentLibrary.DeleteSubscribedLibrary",
        "ContentLibrary.DeleteSubscription",
        "ContentLibrary.DownloadSession",
        "ContentLibrary.EvictLibraryItem",
        "ContentLibrary.EvictSubscribedLibrary",
        "ContentLibrary.GetConfiguration",
        "ContentLibrary.ProbeSubscription",
        "ContentLibrary.PublishLibrary",
        "ContentLibrary.PublishLibraryItem",
        "ContentLibrary.SyncLibrary",
        "ContentLibrary.SyncLibraryItem",
        "ContentLibrary.TypeIntrospection",
        "ContentLibrary.UpdateConfiguration",
        "ContentLibrary.UpdateLibrary",
        "ContentLibrary.UpdateLibraryItem",
        "ContentLibrary.UpdateLocalLibrary",
        "ContentLibrary.UpdateSession",
        "ContentLibrary.UpdateSubscribedLibrary",
        "ContentLibrary.UpdateSubscription",
        *TRUST_STORE,
        *SERVER_STORAGE,
    }
)
SYSTEM = frozenset({ANONYMOUS, VIEW, READ})

ADMINISTRATOR = "Administrator"
CONTENT_LIBRARY_ADMINISTRATOR = "ContentLibraryAdministrator"
READ_ONLY = "ReadOnly"

ROLES: dict[str, frozenset[str]] = {
    ADMINISTRATOR: SYSTEM | CONTENT_LIBRARY | {"Datastore.AllocateSpace", "Datastore.Browse"},
    CONTENT_LIBRARY_ADMINISTRATOR: SYSTEM
    | (CONTENT_LIBRARY - TRUST_STORE - SERVER_STORAGE)
    | {"Datastore.AllocateSpace"},
    READ_ONLY: SYSTEM,
}
# Names a person may type for a role (compared without case, '-', '_' or spaces), including vCenter's labels.
_ALIASES = {
    "administrator": ADMINISTRATOR,
    "admin": ADMINISTRATOR,
    "contentlibraryadministrator": CONTENT_LIBRARY_ADMINISTRATOR,
    "contentlibraryadmin": CONTENT_LIBRARY_ADMINISTRATOR,
    "readonly": READ_ONLY,
}


def role_name(text: str) -> str:
    """The role a user typed (`Read-only`, `content-library-administrator`, `ADMIN`, ...); ValueError if none."""
    key = "".join(c for c in text.lower() if c not in "-_ ")
    if key not in _ALIASES:
        raise ValueError(f"unknown role {text!r}: choose one of {', '.join(ROLES)}")
    return _ALIASES[key]


def privileges(role: str) -> frozenset[str]:
    """A stored role's privileges; a role this server does not know grants nothing."""
    return ROLES.get(role, frozenset())
